//! The command line: clap definitions and dispatch. One file per command
//! owns that command's arguments and its output; library modules never
//! print. Exit codes follow DESIGN.md: 0 ok, 1 eval gate failed, 2 usage,
//! config or input error, 3 other failures, 130 interrupted by SIGINT or
//! SIGTERM (see `signals`).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod cache;
pub mod check;
pub mod common;

pub mod checkpoint;

pub mod compare;
pub mod compile;
pub mod compile_note;
pub mod completions;
pub mod config;
pub mod diff;
pub mod eval;
pub mod examples;
pub mod export;
pub mod failures;
pub mod init;
pub mod inspect;
pub mod lm_args;
pub mod lm_variant;
pub mod model;
pub mod pipeline;
pub mod preflight;
pub mod progress;
pub mod run;
pub mod schema;
pub mod serve;
pub mod signals;
pub mod target;
pub mod trace;
pub mod trust_args;

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
    /// Scaffold a program, a small dataset, an lmc.yaml and a CI workflow.
    Init(init::Args),
    /// Validate program files (and the datasets they name), compiled
    /// artifacts, or an lmc.yaml project file; one line per file (exit 2 on errors).
    #[command(after_long_help = examples::CHECK)]
    Check(check::Args),
    /// Print the JSON Schema of the program file format, or of lmc.yaml with --project.
    #[command(after_long_help = examples::SCHEMA)]
    Schema(schema::Args),
    /// Show the resolved LMs (default and named): each value and where it
    /// came from (flag, environment, lmc.yaml, program, default).
    Config(config::Args),
    /// Print the exact messages a program would send (no LM call).
    #[command(after_long_help = examples::INSPECT)]
    Inspect(inspect::Args),
    /// Run a program or compiled artifact on one input (or JSONL on stdin).
    #[command(after_long_help = examples::RUN)]
    Run(run::Args),
    /// Score a program or artifact on a dataset; gate CI on the score.
    #[command(after_long_help = examples::EVAL)]
    Eval(eval::Args),
    /// List the examples that improved and regressed between two `eval --json` reports.
    Diff(diff::Args),
    /// Compare programs, artifacts and LMs on one dataset with paired tests; gate a switch.
    #[command(after_long_help = examples::COMPARE)]
    Compare(compare::Args),
    /// Optimize a program's instructions and demos; write an artifact.
    #[command(after_long_help = examples::COMPILE)]
    Compile(compile::Args),
    /// Export an artifact to DSPy's saved-program JSON.
    #[command(after_long_help = examples::EXPORT)]
    Export(export::ExportArgs),
    /// Import a DSPy saved-program JSON into an artifact for a program.
    #[command(after_long_help = examples::IMPORT)]
    Import(export::ImportArgs),
    /// Serve a program or compiled artifact over HTTP (POST /v1/run).
    #[command(after_long_help = examples::SERVE)]
    Serve(serve::Args),
    /// Inspect or manage the LM response cache.
    #[command(subcommand, after_long_help = examples::CACHE)]
    Cache(cache::Command),
    /// Manage the embedded engine's model files (`requantize`).
    #[command(subcommand)]
    Model(model::Command),
    /// Work with run traces (JSONL written by `--trace`).
    #[command(subcommand, after_long_help = examples::TRACE)]
    Trace(trace::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Args),
}

/// An error that maps to an exit code (used by commands through anyhow).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Usage, config or input error: exit 2. The message without a severity
    /// prefix, or already rendered diagnostics (`error: …\n  --> file:l:c`):
    /// `report` adds `error: ` to the first kind only.
    #[error("{0}")]
    Input(String),
    /// An eval gate failed: exit 1.
    #[error("{0}")]
    Gate(String),
}

pub fn main() -> ExitCode {
    // No process starts until a command checked the runner's grants
    // (docs/security.md); a missed request fails closed at the spawn site.
    crate::trust::exec::deny();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => init::run(a),
        Command::Check(a) => check::run(a),
        Command::Schema(a) => schema::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Config(a) => config::run(a),
        Command::Run(a) => run::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Compile(a) => compile::run(a),
        Command::Export(a) => export::run_export(a),
        Command::Import(a) => export::run_import(a),
        Command::Serve(a) => serve::run(a),
        Command::Cache(c) => cache::run(c),
        Command::Trace(c) => trace::run(c),
        Command::Model(c) => model::run(c),
        Command::Diff(a) => diff::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Completions(a) => completions::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => report(err),
    }
}

/// Print the error (coloured on a terminal, plain when piped or with
/// NO_COLOR: `anstream` decides) and map it to its exit code.
fn report(err: anyhow::Error) -> ExitCode {
    let (text, code) = match err.downcast_ref::<CliError>() {
        Some(CliError::Input(msg)) => (with_severity(msg), 2),
        Some(CliError::Gate(msg)) => (msg.clone(), 1),
        None => (with_severity(&format!("{err:#}")), 3),
    };
    anstream::eprintln!("{}", crate::diag::paint(&text));
    ExitCode::from(code)
}

/// The one place an error message gets its `error: ` prefix. Text that
/// already begins with a severity — a rendered diagnostic — is kept as it
/// is, so a wrapped diagnostic never reads `error: error: …`. `report`
/// uses it for the error that ends a command; `lmc check` (one verdict per
/// file) and `lmc run` (one per input, the run goes on) for the errors they
/// print and carry on after.
pub(crate) fn with_severity(text: &str) -> String {
    if text.starts_with("error:") || text.starts_with("warning:") {
        text.to_string()
    } else {
        format!("error: {text}")
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

#[cfg(test)]
mod tests {
    use super::with_severity;

    #[test]
    fn severity_prefix_is_added_once() {
        assert_eq!(with_severity("cannot read x"), "error: cannot read x");
        assert_eq!(
            with_severity("error: bad\n  --> a.yaml:1:1"),
            "error: bad\n  --> a.yaml:1:1"
        );
        assert_eq!(with_severity("warning: odd"), "warning: odd");
    }
}
