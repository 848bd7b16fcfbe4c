//! `lmc trace`: render trace files.
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Render a JSONL trace readably.
    Show { file: PathBuf },
}

pub fn run(_cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`lmc trace` is being built")
}
