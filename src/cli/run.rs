//! `lmc run`: run a program or compiled artifact on inputs and print the
//! outputs. Inputs come from `--input field=value` flags or, when none are
//! given, from JSON objects on stdin (one per line); both are converted to
//! the program's input types the way dataset cells are (`cli::common`). `--trace FILE` writes
//! every module step and LM call as JSONL for `lmc trace show`.
//!
//! Stdin is read and checked whole before the first LM call, so a bad line
//! costs nothing. A first SIGINT/SIGTERM stops starting inputs, lets the one
//! in flight finish (bounded by the grace period), flushes the outputs and
//! the trace, and exits 130; a second one exits 130 at once.

use anyhow::Context;
use serde_json::{json, Map, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::common::{self, KeyValue};
use crate::cli::lm_args::LmArgs;
use crate::cli::CliError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program file or compiled artifact (default: the project's program).
    pub file: Option<PathBuf>,
    /// An input value, `field=value` (repeatable), read the way a CSV cell
    /// is: `--input k=3`, `--input flag=yes`, `--input tags='["a"]'`.
    #[arg(short, long = "input", value_name = "FIELD=VALUE", value_parser = common::key_value)]
    pub inputs: Vec<KeyValue>,
    /// Print outputs as JSON (one object per run).
    #[arg(long)]
    pub json: bool,
    /// Write every step and LM call of each run as JSONL to FILE.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Fail (exit 2) instead of warning when a compiled artifact's program
    /// file changed since it was compiled.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub lm: LmArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = super::target::load(args.file.as_deref(), args.strict)?;
    let program = &target.program;
    let mut runs: Vec<Map<String, Value>> = Vec::new();
    if !args.inputs.is_empty() {
        runs.push(common::typed_inputs(program, &args.inputs).map_err(CliError::Input)?);
    } else if !std::io::stdin().is_terminal() {
        for (i, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line.context("reading stdin")?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line).map_err(|e| {
                CliError::Input(format!("stdin line {}: not a JSON object: {e}", i + 1))
            })?;
            match v {
                Value::Object(m) => runs.push(
                    common::typed_input_object(program, m)
                        .map_err(|e| CliError::Input(format!("stdin line {}: {e}", i + 1)))?,
                ),
                _ => {
                    return Err(CliError::Input(format!(
                        "stdin line {}: expected a JSON object of inputs",
                        i + 1
                    ))
                    .into())
                }
            }
        }
    }
    if runs.is_empty() {
        let names: Vec<String> = program
            .inputs
            .iter()
            .map(|f| format!("--input {}=...", f.name))
            .collect();
        return Err(CliError::Input(format!(
            "no inputs given\n  = help: lmc run {} {}",
            target.path.display(),
            names.join(" ")
        ))
        .into());
    }
    args.lm.trust.check_exec(&target, None)?;
    let lms = args.lm.build(&target)?;
    let ctx = lms.context(program)?;
    let rt = crate::cli::runtime()?;
    let interrupt = crate::cli::signals::install(&rt, |name| {
        eprintln!(
            "{name}: stopping after the input in flight (press Ctrl-C again to abort at once)"
        )
    });
    let mut trace_out = match &args.trace {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut failed = false;
    let stdout = std::io::stdout();
    let total = runs.len();
    let mut done = 0usize;
    for (i, inputs) in runs.into_iter().enumerate() {
        if interrupt.is_requested() {
            break;
        }
        let work = crate::run::run_program(&ctx, program, &target.overlay, inputs.clone());
        // The input in flight may finish during the grace period after an
        // interrupt; past it, it is abandoned (its finished calls are cached).
        let outcome = rt.block_on(async {
            tokio::select! {
                biased;
                o = work => Some(o),
                _ = async {
                    interrupt.requested().await;
                    tokio::time::sleep(interrupt.grace()).await
                } => None,
            }
        });
        let Some(outcome) = outcome else {
            break;
        };
        done += 1;
        if let Some(w) = trace_out.as_mut() {
            for step in &outcome.trace.steps {
                serde_json::to_writer(&mut *w, &json!({"run": i, "step": step}))?;
                writeln!(w)?;
            }
        }
        let mut out = stdout.lock();
        match &outcome.outputs {
            Ok(outputs) => {
                if args.json {
                    serde_json::to_writer(
                        &mut out,
                        &json!({"inputs": inputs, "outputs": outputs}),
                    )?;
                    writeln!(out)?;
                } else {
                    for (k, v) in outputs {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        writeln!(out, "{k}: {text}")?;
                    }
                }
            }
            Err(e) => {
                failed = true;
                if args.json {
                    let raw = outcome.trace.parse_error().map(|p| p.raw.clone());
                    serde_json::to_writer(
                        &mut out,
                        &json!({"inputs": inputs, "error": e.to_string(), "raw_reply": raw}),
                    )?;
                    writeln!(out)?;
                } else {
                    eprintln!("{}", crate::cli::with_severity(&e.to_string()));
                    if let Some(pe) = outcome.trace.parse_error() {
                        eprintln!("raw reply:\n{}", pe.raw);
                    }
                }
            }
        }
    }
    if let Some(mut w) = trace_out {
        w.flush()?;
    }
    if interrupt.is_requested() {
        let help = if args.lm.no_cache {
            "--no-cache: no reply was kept, a re-run starts over"
        } else {
            "every LM reply received is cached: re-run with the same inputs to resume \
             without paying for them again"
        };
        eprintln!(
            "interrupted ({}): {done} of {total} inputs done, their outputs written above{}\n  \
             = help: {help}",
            interrupt.reason().unwrap_or("stop requested"),
            if args.trace.is_some() {
                " and to the trace"
            } else {
                ""
            }
        );
        return Ok(ExitCode::from(crate::cli::signals::EXIT_INTERRUPTED));
    }
    Ok(if failed {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
