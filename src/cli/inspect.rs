//! `lmc inspect`: print the messages a program or artifact would send.
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program file or compiled artifact.
    pub file: PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`lmc inspect` is being built")
}
