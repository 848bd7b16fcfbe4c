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
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::program::Program;

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
    /// Rows skipped because `skip_bad_rows` was set.
    pub bad_rows: Vec<BadRow>,
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

/// `train:0.8` / `dev:0.8`: a seeded shuffle cut at `fraction`.
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

/// Load `path` for `program`.
pub fn load(path: &Path, program: &Program, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let _ = (program, opts);
    Err(DataError::File {
        path: path.display().to_string(),
        message: "not implemented yet".into(),
    })
}

/// Parse `train:0.8` / `dev:0.8`.
pub fn parse_split(s: &str) -> Result<Split, DataError> {
    Err(DataError::Split(s.to_string()))
}
