//! `lmc check`: validate program files.
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program files to validate.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print results as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`lmc check` is being built")
}
