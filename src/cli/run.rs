//! `lmc run`: run a program or artifact on inputs.
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program file or compiled artifact.
    pub file: PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`lmc run` is being built")
}
