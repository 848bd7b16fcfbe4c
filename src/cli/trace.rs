//! `lmc trace show`: render a JSONL trace (written by `lmc run --trace`)
//! readably: one block per run, one line per step with its timing, tokens
//! and cache status, then its inputs and outputs; `--messages` adds the
//! exact prompt and reply of every LM call.

use anyhow::Context;
use serde_json::Value;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::CliError;
use crate::trace::Step;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Render a JSONL trace readably.
    Show {
        /// Trace file written by `lmc run --trace`.
        file: PathBuf,
        /// Also print every LM call's messages and raw reply.
        #[arg(long)]
        messages: bool,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Show { file, messages } => show(&file, messages),
    }
}

fn show(path: &std::path::Path, messages: bool) -> anyhow::Result<ExitCode> {
    let f = std::fs::File::open(path)
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut current_run: Option<u64> = None;
    let mut n = 0usize;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| {
            CliError::Input(format!(
                "{}:{}: not a trace line: {e}",
                path.display(),
                i + 1
            ))
        })?;
        let run = v.get("run").and_then(Value::as_u64).unwrap_or(0);
        let step: Step = serde_json::from_value(v.get("step").cloned().unwrap_or(Value::Null))
            .map_err(|e| {
                CliError::Input(format!(
                    "{}:{}: not a trace step: {e}",
                    path.display(),
                    i + 1
                ))
            })?;
        if current_run != Some(run) {
            writeln!(out, "run {run}")?;
            current_run = Some(run);
            n = 0;
        }
        n += 1;
        let mut head = format!("  [{n}] {} ({})", step.node, step.kind);
        if let Some(p) = &step.predictor {
            if p != &step.node {
                head.push_str(&format!(" {p}"));
            }
        }
        if let Some(lm) = &step.lm {
            head.push_str(&format!(
                "  {:.2}s  {}+{} tokens{}{}",
                lm.latency_s,
                lm.usage.prompt_tokens,
                lm.usage.completion_tokens,
                if lm.cache_hit { "  cache hit" } else { "" },
                if lm.retries > 0 {
                    format!("  {} retries", lm.retries)
                } else {
                    String::new()
                }
            ));
        }
        writeln!(out, "{head}")?;
        for (k, v) in &step.inputs {
            writeln!(out, "      in  {k} = {}", short(v))?;
        }
        if let Some(tool) = &step.tool {
            writeln!(
                out,
                "      tool {}({}) -> {}{}",
                tool.tool,
                tool.args,
                if tool.is_error { "error: " } else { "" },
                clip(&tool.observation, 200)
            )?;
        }
        if let Some(outputs) = &step.outputs {
            for (k, v) in outputs {
                writeln!(out, "      out {k} = {}", short(v))?;
            }
        }
        if let Some(t) = step.lm.as_ref().and_then(|l| l.reasoning.as_ref()) {
            // A reasoning model's thinking: shown apart from the outputs it
            // was kept out of.
            writeln!(out, "      thinking: {}", clip(t, 200))?;
        }
        if let Some(e) = &step.error {
            writeln!(out, "      error: {e}")?;
        }
        if messages {
            if let Some(lm) = &step.lm {
                for m in &lm.messages {
                    writeln!(out, "      --- {:?} ---", m.role)?;
                    for l in m.content.lines() {
                        writeln!(out, "      {l}")?;
                    }
                }
                if let Some(r) = &lm.reply {
                    writeln!(out, "      --- reply ---")?;
                    for l in r.lines() {
                        writeln!(out, "      {l}")?;
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    clip(&s, 160)
}

fn clip(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ⏎ ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    }
}
