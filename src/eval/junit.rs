//! JUnit XML (`--junit FILE`). Two shapes, chosen with `--junit-mode`:
//! `examples` (the default, kept for existing dashboards) has one
//! `<testcase>` per example so CI systems (GitHub, GitLab, Jenkins) list
//! failing examples like failing tests: a failed run (LM error, parse
//! failure, metric error) is an `<error>`, a score under 1 a `<failure>`.
//! That makes a dashboard red whenever any example is wrong, even when the
//! gate passed; `gates` has one `<testcase>` per gate instead (a failed
//! gate is a `<failure>` carrying the verdict), so red means "the gate
//! failed". Everything user- or model-supplied is
//! escaped, and characters XML 1.0 forbids even escaped (most C0 controls)
//! are replaced, because a model reply can contain anything. An incomplete
//! run (interrupted, stopped by errors or a budget) adds one erroring
//! testcase saying so, so a partial report never reads as all green.

use std::fmt::Write as _;
use std::io::Write;

use super::gate::GateOutcome;
use super::{EvalReport, ExampleResult};

/// What one JUnit testcase stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum JunitMode {
    /// One testcase per example: every wrong example is a failed test.
    #[default]
    Examples,
    /// One testcase per gate (or one "eval" testcase when no gate was
    /// asked for): failed only when a gate failed.
    Gates,
}

/// Escape text for XML character data and attribute values, replacing
/// characters that XML 1.0 cannot carry with U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Escape for an attribute value, keeping newlines (attribute-value
/// normalisation would otherwise turn them into spaces).
fn attr(s: &str) -> String {
    xml_escape(s)
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

/// A short, single-line name for an example: its row and first input.
pub fn case_name(r: &ExampleResult) -> String {
    let first = r
        .inputs
        .values()
        .next()
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let first: String = first.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = first.chars().take(60).collect();
    let ell = if first.chars().count() > 60 {
        "…"
    } else {
        ""
    };
    format!("row {}: {short}{ell}", r.row)
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Render the report as a JUnit XML document in the given mode.
pub fn render_mode(report: &EvalReport, gates: Option<&GateOutcome>, mode: JunitMode) -> String {
    match mode {
        JunitMode::Examples => render(report),
        JunitMode::Gates => render_gates(report, gates),
    }
}

/// The suite's properties: the figures a dashboard may chart.
fn properties(report: &EvalReport, x: &mut String) {
    let s = &report.summary;
    x.push_str("    <properties>\n");
    let props = [
        ("mean", format!("{:.6}", s.mean)),
        ("ci95_low", format!("{:.6}", s.ci95_low)),
        ("ci95_high", format!("{:.6}", s.ci95_high)),
        ("examples", s.n.to_string()),
        ("errors", s.errors.to_string()),
        ("model", report.model.clone()),
        ("dataset_hash", report.dataset.hash.clone()),
        ("program_hash", report.program_hash.clone()),
        ("lm_calls", s.lm_calls.to_string()),
        ("complete", report.status.complete.to_string()),
        ("interrupted", report.status.interrupted.to_string()),
        ("examples_total", report.status.examples_total.to_string()),
    ];
    for (k, v) in props {
        let _ = writeln!(x, "      <property name=\"{k}\" value=\"{}\"/>", attr(&v));
    }
    x.push_str("    </properties>\n");
}

/// An incomplete run (interrupted, stopped by errors or a budget) gets one
/// erroring testcase in either mode, so a partial report never reads green.
fn incomplete_case(report: &EvalReport, x: &mut String) {
    if report.status.complete {
        return;
    }
    let what = format!("incomplete run: {}", report.status.describe());
    let _ = writeln!(
        x,
        "    <testcase name=\"{}\" classname=\"lmc\" time=\"0.000\">\n      <error message=\"{}\" type=\"incomplete\">only the examples that finished are reported</error>\n    </testcase>",
        attr(&what),
        attr(&what)
    );
}

/// One testcase per gate. Without gates there is nothing to fail, so a
/// single passing `eval` testcase records that the run completed.
fn render_gates(report: &EvalReport, gates: Option<&GateOutcome>) -> String {
    let s = &report.summary;
    let checks: Vec<(String, bool, String)> = match gates {
        Some(g) if !g.checks.is_empty() => g
            .checks
            .iter()
            .map(|c| (c.name.clone(), c.passed, c.detail.clone()))
            .collect(),
        _ => vec![(
            "eval".into(),
            true,
            format!("mean {:.4} on {} examples (no gate asked for)", s.mean, s.n),
        )],
    };
    let failures = checks.iter().filter(|c| !c.1).count();
    let incomplete = !report.status.complete as usize;
    let (tests, errors) = (checks.len() + incomplete, incomplete);
    let mut x = open(report, "lmc eval gates", tests, failures, errors);
    let summary = format!(
        "score {:.4} (95% CI {:.4} - {:.4}) on {} examples; errors {}, parse failures {}",
        s.mean, s.ci95_low, s.ci95_high, s.n, s.errors, s.parse_failures
    );
    for (name, passed, detail) in checks {
        let _ = write!(
            x,
            "    <testcase name=\"gate {}\" classname=\"{}\" time=\"{:.3}\">",
            attr(&name),
            attr(&report.program),
            s.wall_s
        );
        if !passed {
            let _ = write!(
                x,
                "\n      <failure message=\"{}\" type=\"gate_failed\">{}</failure>",
                attr(&detail),
                xml_escape(&summary)
            );
        }
        let _ = writeln!(
            x,
            "\n      <system-out>{}</system-out>\n    </testcase>",
            xml_escape(&format!("{detail}\n{summary}"))
        );
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// The document's opening, the same for both modes: the XML declaration,
/// `<testsuites name=ROOT>` and one `<testsuite>` named after the program
/// and metric with the counts and wall time, its properties, and the
/// testcase an incomplete run adds. The caller writes its testcases and
/// closes both elements.
fn open(report: &EvalReport, root: &str, tests: usize, failures: usize, errors: usize) -> String {
    let s = &report.summary;
    let suite = format!("{} ({})", report.program, report.metric);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"{root}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\">",
        s.wall_s
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{:.3}\">",
        attr(&suite),
        s.wall_s
    );
    properties(report, &mut x);
    incomplete_case(report, &mut x);
    x
}

/// Render the report as a JUnit XML document, one testcase per example.
pub fn render(report: &EvalReport) -> String {
    let s = &report.summary;
    let failures = report
        .results
        .iter()
        .filter(|r| !r.failed() && r.score < 1.0)
        .count();
    let incomplete = !report.status.complete;
    let (tests, errors) = (s.n + incomplete as usize, s.errors + incomplete as usize);
    let mut x = open(report, "lmc eval", tests, failures, errors);
    for r in &report.results {
        let _ = write!(
            x,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
            attr(&case_name(r)),
            attr(&report.program),
            r.latency_s
        );
        let body = format!(
            "inputs: {}\nexpected: {}\noutputs: {}{}",
            json(&r.inputs),
            json(&r.expected),
            r.outputs
                .as_ref()
                .map(json)
                .unwrap_or_else(|| "none".into()),
            r.feedback
                .as_ref()
                .map(|f| format!("\nfeedback: {f}"))
                .unwrap_or_default()
        );
        if let Some(err) = &r.error {
            let kind = if r.parse_failure {
                "parse_failure"
            } else {
                "error"
            };
            let raw = r
                .raw_reply
                .as_ref()
                .map(|raw| format!("\nraw reply:\n{raw}"))
                .unwrap_or_default();
            let _ = writeln!(
                x,
                ">\n      <error message=\"{}\" type=\"{kind}\">{}</error>\n    </testcase>",
                attr(err),
                xml_escape(&format!("{body}{raw}"))
            );
        } else if r.score < 1.0 {
            let _ = writeln!(
                x,
                ">\n      <failure message=\"score {:.4} &lt; 1\" type=\"low_score\">{}</failure>\n    </testcase>",
                r.score,
                xml_escape(&body)
            );
        } else {
            x.push_str("/>\n");
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

pub fn write(
    report: &EvalReport,
    gates: Option<&GateOutcome>,
    mode: JunitMode,
    mut out: impl Write,
) -> std::io::Result<()> {
    out.write_all(render_mode(report, gates, mode).as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_forbidden_controls() {
        assert_eq!(
            xml_escape("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(xml_escape("x\u{0}y\u{1b}z\n"), "x\u{FFFD}y\u{FFFD}z\n");
        assert_eq!(attr("a\nb"), "a&#10;b");
    }
}
