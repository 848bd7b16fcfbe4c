//! `lmc config`: the LM settings a run would use, each value with where it
//! came from (flag, environment variable, `lmc.yaml:LINE:COL`,
//! `program.yaml:LINE:COL`, or lmc's default).
//!
//! It runs the same resolution as `run`, `eval` and `compile`
//! (`lm::resolve`, through the shared LM flags), so what it prints is what
//! a run gets: when a surprising model or URL shows up in a run, this is
//! where to find which layer set it. Nothing is built or called.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use crate::lm::resolve::{ResolvedLm, Source};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program or compiled artifact [default: $LMC_PROGRAM, else the
    /// `program:` of the nearest lmc.yaml].
    pub file: Option<PathBuf>,

    /// Print JSON: `{"lms": {NAME: {KEY: {"value": …, "source": …}}}}`.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub lm: super::lm_args::LmArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = super::target::load(args.file.as_deref(), false)?;
    let set = args.lm.resolve(&target)?;
    if args.json {
        let lms: Map<String, Value> = set.all().map(|lm| (lm.name.clone(), lm_json(lm))).collect();
        let out = json!({"program": target.path.display().to_string(), "lms": lms});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, lm) in set.all().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}:", lm.name)?;
        let rows = rows(lm);
        let width = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
        let vwidth = rows.iter().map(|(_, v, _)| v.len()).max().unwrap_or(0);
        for (k, v, src) in rows {
            writeln!(out, "  {k:<width$}  {v:<vwidth$}  ({src})")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// (key, value as shown, source) for every key with a value, in the
/// config's own key order.
fn rows(lm: &ResolvedLm) -> Vec<(String, String, Source)> {
    let Value::Object(map) = serde_json::to_value(&lm.config).unwrap_or_default() else {
        return Vec::new();
    };
    map.into_iter()
        .map(|(k, v)| {
            let shown = match &v {
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            let src = lm.source(&k);
            (k, shown, src)
        })
        .collect()
}

fn lm_json(lm: &ResolvedLm) -> Value {
    let Value::Object(map) = serde_json::to_value(&lm.config).unwrap_or_default() else {
        return Value::Null;
    };
    let keys: Map<String, Value> = map
        .into_iter()
        .map(|(k, v)| {
            let src = lm.source(&k).to_string();
            (k, json!({"value": v, "source": src}))
        })
        .collect();
    Value::Object(keys)
}
