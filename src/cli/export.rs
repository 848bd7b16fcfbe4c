//! `lmc export` / `lmc import`: move artifacts to and from DSPy's JSON.
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Compiled artifact.
    pub artifact: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// DSPy saved-program JSON.
    pub file: PathBuf,
}

pub fn run_export(_args: ExportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`lmc export` is being built")
}

pub fn run_import(_args: ImportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`lmc import` is being built")
}
