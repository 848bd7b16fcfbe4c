//! `lmc eval`: score a program or artifact on a dataset, gate CI.
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program file or compiled artifact (default: the project's program).
    pub file: Option<PathBuf>,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`lmc eval` is being built")
}
