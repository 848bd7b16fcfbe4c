//! `lmc compare`'s data model: several evaluations of one dataset (targets ×
//! LM variants, the "cells") folded into one report, each candidate cell
//! tested against a reference cell example by example.
//!
//! The runs themselves are ordinary evaluations (`runner`); this module only
//! pairs their results by dataset row, computes the per-cell figures a
//! person compares (score with its interval, latency percentiles, cost per
//! 1,000 examples from the token counts and the LM's prices), the paired
//! test against the reference (`stats::paired_difference`), the examples
//! that flipped, and the gate verdict. Keeping it pure lets the terminal,
//! JSON, Markdown and HTML outputs render the same numbers.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::stats::{self, PairedDifference};
use super::{DatasetInfo, EvalReport, ExampleResult, Summary};

/// Report format identifier of `lmc compare --json`.
pub const COMPARE_FORMAT: &str = "lmc-compare/1";

/// USD per million tokens, when the cell's LM config states them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    pub prompt_per_mtok: f64,
    pub completion_per_mtok: f64,
}

/// What one cell evaluated, as the CLI resolved it.
#[derive(Debug, Clone)]
pub struct CellInput {
    /// Short unique label, e.g. `sentiment.yaml @ cheap`.
    pub name: String,
    /// The program or artifact file, as given.
    pub target: String,
    /// The LM variant's name (`None`: the target's own LM).
    pub variant: Option<String>,
    pub prices: Option<Prices>,
    pub report: EvalReport,
}

/// One evaluated (target, LM) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub name: String,
    pub target: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub program: String,
    pub model: String,
    pub summary: Summary,
    pub latency_p50_s: f64,
    pub latency_p95_s: f64,
    /// Cost of 1,000 examples at this cell's token use, from the LM's
    /// prices (cache hits included: it is what the traffic would cost).
    #[serde(default)]
    pub cost_per_1k: Option<f64>,
    /// Every example was evaluated.
    pub complete: bool,
}

/// A candidate cell against the reference cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Index of the candidate cell.
    pub cell: usize,
    #[serde(flatten)]
    pub test: PairedDifference,
    /// Worse than the reference at the report's alpha (one-sided).
    pub significantly_worse: bool,
    /// Different from the reference at the report's alpha (two-sided).
    pub significantly_different: bool,
    /// Dataset rows that score lower than on the reference.
    pub worse_rows: Vec<usize>,
    /// Dataset rows that score higher than on the reference.
    pub better_rows: Vec<usize>,
}

/// One cell's outcome on one example (for the per-example table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellOutcome {
    pub score: f64,
    #[serde(default)]
    pub outputs: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_reply: Option<String>,
    pub latency_s: f64,
}

/// One dataset row across the cells (`None`: that cell did not reach it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareExample {
    pub row: usize,
    pub inputs: Map<String, Value>,
    pub expected: Map<String, Value>,
    pub cells: Vec<Option<CellOutcome>>,
}

/// `lmc compare --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    pub format: String,
    pub dataset: DatasetInfo,
    pub metric: String,
    /// Index of the reference cell.
    pub reference: usize,
    pub alpha: f64,
    pub cells: Vec<Cell>,
    /// One per candidate cell (every cell but the reference), in cell order.
    pub comparisons: Vec<Comparison>,
    pub examples: Vec<CompareExample>,
    /// Every cell evaluated every example.
    pub complete: bool,
    pub lmc_version: String,
}

impl CompareReport {
    /// Candidates significantly worse than the reference (the gate's
    /// failures), as `name: detail` lines.
    pub fn worse(&self) -> Vec<String> {
        let r = &self.cells[self.reference].name;
        self.comparisons
            .iter()
            .filter(|c| c.significantly_worse)
            .map(|c| {
                format!(
                    "{} is worse than {r}: {:+.4} (p = {}, {}, {} examples worse, {} better)",
                    self.cells[c.cell].name,
                    c.test.mean_diff,
                    fmt_p(c.test.p_worse),
                    c.test.test.name(),
                    c.worse_rows.len(),
                    c.better_rows.len()
                )
            })
            .collect()
    }

    /// The comparison of cell `i` with the reference (`None` for the reference).
    pub fn comparison(&self, i: usize) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.cell == i)
    }
}

/// A p-value as people read it: 4 significant digits, `<0.0001` below.
pub fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        "<0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

/// Nearest-rank percentile (`q` in 0..=1) of unsorted values; 0 for none.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn cell_of(input: &CellInput) -> Cell {
    let r = &input.report;
    let lat: Vec<f64> = r.results.iter().map(|x| x.latency_s).collect();
    let s = &r.summary;
    let cost_per_1k = input.prices.filter(|_| s.n > 0).map(|p| {
        let per_example = (s.prompt_tokens as f64 * p.prompt_per_mtok
            + s.completion_tokens as f64 * p.completion_per_mtok)
            / 1e6
            / s.n as f64;
        per_example * 1000.0
    });
    Cell {
        name: input.name.clone(),
        target: input.target.clone(),
        variant: input.variant.clone(),
        program: r.program.clone(),
        model: r.model.clone(),
        summary: s.clone(),
        latency_p50_s: percentile(&lat, 0.5),
        latency_p95_s: percentile(&lat, 0.95),
        cost_per_1k,
        complete: r.status.complete,
    }
}

fn outcome(r: &ExampleResult) -> CellOutcome {
    CellOutcome {
        score: r.score,
        outputs: r.outputs.clone(),
        error: r.error.clone(),
        raw_reply: r.raw_reply.clone(),
        latency_s: r.latency_s,
    }
}

/// Fold the cells' evaluations into one report. Examples pair by dataset
/// row; a cell that stopped early is compared on the rows it reached.
pub fn build(
    inputs: Vec<CellInput>,
    reference: usize,
    alpha: f64,
    dataset: DatasetInfo,
) -> CompareReport {
    let cells: Vec<Cell> = inputs.iter().map(cell_of).collect();
    let mut by_row: BTreeMap<usize, CompareExample> = BTreeMap::new();
    for (i, input) in inputs.iter().enumerate() {
        for r in &input.report.results {
            let e = by_row.entry(r.row).or_insert_with(|| CompareExample {
                row: r.row,
                inputs: r.inputs.clone(),
                expected: r.expected.clone(),
                cells: vec![None; inputs.len()],
            });
            e.cells[i] = Some(outcome(r));
        }
    }
    let examples: Vec<CompareExample> = by_row.into_values().collect();
    let comparisons = (0..cells.len())
        .filter(|i| *i != reference)
        .map(|i| compare_cell(&examples, reference, i, alpha))
        .collect();
    let complete = cells.iter().all(|c| c.complete);
    CompareReport {
        format: COMPARE_FORMAT.into(),
        dataset,
        metric: inputs
            .first()
            .map(|i| i.report.metric.clone())
            .unwrap_or_default(),
        reference,
        alpha,
        cells,
        comparisons,
        examples,
        complete,
        lmc_version: env!("CARGO_PKG_VERSION").into(),
    }
}

fn compare_cell(
    examples: &[CompareExample],
    reference: usize,
    cell: usize,
    alpha: f64,
) -> Comparison {
    let mut r_scores = Vec::new();
    let mut c_scores = Vec::new();
    let mut worse_rows = Vec::new();
    let mut better_rows = Vec::new();
    for e in examples {
        let (Some(r), Some(c)) = (&e.cells[reference], &e.cells[cell]) else {
            continue;
        };
        r_scores.push(r.score);
        c_scores.push(c.score);
        // Exact comparison on purpose: metrics return the same float for
        // the same answer, and any real change counts as a flip.
        if c.score < r.score {
            worse_rows.push(e.row);
        } else if c.score > r.score {
            better_rows.push(e.row);
        }
    }
    let test = stats::paired_difference(&r_scores, &c_scores);
    Comparison {
        cell,
        significantly_worse: test.mean_diff < 0.0 && test.p_worse < alpha,
        significantly_different: test.mean_diff != 0.0 && test.p_two_sided < alpha,
        test,
        worse_rows,
        better_rows,
    }
}

/// `--markdown`: a CI step summary, one table row per cell.
pub fn markdown(r: &CompareReport, gate: bool) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let dataset = r.dataset.label();
    let _ = writeln!(
        s,
        "## lmc compare: {} examples of `{dataset}`\n",
        r.dataset.n
    );
    let _ = writeln!(
        s,
        "Metric: {}. Reference: **{}**. Paired tests at alpha = {}.\n",
        r.metric, r.cells[r.reference].name, r.alpha
    );
    let _ = writeln!(
        s,
        "| # | cell | model | score (95% CI) | Δ vs ref | p (worse) | worse / better | parse fail | tokens | p50 / p95 s | $ / 1k |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, c) in r.cells.iter().enumerate() {
        let (delta, p, flips) = match r.comparison(i) {
            None => ("reference".to_string(), "".to_string(), "".to_string()),
            Some(k) => (
                format!(
                    "{:+.4}{}",
                    k.test.mean_diff,
                    if k.significantly_worse {
                        " ⚠ worse"
                    } else {
                        ""
                    }
                ),
                fmt_p(k.test.p_worse),
                format!("{} / {}", k.worse_rows.len(), k.better_rows.len()),
            ),
        };
        let s_ = &c.summary;
        let _ = writeln!(
            s,
            "| {} | {} | `{}` | {:.4} ({:.4}–{:.4}) | {delta} | {p} | {flips} | {} | {} | {:.3} / {:.3} | {} |",
            i + 1,
            c.name.replace('|', "\\|"),
            c.model,
            s_.mean,
            s_.ci95_low,
            s_.ci95_high,
            s_.parse_failures,
            s_.prompt_tokens + s_.completion_tokens,
            c.latency_p50_s,
            c.latency_p95_s,
            c.cost_per_1k
                .map(|x| format!("{x:.4}"))
                .unwrap_or_else(|| "–".into())
        );
    }
    if gate {
        let worse = r.worse();
        let verdict = if !r.complete {
            "**Gate not run**: the comparison is incomplete.".to_string()
        } else if worse.is_empty() {
            "**Gate passed**: no candidate is significantly worse than the reference.".to_string()
        } else {
            format!("**Gate FAILED**:\n\n- {}", worse.join("\n- "))
        };
        let _ = writeln!(s, "\n{verdict}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 10.0);
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert_eq!(percentile(&[3.0], 0.95), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
