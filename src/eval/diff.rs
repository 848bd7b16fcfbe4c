//! Comparing two evaluations example by example: which examples got better,
//! which got worse, and whether the change in the mean is significant.
//!
//! `lmc diff A.json B.json` and the `--baseline` sections of the Markdown
//! and HTML reports both need the same answer to "what changed?", so it is
//! computed once here. Runs are paired by dataset row (as the baseline gate
//! does), only rows both runs scored count, and the paired test is the one
//! `stats` uses for the gate, so a diff and a gate never disagree. The
//! reports are read loosely (unknown fields ignored, per-example details
//! optional) so older reports still compare.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;

use super::stats::{compare_paired, PairedComparison};
use super::ExampleResult;

/// The parts of an `lmc eval --json` report a comparison reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportSide {
    #[serde(default)]
    pub program: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub metric: Option<String>,
    pub dataset: SideDataset,
    pub results: Vec<SideResult>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SideDataset {
    pub hash: String,
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// One example of one side: its row and score, and what is known of it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SideResult {
    pub row: usize,
    pub score: f64,
    #[serde(default)]
    pub inputs: Map<String, Value>,
    #[serde(default)]
    pub expected: Map<String, Value>,
    #[serde(default)]
    pub outputs: Option<Map<String, Value>>,
    #[serde(default)]
    pub error: Option<String>,
}

impl From<&ExampleResult> for SideResult {
    fn from(r: &ExampleResult) -> Self {
        SideResult {
            row: r.row,
            score: r.score,
            inputs: r.inputs.clone(),
            expected: r.expected.clone(),
            outputs: r.outputs.clone(),
            error: r.error.clone(),
        }
    }
}

/// What an example produced, in one line: its outputs, or its error.
pub fn got(outputs: Option<&Map<String, Value>>, error: Option<&str>) -> String {
    match (error, outputs) {
        (Some(e), _) => format!("error: {e}"),
        (None, Some(o)) => compact(o),
        (None, None) => "(nothing)".into(),
    }
}

/// `key: value; key: value` with strings unquoted, for one-line cells.
pub fn compact(m: &Map<String, Value>) -> String {
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}: {s}"),
            other => format!("{k}: {other}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One example whose score changed between the two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub row: usize,
    pub before: f64,
    pub after: f64,
    pub inputs: Map<String, Value>,
    pub expected: Map<String, Value>,
    /// What the first (baseline) run produced.
    pub before_got: String,
    /// What the second (current) run produced.
    pub after_got: String,
}

/// The comparison of two runs on one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    /// Rows scored by both runs.
    pub paired: usize,
    /// Rows scored by only one run (left out of the comparison).
    pub only_before: usize,
    pub only_after: usize,
    pub comparison: PairedComparison,
    /// Higher score after than before, in row order.
    pub improved: Vec<Change>,
    /// Lower score after than before, in row order.
    pub regressed: Vec<Change>,
}

/// Why two runs cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("the two reports were computed on different datasets (sha256 {before} and {after}); a diff pairs examples by dataset row, so both must come from `lmc eval --json` on the same dataset file")]
    DatasetMismatch { before: String, after: String },
    #[error("the two reports share no dataset rows; use the same --limit/--sample/--split for both runs")]
    NoCommonRows,
}

/// Pair `before` and `after` by dataset row and list what changed.
pub fn diff(
    before_hash: &str,
    before: &[SideResult],
    after_hash: &str,
    after: &[SideResult],
) -> Result<Diff, DiffError> {
    if before_hash != after_hash {
        return Err(DiffError::DatasetMismatch {
            before: before_hash.to_string(),
            after: after_hash.to_string(),
        });
    }
    let by_row: HashMap<usize, &SideResult> = before.iter().map(|r| (r.row, r)).collect();
    let mut rows: Vec<(&SideResult, &SideResult)> = after
        .iter()
        .filter_map(|a| by_row.get(&a.row).map(|b| (*b, a)))
        .collect();
    if rows.is_empty() {
        return Err(DiffError::NoCommonRows);
    }
    rows.sort_by_key(|(_, a)| a.row);
    let base: Vec<f64> = rows.iter().map(|(b, _)| b.score).collect();
    let cur: Vec<f64> = rows.iter().map(|(_, a)| a.score).collect();
    let comparison = compare_paired(&base, &cur);
    let mut improved = Vec::new();
    let mut regressed = Vec::new();
    for (b, a) in &rows {
        if a.score == b.score {
            continue;
        }
        // The after side has the dataset's inputs and expected values; an
        // older report may lack them on one side, so fall back to the other.
        let pick = |x: &Map<String, Value>, y: &Map<String, Value>| {
            if x.is_empty() {
                y.clone()
            } else {
                x.clone()
            }
        };
        let change = Change {
            row: a.row,
            before: b.score,
            after: a.score,
            inputs: pick(&a.inputs, &b.inputs),
            expected: pick(&a.expected, &b.expected),
            before_got: got(b.outputs.as_ref(), b.error.as_deref()),
            after_got: got(a.outputs.as_ref(), a.error.as_deref()),
        };
        if a.score > b.score {
            improved.push(change);
        } else {
            regressed.push(change);
        }
    }
    let paired = rows.len();
    Ok(Diff {
        paired,
        only_before: before.len().saturating_sub(paired),
        only_after: after.len().saturating_sub(paired),
        comparison,
        improved,
        regressed,
    })
}

/// A change of mean score that cannot be misread:
/// `score 0.6100 → 0.7500 (+0.1400, better)`.
pub fn describe_change(before: f64, after: f64) -> String {
    let delta = after - before;
    // Means are averages of at most millions of scores: anything under
    // 1e-9 is rounding, not a change.
    let word = if delta > 1e-9 {
        "better"
    } else if delta < -1e-9 {
        "worse"
    } else {
        "unchanged"
    };
    format!("score {before:.4} → {after:.4} ({delta:+.4}, {word})")
}

/// The paired test's verdict in one line: the test, its p-value and, for
/// binary scores, the counts of flips.
pub fn describe_test(c: &PairedComparison) -> String {
    format!(
        "{}: p = {:.4}{}",
        c.test.name(),
        c.p_value,
        c.discordant
            .map(|(b, i)| format!(" ({b} regressed, {i} improved)"))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(scores: &[(usize, f64)]) -> Vec<SideResult> {
        scores
            .iter()
            .map(|&(row, score)| SideResult {
                row,
                score,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn lists_exactly_the_flips_in_row_order() {
        let a = side(&[(1, 1.0), (2, 0.0), (3, 1.0), (4, 1.0), (9, 1.0)]);
        let b = side(&[(4, 0.0), (3, 1.0), (2, 1.0), (1, 0.0), (7, 0.0)]);
        let d = diff("h", &a, "h", &b).unwrap();
        assert_eq!(d.paired, 4);
        assert_eq!((d.only_before, d.only_after), (1, 1));
        let rows = |v: &[Change]| v.iter().map(|c| c.row).collect::<Vec<_>>();
        assert_eq!(rows(&d.improved), vec![2]);
        assert_eq!(rows(&d.regressed), vec![1, 4]);
        assert_eq!(d.comparison.discordant, Some((2, 1)));
    }

    #[test]
    fn different_datasets_or_no_shared_rows_are_refused() {
        let a = side(&[(1, 1.0)]);
        assert!(matches!(
            diff("x", &a, "y", &a),
            Err(DiffError::DatasetMismatch { .. })
        ));
        assert!(matches!(
            diff("x", &a, "x", &side(&[(2, 1.0)])),
            Err(DiffError::NoCommonRows)
        ));
    }

    #[test]
    fn a_gain_reads_as_a_gain() {
        assert_eq!(
            describe_change(0.61, 0.75),
            "score 0.6100 → 0.7500 (+0.1400, better)"
        );
        assert_eq!(
            describe_change(0.75, 0.61),
            "score 0.7500 → 0.6100 (-0.1400, worse)"
        );
        assert!(describe_change(0.5, 0.5).ends_with("unchanged)"));
    }
}
