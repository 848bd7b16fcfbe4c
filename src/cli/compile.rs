//! `lmc compile`: run an optimizer, write an artifact.
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program file (default: the project's program).
    pub file: Option<PathBuf>,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`lmc compile` is being built")
}
