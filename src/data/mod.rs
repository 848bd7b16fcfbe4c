//! Datasets: CSV (with a header row) and JSONL files turned into typed
//! [`Example`]s for a program.
//!
//! Loading is where bad data must be caught, not in the middle of an eval:
//! every value is converted to the program field's type here (ints, floats,
//! bools, enum values, JSON lists), and a row that cannot be converted is an
//! error naming the file and the row, or a counted [`BadRow`] when the user
//! asked to skip them. Selection (splits, seeded samples, limits) is
//! deterministic so that the same command on the same file always scores the
//! same examples, and the file's content hash travels with the results.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::program::Program;
use crate::signature::{Field, FieldType};

mod read;
mod select;
mod value;

pub use select::parse_split;

/// Convert one JSON value to an input field's type with the same rules as
/// a JSONL cell (`"18"` for an int, `"yes"` for a bool, enum case folded),
/// so a value a dataset accepts is accepted everywhere else (`lmc serve`).
pub fn convert_input(ty: &FieldType, v: Value) -> Result<Value, String> {
    value::convert(ty, Cell::Json(v), false)
}

/// One dataset row, mapped onto the program's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// 0-based position after filtering (split, sample, limit).
    pub index: usize,
    /// 1-based row number in the file (CSV: data row after the header; JSONL: line).
    pub row: usize,
    /// Program inputs.
    pub inputs: Map<String, Value>,
    /// Expected values of program outputs.
    pub expected: Map<String, Value>,
    /// Columns that are neither inputs nor outputs (e.g. `db_id`).
    pub extra: Map<String, Value>,
}

/// A loaded dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub path: PathBuf,
    /// `sha256:<hex>` of the file bytes.
    pub hash: String,
    pub examples: Vec<Example>,
    /// Rows skipped because `skip_bad_rows` was set, in file order.
    pub bad_rows: Vec<BadRow>,
    /// The file's column names: a CSV's header, or every JSONL key in order
    /// of first appearance (what the pre-run checks compare mappings with).
    pub columns: Vec<String>,
}

/// A row that could not be turned into an example.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub row: usize,
    pub message: String,
}

/// Which side of a seeded split to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitPart {
    /// The first `fraction` of the shuffled rows.
    Train,
    /// The rest.
    Dev,
}

/// `train:0.8` / `dev:0.8`: one seeded shuffle cut at `fraction`, so the
/// two parts of the same seed never overlap and together cover every row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub part: SplitPart,
    pub fraction: f64,
}

/// How to load and select.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Dataset column -> program field; the caller merges `--map` over
    /// `program.datasets.columns`.
    pub columns: BTreeMap<String, String>,
    pub skip_bad_rows: bool,
    /// Keep the first N (after split and sample).
    pub limit: Option<usize>,
    /// Keep N rows drawn with `seed` (file order kept).
    pub sample: Option<usize>,
    pub seed: u64,
    pub split: Option<Split>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: row {row}: {message}")]
    Row {
        path: String,
        row: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("invalid split `{0}`: expected `train:F` or `dev:F` with 0 < F < 1, e.g. `train:0.8`")]
    Split(String),
}

/// One row as read from the file, before typing: CSV cells are text, JSONL
/// values are JSON. `Err` holds why the reader already found the row broken.
pub(crate) struct RawRow {
    pub row: usize,
    pub cells: Result<Vec<(String, Cell)>, String>,
}

pub(crate) enum Cell {
    Text(String),
    Json(Value),
}

/// A program input given outside a dataset, converted exactly as a dataset
/// cell of the same form: text (a `--input` flag) as a CSV cell, JSON (a
/// line of `lmc run`'s stdin) as a JSONL value. One conversion, so `yes`
/// is a bool on the command line wherever a CSV accepts it.
pub fn input_from_text(ty: &FieldType, text: &str) -> Result<Value, String> {
    value::convert(ty, Cell::Text(text.to_string()), false)
}

/// See [`input_from_text`]: a JSON input value, checked like a JSONL cell.
pub fn input_from_json(ty: &FieldType, v: Value) -> Result<Value, String> {
    value::convert(ty, Cell::Json(v), false)
}

/// Where a column's values go.
enum Target<'p> {
    Input(&'p Field),
    Expected(&'p Field),
    Extra(String),
}

/// Load `path` for `program`: read, type every row, then select.
pub fn load(path: &Path, program: &Program, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })?;
    load_bytes(&bytes, path, program, opts)
}

/// [`load`] on bytes already read; `path` names the file and decides the
/// format by its extension. The fuzz harness (tests/fuzz.rs) drives this.
pub fn load_bytes(
    bytes: &[u8],
    path: &Path,
    program: &Program,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    let shown = path.display().to_string();
    check_mapping(program, opts).map_err(|message| DataError::File {
        path: shown.clone(),
        message,
    })?;
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    let (rows, columns) = if is_jsonl(path, bytes) {
        let rows = read::jsonl_rows(bytes);
        let columns = jsonl_columns(&rows);
        (rows, columns)
    } else {
        let tsv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
        let delimiter = if tsv { b'\t' } else { b',' };
        let (header, rows) =
            read::csv_rows(bytes, delimiter).map_err(|message| DataError::File {
                path: shown.clone(),
                message,
            })?;
        check_csv_header(&header, program, opts).map_err(|message| DataError::File {
            path: shown.clone(),
            message,
        })?;
        (rows, header)
    };

    let mut typed = Vec::with_capacity(rows.len());
    let mut bad_rows = Vec::new();
    for raw in rows {
        let result = raw
            .cells
            .and_then(|cells| map_row(program, opts, raw.row, cells));
        match result {
            Ok(ex) => typed.push(ex),
            Err(message) if opts.skip_bad_rows => bad_rows.push(BadRow {
                row: raw.row,
                message,
            }),
            Err(message) => {
                return Err(DataError::Row {
                    path: shown,
                    row: raw.row,
                    message,
                })
            }
        }
    }

    let mut examples = select::select(typed, opts);
    for (i, ex) in examples.iter_mut().enumerate() {
        ex.index = i;
    }
    Ok(Dataset {
        path: path.to_path_buf(),
        hash,
        examples,
        bad_rows,
        columns,
    })
}

/// Every key of JSONL rows, in order of first appearance.
fn jsonl_columns(rows: &[RawRow]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    rows.iter()
        .flat_map(|raw| raw.cells.iter().flatten())
        .filter(|(name, _)| seen.insert(name.as_str()))
        .map(|(name, _)| name.clone())
        .collect()
}

/// JSONL by extension; otherwise CSV unless the file starts with `{`.
fn is_jsonl(path: &Path, bytes: &[u8]) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson") => true,
        Some(e) if e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("tsv") => false,
        _ => bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{'),
    }
}

fn target<'p>(program: &'p Program, opts: &LoadOptions, column: &str) -> Target<'p> {
    let name = opts
        .columns
        .get(column)
        .map(String::as_str)
        .unwrap_or(column);
    if let Some(f) = program.inputs.iter().find(|f| f.name == name) {
        Target::Input(f)
    } else if let Some(f) = program.output_fields.iter().find(|f| f.name == name) {
        Target::Expected(f)
    } else {
        Target::Extra(name.to_string())
    }
}

/// A mapping may rename a column to any name (extra columns included, e.g.
/// `database=db_id`), but a target that is a near miss of a program field
/// is almost certainly a typo that would silently leave the field unset.
fn check_mapping(program: &Program, opts: &LoadOptions) -> Result<(), String> {
    let fields: Vec<&str> = program
        .inputs
        .iter()
        .chain(&program.output_fields)
        .map(|f| f.name.as_str())
        .collect();
    for (column, to) in &opts.columns {
        if fields.contains(&to.as_str()) {
            continue;
        }
        if let Some(hint) = crate::diag::did_you_mean(to, fields.iter().copied()) {
            return Err(format!(
                "column mapping `{column}={to}`: `{to}` is not a program input or output ({hint})"
            ));
        }
    }
    Ok(())
}

/// A CSV header that cannot feed a required input fails every row: say so
/// once, as a file error, rather than once per row.
fn check_csv_header(
    header: &[String],
    program: &Program,
    opts: &LoadOptions,
) -> Result<(), String> {
    for input in required_inputs(program) {
        let found = header
            .iter()
            .any(|c| matches!(target(program, opts, c), Target::Input(f) if f.name == input.name));
        if !found {
            return Err(missing_input_message(&input.name, header, opts));
        }
    }
    Ok(())
}

fn required_inputs(program: &Program) -> impl Iterator<Item = &Field> {
    program
        .inputs
        .iter()
        .filter(|f| !matches!(f.ty, FieldType::Optional { .. }))
}

fn missing_input_message(input: &str, columns: &[String], opts: &LoadOptions) -> String {
    let mapped: Vec<&str> = opts
        .columns
        .iter()
        .filter(|(_, to)| to.as_str() == input)
        .map(|(from, _)| from.as_str())
        .collect();
    let mut m = format!("no column for program input `{input}`");
    if !mapped.is_empty() {
        m.push_str(&format!(" (mapped from `{}`)", mapped.join("`, `")));
    }
    m.push_str(&format!(
        "; columns are: {}; map one with `--map COLUMN={input}` or `datasets.columns`",
        columns.join(", ")
    ));
    m
}

/// Type one row's cells by the program's fields.
fn map_row(
    program: &Program,
    opts: &LoadOptions,
    row: usize,
    cells: Vec<(String, Cell)>,
) -> Result<Example, String> {
    let mut ex = Example {
        index: 0,
        row,
        inputs: Map::new(),
        expected: Map::new(),
        extra: Map::new(),
    };
    let columns: Vec<String> = cells.iter().map(|(c, _)| c.clone()).collect();
    // Explicitly mapped columns are applied last so that they win over a
    // column that merely has the field's name (which is kept as extra).
    let (mapped, plain): (Vec<_>, Vec<_>) = cells
        .into_iter()
        .partition(|(c, _)| opts.columns.contains_key(c));
    let mapped_targets: Vec<&String> = mapped.iter().map(|(c, _)| &opts.columns[c]).collect();
    for (column, cell) in plain.into_iter().chain(mapped) {
        let shadowed = !opts.columns.contains_key(&column) && mapped_targets.contains(&&column);
        let err = |m: String| format!("column `{column}`: {m}");
        match target(program, opts, &column) {
            _ if shadowed => {
                ex.extra.insert(column.clone(), value::untyped(cell));
            }
            Target::Input(f) => {
                let v = value::convert(&f.ty, cell, false).map_err(err)?;
                ex.inputs.insert(f.name.clone(), v);
            }
            Target::Expected(f) => {
                let v = value::convert(&f.ty, cell, true).map_err(err)?;
                ex.expected.insert(f.name.clone(), v);
            }
            Target::Extra(name) => {
                ex.extra.insert(name, value::untyped(cell));
            }
        }
    }
    for input in required_inputs(program) {
        match ex.inputs.get(&input.name) {
            None => return Err(missing_input_message(&input.name, &columns, opts)),
            Some(Value::Null) => {
                return Err(format!("input `{}` is null", input.name));
            }
            Some(_) => {}
        }
    }
    Ok(ex)
}

#[cfg(test)]
mod tests;
