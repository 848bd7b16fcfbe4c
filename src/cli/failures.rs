//! What went wrong in a run, said on stderr: failed examples grouped by
//! cause (counts, and the first example of each), and the rule that a run
//! in which every example failed is a broken run (exit 3), not a score of 0.
//!
//! Before this, a server that was down or a dataset without its label made
//! `lmc eval` print `score 0.0000, errors 10` and exit 0; the reason was only
//! inside `--json`. Grouping keeps the summary short when a thousand
//! examples fail for the same reason.

use crate::eval::{EvalReport, ExampleResult};

/// Failed examples that share one cause.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub count: usize,
    /// Dataset row of the first example that failed this way.
    pub first_row: usize,
    /// That example's full error message.
    pub message: String,
}

/// How many causes the summary lists; the rest are counted in one line.
const SHOWN: usize = 5;

/// Group the failed results by cause, most frequent first (ties: the cause
/// seen first). Two messages are one cause when they differ only in numbers
/// (row numbers, ports, retry counts) — enough to fold per-row repeats.
pub fn causes(results: &[ExampleResult]) -> Vec<Cause> {
    let mut groups: Vec<(String, Cause)> = Vec::new();
    for r in results {
        let Some(msg) = &r.error else { continue };
        let key = shape(msg);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => c.count += 1,
            None => groups.push((
                key,
                Cause {
                    count: 1,
                    first_row: r.row,
                    message: msg.clone(),
                },
            )),
        }
    }
    let mut out: Vec<Cause> = groups.into_iter().map(|(_, c)| c).collect();
    // A stable sort keeps first-seen order among equal counts.
    out.sort_by_key(|c| std::cmp::Reverse(c.count));
    out
}

/// A message with every run of digits replaced by `#`.
fn shape(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_digits = false;
    for ch in msg.chars() {
        if ch.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(ch);
            in_digits = false;
        }
    }
    out
}

/// The summary lines (empty when nothing failed).
pub fn summary_lines(report: &EvalReport) -> Vec<String> {
    let failed = report.results.iter().filter(|r| r.failed()).count();
    if failed == 0 {
        return Vec::new();
    }
    let causes = causes(&report.results);
    let mut lines = vec![format!(
        "{failed} of {} examples failed ({} cause{}):",
        report.results.len(),
        causes.len(),
        if causes.len() == 1 { "" } else { "s" }
    )];
    for c in causes.iter().take(SHOWN) {
        lines.push(format!(
            "  {:>5} × {}   (first: row {})",
            c.count,
            one_line(&c.message),
            c.first_row
        ));
    }
    if causes.len() > SHOWN {
        let rest: usize = causes[SHOWN..].iter().map(|c| c.count).sum();
        lines.push(format!(
            "  {rest:>5} × {} other causes (see --json or --results)",
            causes.len() - SHOWN
        ));
    }
    lines
}

/// Print the summary on stderr, as a warning.
pub fn print_summary(report: &EvalReport) {
    let lines = summary_lines(report);
    if let Some((first, rest)) = lines.split_first() {
        eprintln!("warning: {first}");
        for l in rest {
            eprintln!("{l}");
        }
    }
}

/// Whether the run is broken rather than scored: there were examples and
/// every one failed before it could be scored (the LM unreachable, no
/// expected value, a metric that cannot run). Unparseable replies are the
/// model's answers, scored 0: a model that never follows the format is a
/// quality result for the gates, not a broken run.
pub fn all_failed(report: &EvalReport) -> bool {
    !report.results.is_empty()
        && report
            .results
            .iter()
            .all(|r| r.failed() && !r.parse_failure)
}

/// Errors can span lines (a server's body); the summary keeps one line each.
fn one_line(msg: &str) -> String {
    let flat: String = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        let cut: String = flat.chars().take(300).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(row: usize, error: &str) -> ExampleResult {
        ExampleResult {
            index: row - 1,
            row,
            inputs: Default::default(),
            expected: Default::default(),
            outputs: None,
            score: 0.0,
            feedback: None,
            error: Some(error.to_string()),
            parse_failure: false,
            raw_reply: None,
            latency_s: 0.0,
            usage: Default::default(),
            cost: 0.0,
            cache_hit: false,
            lm_calls: 0,
            cache_hits: 0,
            trace: None,
        }
    }

    #[test]
    fn failures_differing_only_in_numbers_are_one_cause() {
        let rs = vec![
            failed(1, "row 1: no expected value `sentiment`"),
            failed(2, "connection refused (127.0.0.1:9)"),
            failed(3, "row 3: no expected value `sentiment`"),
        ];
        let c = causes(&rs);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].count, c[0].first_row), (2, 1));
        assert_eq!(c[1].message, "connection refused (127.0.0.1:9)");
    }
}
