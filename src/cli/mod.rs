//! The command line: clap definitions and dispatch. One file per command
//! owns that command's arguments and its output; library modules never
//! print. Exit codes follow DESIGN.md: 0 ok, 1 eval gate failed, 2 usage,
//! config or input error, other non-zero for other failures.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod cache;
pub mod check;
pub mod compile;
pub mod compile_note;
pub mod eval;
pub mod export;
pub mod failures;
pub mod inspect;
pub mod lm_args;
pub mod preflight;
pub mod progress;
pub mod run;
pub mod schema;
pub mod target;
pub mod trace;

/// lmc compiles and evaluates LM programs declared in YAML.
///
/// A program file declares typed signatures and a graph of modules; `lmc
/// compile` chooses each predictor's instructions and demos against a
/// dataset and a metric; `lmc eval` scores a program or compiled artifact and
/// gates CI on the score.
#[derive(Debug, Parser)]
#[command(name = "lmc", version, about, long_about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate program files (and the datasets they name) or an lmc.yaml
    /// project file; one line per file (exit 2 on errors).
    Check(check::Args),
    /// Print the JSON Schema of the program file format (for editors).
    Schema(schema::Args),
    /// Print the exact messages a program would send (no LM call).
    Inspect(inspect::Args),
    /// Run a program or compiled artifact on one input (or JSONL on stdin).
    Run(run::Args),
    /// Score a program or artifact on a dataset; gate CI on the score.
    Eval(eval::Args),
    /// Optimize a program's instructions and demos; write an artifact.
    Compile(compile::Args),
    /// Export an artifact to DSPy's saved-program JSON.
    Export(export::ExportArgs),
    /// Import a DSPy saved-program JSON into an artifact for a program.
    Import(export::ImportArgs),
    /// Inspect or manage the LM response cache.
    #[command(subcommand)]
    Cache(cache::Command),
    /// Work with run traces (JSONL written by `--trace`).
    #[command(subcommand)]
    Trace(trace::Command),
}

/// An error that maps to an exit code (used by commands through anyhow).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Usage, config or input error: exit 2. Already rendered text.
    #[error("{0}")]
    Input(String),
    /// An eval gate failed: exit 1.
    #[error("{0}")]
    Gate(String),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Run(a) => run::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Compile(a) => compile::run(a),
        Command::Export(a) => export::run_export(a),
        Command::Import(a) => export::run_import(a),
        Command::Cache(c) => cache::run(c),
        Command::Trace(c) => trace::run(c),
    };
    match result {
        Ok(code) => code,
        Err(err) => report(err),
    }
}

fn report(err: anyhow::Error) -> ExitCode {
    match err.downcast_ref::<CliError>() {
        Some(CliError::Input(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(2)
        }
        Some(CliError::Gate(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(1)
        }
        None => {
            eprintln!("error: {err:#}");
            ExitCode::from(3)
        }
    }
}

/// The embedded engine's llama.cpp threads (OpenMP) spin-wait at every
/// barrier by default; on a busy machine a spinning thread steals the time
/// slice its partner needs (measured: decoding fell from 17.8 to 1.8 tokens/s
/// with 2 threads on 2 busy cores). libgomp reads `OMP_WAIT_POLICY` once,
/// when it is loaded, before `main` runs — so when the variable is unset we
/// re-execute ourselves once with it set to `passive`. A value the user set
/// is kept; if the re-exec fails we carry on with the default policy.
#[cfg(all(unix, feature = "embedded"))]
pub fn ensure_passive_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // `exec` only returns on failure.
    let _ = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("OMP_WAIT_POLICY", "passive")
        .exec();
}

/// Build a multi-threaded tokio runtime for async commands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
