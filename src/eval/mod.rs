//! Evaluation: score a program (with an overlay) on a dataset under a metric.
//!
//! This module owns the eval data model shared by `lmc eval`, CI gates and
//! the optimizers that score candidates: per-example [`ExampleResult`]s in
//! input order, a [`Summary`] (mean, seeded bootstrap interval, error and
//! token counts) and the [`EvalReport`] that carries both with the dataset
//! and program identity. The runner (`runner`) runs examples concurrently
//! and records failures as scored-zero results instead of aborting; `stats`
//! holds the statistics, `gate` the CI decisions, and `junit`, `markdown`,
//! `html` and `results` write the report formats (`plots` draws their SVG);
//! `compare` and `compare_html` fold several evaluations into `lmc compare`'s
//! report. Library code never prints:
//! progress goes through [`EvalReporter`], which the CLI implements.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

use crate::lm::Usage;
use crate::trace::Trace;

pub mod compare;
pub mod compare_html;
pub mod diff;
pub mod gate;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod plots;
pub mod results;
pub mod runner;
pub mod stats;

pub use runner::{evaluate, evaluate_until};

/// Report format identifier written into every JSON report.
pub const REPORT_FORMAT: &str = "lmc-eval/1";

/// How to run an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    /// Examples in flight at once (at least 1).
    pub concurrency: usize,
    /// Abort (with partial results) once more than this many examples failed.
    pub max_errors: Option<usize>,
    /// Keep each example's full trace in its result (HTML reports, GEPA).
    pub keep_traces: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            concurrency: 8,
            max_errors: None,
            keep_traces: false,
        }
    }
}

/// Running totals handed to reporters after every finished example.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunningStats {
    pub done: usize,
    pub total: usize,
    /// Mean score of the finished examples.
    pub mean: f64,
    pub errors: usize,
    pub parse_failures: usize,
    pub lm_calls: usize,
    pub cache_hits: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub elapsed_s: f64,
}

/// Progress callbacks. Implemented by the CLI (progress bars) and by
/// optimizers that aggregate candidate evaluations; [`NoopReporter`] ignores
/// everything. Called from the evaluating task, never concurrently.
pub trait EvalReporter: Send + Sync {
    fn start(&self, _total: usize) {}
    fn example_done(&self, _result: &ExampleResult, _running: &RunningStats) {}
    /// A stop was requested (`reason`, e.g. "SIGINT"): no new example
    /// starts; `in_flight` examples get up to `grace` to finish before they
    /// are abandoned.
    fn interrupted(&self, _reason: &str, _in_flight: usize, _grace: std::time::Duration) {}
    fn finish(&self) {}
}

/// A reporter that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopReporter;

impl EvalReporter for NoopReporter {}

/// The outcome for one example. Failures (LM error, unparseable reply,
/// metric error) are results too: scored 0, with the error and raw reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleResult {
    /// Position in the evaluated example list (results are in this order).
    pub index: usize,
    /// Row number in the dataset file (1-based data row), for pairing with
    /// a baseline and for humans.
    pub row: usize,
    pub inputs: Map<String, Value>,
    pub expected: Map<String, Value>,
    #[serde(default)]
    pub outputs: Option<Map<String, Value>>,
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub parse_failure: bool,
    /// The reply that failed to parse (kept so users can see what the model said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_reply: Option<String>,
    pub latency_s: f64,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub cost: f64,
    /// Every LM call of this example was answered from the cache.
    #[serde(default)]
    pub cache_hit: bool,
    /// LM calls that reached the backend (cache misses).
    #[serde(default)]
    pub lm_calls: usize,
    /// LM calls answered from the cache.
    #[serde(default)]
    pub cache_hits: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
}

impl ExampleResult {
    /// Whether the example failed to produce a scorable output.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// Aggregate figures of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    /// 95% interval of the mean (closed form, see `stats::ci95`).
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// How the interval was computed (`wilson` for 0/1 scores, else `student_t`).
    #[serde(default)]
    pub ci95_method: stats::IntervalMethod,
    pub n: usize,
    /// Examples that failed (any reason, parse failures included).
    pub errors: usize,
    /// Examples whose failure was an unparseable reply.
    pub parse_failures: usize,
    /// LM calls that reached the backend.
    pub lm_calls: usize,
    pub cache_hits: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub wall_s: f64,
    pub examples_per_s: f64,
}

impl Summary {
    /// Compute the summary of results (wall time measured by the caller).
    pub fn from_results(results: &[ExampleResult], wall_s: f64) -> Summary {
        let scores: Vec<f64> = results.iter().map(|r| r.score).collect();
        let (ci95_low, ci95_high, ci95_method) = stats::ci95(&scores);
        let mut s = Summary {
            mean: stats::mean(&scores),
            ci95_low,
            ci95_high,
            ci95_method,
            n: results.len(),
            wall_s,
            examples_per_s: if wall_s > 0.0 {
                results.len() as f64 / wall_s
            } else {
                0.0
            },
            ..Summary::default()
        };
        for r in results {
            s.errors += r.failed() as usize;
            s.parse_failures += r.parse_failure as usize;
            s.lm_calls += r.lm_calls;
            s.cache_hits += r.cache_hits;
            s.prompt_tokens += r.usage.prompt_tokens;
            s.completion_tokens += r.usage.completion_tokens;
            s.cost += r.cost;
        }
        s
    }
}

/// Which data was evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// sha256 of the dataset file's bytes; baselines must match it.
    #[serde(default)]
    pub hash: String,
    /// Examples evaluated.
    pub n: usize,
    /// Rows skipped by `--skip-bad-rows`.
    #[serde(default)]
    pub bad_rows: usize,
}

impl DatasetInfo {
    /// The dataset as reports name it: its path, or `(in memory)`.
    pub fn label(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(in memory)".into())
    }
}

/// The full result of an evaluation: what `--json` prints and `--baseline` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub format: String,
    /// Program name.
    pub program: String,
    /// sha256 of the program file.
    pub program_hash: String,
    /// sha256 of the overlay (instructions and demos) evaluated.
    pub overlay_hash: String,
    /// The metric, as described by the metric module.
    pub metric: String,
    #[serde(default)]
    pub model: String,
    pub dataset: DatasetInfo,
    /// Enum-typed program outputs and their values (for per-label reports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_fields: Vec<LabelField>,
    pub summary: Summary,
    /// Whether every example was evaluated (written at the top level:
    /// `complete`, `interrupted`, `examples_done`, `examples_total`,
    /// `stop_reason`).
    #[serde(flatten)]
    pub status: RunStatus,
    /// Per-example results in input order.
    pub results: Vec<ExampleResult>,
    /// Gate verdicts, when gates were asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<gate::GateOutcome>,
    /// Usage per LM when the program used named LMs (the summary keeps
    /// the totals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lms: Vec<crate::lm::usage::LmUsage>,
    /// lmc version that produced the report.
    pub lmc_version: String,
}

/// Whether an evaluation ran to the end. An incomplete report (interrupted,
/// too many errors, budget spent) holds only the examples that finished;
/// its scores cover those alone and gates never pass on it. Reports written
/// before these fields existed read back as complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    #[serde(default = "yes")]
    pub complete: bool,
    /// Stopped by an interrupt (SIGINT, SIGTERM) rather than by an error.
    #[serde(default)]
    pub interrupted: bool,
    /// Examples with a result in this report.
    #[serde(default)]
    pub examples_done: usize,
    /// Examples the run was asked to evaluate.
    #[serde(default)]
    pub examples_total: usize,
    /// Why the run stopped early, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for RunStatus {
    fn default() -> Self {
        RunStatus {
            complete: true,
            interrupted: false,
            examples_done: 0,
            examples_total: 0,
            stop_reason: None,
        }
    }
}

impl RunStatus {
    /// One line for reports: `interrupted (SIGINT) after 3 of 10 examples`.
    pub fn describe(&self) -> String {
        format!(
            "{} after {} of {} examples",
            self.stop_reason.as_deref().unwrap_or("stopped early"),
            self.examples_done,
            self.examples_total
        )
    }
}

/// A program output with a closed set of values (an enum or a bool).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelField {
    pub name: String,
    pub values: Vec<String>,
}

/// Why an evaluation stopped without a full report.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// More examples failed than `max_errors` allows. Holds what finished.
    #[error("stopped after {errors} failed examples (--max-errors {max_errors}); last error: {last_error}")]
    TooManyErrors {
        errors: usize,
        max_errors: usize,
        last_error: String,
        partial: Box<EvalReport>,
    },
    /// An LM budget ran out; the examples already answered are cached, so a
    /// re-run resumes from there.
    #[error("{message} ({done} of {total} examples finished; their LM replies are cached, re-run to resume)")]
    Budget {
        message: String,
        done: usize,
        total: usize,
        partial: Box<EvalReport>,
    },
    /// Nothing to evaluate.
    #[error("no examples to evaluate")]
    Empty,
}

impl EvalError {
    /// The partial report, when the run got that far.
    pub fn partial(&self) -> Option<&EvalReport> {
        match self {
            EvalError::TooManyErrors { partial, .. } | EvalError::Budget { partial, .. } => {
                Some(partial)
            }
            EvalError::Empty => None,
        }
    }
}

/// A path as reports show it: relative to the working directory when it
/// lies under it (reports are shared and committed, and an absolute local
/// path says nothing to the reader and leaks the runner's layout), as
/// given otherwise.
pub fn report_path(p: &std::path::Path) -> PathBuf {
    let stripped = std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(&cwd).ok().map(std::path::Path::to_path_buf));
    let p = stripped.unwrap_or_else(|| p.to_path_buf());
    // `./x.csv` and `x.csv` are the same file: show the shorter.
    p.strip_prefix(".")
        .map(std::path::Path::to_path_buf)
        .unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Wrapped {
        format: String,
        #[serde(flatten)]
        status: RunStatus,
    }

    #[test]
    fn run_status_is_top_level_and_old_reports_read_as_complete() {
        let old: Wrapped = serde_json::from_str(r#"{"format": "lmc-eval/1"}"#).unwrap();
        assert_eq!(old.status, RunStatus::default());
        assert!(old.status.complete);
        let partial = Wrapped {
            format: REPORT_FORMAT.into(),
            status: RunStatus {
                complete: false,
                interrupted: true,
                examples_done: 3,
                examples_total: 10,
                stop_reason: Some("interrupted (SIGINT)".into()),
            },
        };
        let v = serde_json::to_value(&partial).unwrap();
        assert_eq!(v["complete"], false);
        assert_eq!(v["interrupted"], true);
        assert_eq!(v["examples_done"], 3);
        assert_eq!(
            partial.status.describe(),
            "interrupted (SIGINT) after 3 of 10 examples"
        );
    }
}
