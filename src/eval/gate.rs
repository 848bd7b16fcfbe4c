//! CI gates: decide pass/fail from a report, a minimum score and a baseline.
//!
//! `--min-score` is a plain threshold on the mean. `--baseline` compares
//! example by example with a previous `--json` report of the same dataset
//! (same content hash) and fails only when the mean drop exceeds
//! `--max-drop` AND the drop is significant at 0.05 under a paired test, so
//! a gate on a noisy model does not flap. Pairing is by dataset row, so a
//! baseline taken on a different sample or limit compares only the rows both
//! runs scored.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::diff::{describe_change, describe_test, Change, SideResult};
use super::stats::{compare_paired, PairedComparison};
use super::EvalReport;

/// Significance level of the regression test.
pub const ALPHA: f64 = 0.05;

/// The parts of a previous `--json` report a baseline comparison needs.
/// Unknown fields are ignored so older and newer reports both load.
#[derive(Debug, Clone, Deserialize)]
pub struct Baseline {
    pub dataset: BaselineDataset,
    pub results: Vec<BaselineResult>,
    #[serde(default)]
    pub program: Option<String>,
    /// False for a report of a run that stopped early (interrupted, too
    /// many errors, budget): comparing against it would gate on a subset.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
}

/// Reports written before the `complete` field existed were complete.
fn complete_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct BaselineDataset {
    pub hash: String,
}

/// One baseline example: its row and score, plus (in reports written by
/// lmc) what it produced, so regressions can be shown side by side.
pub type BaselineResult = super::diff::SideResult;

impl Baseline {
    /// Parse a baseline from the JSON text of a report.
    pub fn from_json(text: &str) -> Result<Baseline, GateError> {
        let b: Baseline =
            serde_json::from_str(text).map_err(|e| GateError::BadBaseline(e.to_string()))?;
        if !b.complete {
            return Err(GateError::IncompleteBaseline);
        }
        Ok(b)
    }
}

/// A baseline that cannot be compared with the current run (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("baseline is not an `lmc eval --json` report: {0}")]
    BadBaseline(String),
    #[error("baseline was computed on a different dataset (hash {baseline}) than this run (hash {current}); regenerate the baseline with `lmc eval --json` on the same dataset file")]
    DatasetMismatch { baseline: String, current: String },
    #[error("baseline is the report of a run that stopped early (`\"complete\": false`); regenerate it with a full `lmc eval --json`")]
    IncompleteBaseline,
    #[error("baseline and this run share no dataset rows; use the same --limit/--sample/--split for both")]
    NoCommonRows,
}

/// One gate check and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateCheck {
    pub name: String,
    pub passed: bool,
    /// One line a human can act on, e.g. "mean 0.71 < min 0.80".
    pub detail: String,
}

/// All checks of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    pub checks: Vec<GateCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<PairedComparison>,
    /// With a baseline: the examples that scored lower than in the
    /// baseline, in row order (the Markdown and HTML reports list them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regressed: Vec<Change>,
}

impl GateOutcome {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// `--min-score X`: the mean must be at least X.
pub fn min_score(report: &EvalReport, min: f64) -> GateCheck {
    let mean = report.summary.mean;
    let passed = mean >= min;
    GateCheck {
        name: "min-score".into(),
        passed,
        detail: if passed {
            format!("mean {mean:.4} >= min {min:.4}")
        } else {
            format!("mean {mean:.4} < min {min:.4}")
        },
    }
}

/// `--baseline B --max-drop D`: paired comparison with a previous report.
pub fn baseline(
    report: &EvalReport,
    baseline: &Baseline,
    max_drop: f64,
) -> Result<(GateCheck, PairedComparison), GateError> {
    if baseline.dataset.hash != report.dataset.hash {
        return Err(GateError::DatasetMismatch {
            baseline: baseline.dataset.hash.clone(),
            current: report.dataset.hash.clone(),
        });
    }
    let by_row: HashMap<usize, f64> = baseline.results.iter().map(|r| (r.row, r.score)).collect();
    let mut base = Vec::new();
    let mut cur = Vec::new();
    for r in &report.results {
        if let Some(b) = by_row.get(&r.row) {
            base.push(*b);
            cur.push(r.score);
        }
    }
    if base.is_empty() {
        return Err(GateError::NoCommonRows);
    }
    let cmp = compare_paired(&base, &cur);
    let too_big = cmp.drop > max_drop;
    let significant = cmp.p_value < ALPHA;
    let passed = !(too_big && significant);
    let verdict = match (too_big, significant) {
        (true, true) => "significant regression",
        (true, false) => "drop above max but not significant: passes",
        (false, _) => "within max drop",
    };
    // "drop +0.14" read like a gain: say the direction in words.
    let detail = format!(
        "{} on {} paired examples (allowed drop {:.4}); {}; {}",
        describe_change(cmp.baseline_mean, cmp.current_mean),
        cmp.n,
        max_drop,
        describe_test(&cmp),
        verdict
    );
    Ok((
        GateCheck {
            name: "baseline".into(),
            passed,
            detail,
        },
        cmp,
    ))
}

/// The examples of `report` that scored lower than in `baseline` (paired
/// by dataset row), for the regression lists of the Markdown and HTML
/// reports. Empty when the two cannot be paired.
pub fn regressed(report: &EvalReport, baseline: &Baseline) -> Vec<Change> {
    let current: Vec<SideResult> = report.results.iter().map(SideResult::from).collect();
    super::diff::diff(
        &baseline.dataset.hash,
        &baseline.results,
        &report.dataset.hash,
        &current,
    )
    .map(|d| d.regressed)
    .unwrap_or_default()
}
