//! `lmc cache`: stats, clear, export, import of the response cache.
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print cache statistics.
    Stats,
}

pub fn run(_cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`lmc cache` is being built")
}
