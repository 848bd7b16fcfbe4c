//! Plumbing the commands share, written once: `KEY=VALUE` flags as clap
//! value parsers, the input-error constructor, finding the default program,
//! resolving the metric, and converting `--input` values (and `lmc run`'s
//! JSONL stdin) to a program's typed inputs.
//!
//! Inputs go through the same typed conversion as dataset cells
//! (`crate::data::input_from_text`, `input_from_json`), so a value means the same thing whether it
//! sits in a CSV, a JSONL file, a `--input` flag or a stdin line: `yes` is
//! a bool wherever a CSV accepts it, and a bad value names its field.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::CliError;
use crate::metric::Metric;
use crate::program::Program;

/// A usage, config or input error (exit 2), worded without a severity:
/// `cli::report` adds the one `error: ` prefix.
pub fn input_err(msg: impl Into<String>) -> anyhow::Error {
    CliError::Input(msg.into()).into()
}

/// One `KEY=VALUE` flag (`--input`, `--map`), split at the first `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Trimmed, never empty.
    pub key: String,
    /// As written (an empty value is a value: the empty string).
    pub value: String,
}

/// Clap value parser for `KEY=VALUE` flags whose value may be empty
/// (`--input note=`). Clap names the flag and its placeholder in the
/// message and exits 2.
pub fn key_value(s: &str) -> Result<KeyValue, String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok(KeyValue {
            key: k.trim().to_string(),
            value: v.to_string(),
        }),
        Some(_) => Err("the name before `=` is empty".into()),
        None => Err("no `=`: write the name, `=`, then the value".into()),
    }
}

/// Clap value parser for `--map COLUMN=FIELD`: both sides non-empty, trimmed.
pub fn column_field(s: &str) -> Result<KeyValue, String> {
    let kv = key_value(s).map_err(|e| format!("{e} (e.g. --map label=sentiment)"))?;
    let value = kv.value.trim();
    if value.is_empty() {
        return Err("the field after `=` is empty (e.g. --map label=sentiment)".into());
    }
    Ok(KeyValue {
        key: kv.key,
        value: value.to_string(),
    })
}

/// `--map` flags as a column → field map (a later flag for a column wins).
pub fn column_map(maps: &[KeyValue]) -> BTreeMap<String, String> {
    maps.iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

/// The program a command given no file uses: `LMC_PROGRAM`, else the
/// nearest `lmc.yaml`'s `program:`; the implicit choice is said on stderr.
pub fn default_program() -> anyhow::Result<PathBuf> {
    let found = crate::settings::locate_program(None).map_err(|e| input_err(format!("{e}")))?;
    if let Some(by) = &found.chosen_by {
        super::target::note(&format!("using {} (from {by})", found.path.display()));
    }
    Ok(found.path)
}

/// The directory relative paths in a program's specs (a metric's command
/// script or database directory) are resolved against: that of the program
/// file that wrote them, also when it is run through an artifact (whose
/// program carries its source path as found from the working directory).
pub fn program_dir(program: &Program, target_path: &Path) -> PathBuf {
    program
        .source_path
        .as_deref()
        .unwrap_or(target_path)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The metric a run is scored with, and its spec as recorded in reports and
/// lineage: `--metric` (relative to the working directory), else the
/// program's `metric:` (relative to `program_dir`), else the default for the
/// program's outputs.
pub fn resolve_metric(
    cli: Option<&str>,
    program: &Program,
    program_dir: &Path,
) -> anyhow::Result<(Metric, Value)> {
    let (metric, spec) = match (cli, &program.metric) {
        (Some(spec), _) => (
            Metric::parse_cli(spec, Path::new(".")),
            Value::String(spec.to_string()),
        ),
        (None, Some(spec)) => (Metric::from_spec(spec, program_dir), spec.clone()),
        (None, None) => {
            let m = Metric::default_for(program);
            let name = Value::String(m.name());
            (Ok(m), name)
        }
    };
    let metric = metric.map_err(|e| input_err(format!("metric: {e}")))?;
    Ok((metric, spec))
}

/// `--input` flags as typed program inputs. Text is converted the way a CSV
/// cell is; an unknown name or a bad value is an error naming the field.
pub fn typed_inputs(program: &Program, pairs: &[KeyValue]) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    for kv in pairs {
        let field = input_field(program, &kv.key).map_err(|e| format!("--input {e}"))?;
        let v = crate::data::input_from_text(&field.ty, &kv.value)
            .map_err(|e| format!("--input `{}`: {e}", kv.key))?;
        m.insert(kv.key.clone(), v);
    }
    Ok(m)
}

/// One JSON object of inputs (a line of `lmc run`'s stdin) as typed program
/// inputs: values are checked and coerced the way a JSONL dataset's are.
pub fn typed_input_object(
    program: &Program,
    obj: Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    for (k, v) in obj {
        let field = input_field(program, &k)?;
        let v = crate::data::input_from_json(&field.ty, v).map_err(|e| format!("`{k}`: {e}"))?;
        m.insert(k, v);
    }
    Ok(m)
}

/// The program input named `name`, or an error listing the inputs (with a
/// did-you-mean when one is close).
fn input_field<'p>(
    program: &'p Program,
    name: &str,
) -> Result<&'p crate::signature::Field, String> {
    program
        .inputs
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = program.inputs.iter().map(|f| f.name.as_str()).collect();
            let mut msg = format!("`{name}`: the program has no input `{name}`");
            match crate::diag::did_you_mean(name, names.iter().copied()) {
                Some(hint) => msg.push_str(&format!("; {hint}")),
                None => msg.push_str(&format!(" (inputs: {})", names.join(", "))),
            }
            msg
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_splits_at_the_first_equals() {
        let kv = key_value(" q = a=b").unwrap();
        assert_eq!(kv.key, "q");
        assert_eq!(kv.value, " a=b");
        assert_eq!(key_value("note=").unwrap().value, "");
        assert!(key_value("=x").unwrap_err().contains("empty"));
        assert!(key_value("novalue").unwrap_err().contains("no `=`"));
    }

    #[test]
    fn column_field_needs_both_sides() {
        assert_eq!(
            column_field("label = sentiment").unwrap().value,
            "sentiment"
        );
        assert!(column_field("label=")
            .unwrap_err()
            .contains("--map label=sentiment"));
        assert!(column_field("label").is_err());
        let m = column_map(&[column_field("a=x").unwrap(), column_field("a=y").unwrap()]);
        assert_eq!(m.get("a").map(String::as_str), Some("y"));
    }
}

/// The flags that choose what a target is scored on, shared by `lmc eval`
/// and `lmc compare` (one definition: the same names, help and parsing).
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Dataset to score on, CSV or JSONL (default: the program's
    /// `datasets.dev`).
    #[arg(long, alias = "data", value_name = "PATH")]
    pub dataset: Option<std::path::PathBuf>,

    /// Metric spec, overriding the program's `metric:`: a type name with
    /// an optional field (`exact_match:sentiment`) or inline YAML/JSON
    /// (`{type: f1, field: answer}`).
    #[arg(long, value_name = "SPEC")]
    pub metric: Option<String>,

    /// Map a dataset column to a program input or expected output
    /// (repeatable), on top of the program's `datasets.columns`.
    #[arg(long = "map", value_name = "COLUMN=FIELD", value_parser = column_field)]
    pub map: Vec<KeyValue>,

    /// Use only the first N examples (after --split/--sample).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Use a seeded random sample of N examples.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,

    /// Seed for --sample and --split.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Use one part of a seeded split, e.g. `train:0.8` or `dev:0.2`
    /// (`test` is a synonym of `dev`).
    #[arg(long, value_name = "PART:FRACTION")]
    pub split: Option<String>,

    /// Skip (and count) rows that cannot be read instead of failing.
    #[arg(long)]
    pub skip_bad_rows: bool,
}
