//! Markdown summary (`--markdown FILE`), written for CI step summaries
//! (GitHub's `$GITHUB_STEP_SUMMARY`, GitLab MR notes): the headline score
//! with its interval, counts, the gate verdicts with test and p-value, and
//! the examples that regressed against a `--baseline`, and the
//! lowest-scoring examples; `render_diff` writes `lmc diff --markdown`.
//! Table cells are escaped (pipes, newlines,
//! HTML) and truncated, because inputs and replies are arbitrary text.

use std::fmt::Write as _;

use super::diff::{describe_change, describe_test, Change, Diff};
use super::gate::GateOutcome;
use super::{EvalReport, ExampleResult};

/// How many changed examples a list shows (the JSON has them all).
const CHANGES: usize = 50;

/// How many of the lowest-scoring examples to list.
const WORST: usize = 10;

/// Make arbitrary text safe for one GitHub-flavoured Markdown table cell.
pub fn cell(s: &str, max_chars: usize) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut t: String = one_line.chars().take(max_chars).collect();
    if one_line.chars().count() > max_chars {
        t.push('…');
    }
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace('`', "\\`")
}

fn compact(v: &serde_json::Map<String, serde_json::Value>) -> String {
    v.iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}: {s}"),
            other => format!("{k}: {other}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The examples with the lowest scores (failures first), at most `n`.
pub fn worst(report: &EvalReport, n: usize) -> Vec<&ExampleResult> {
    let mut v: Vec<&ExampleResult> = report.results.iter().filter(|r| r.score < 1.0).collect();
    v.sort_by(|a, b| {
        a.score
            .total_cmp(&b.score)
            .then(b.failed().cmp(&a.failed()))
            .then(a.index.cmp(&b.index))
    });
    v.truncate(n);
    v
}

/// Render the summary; `gates` adds the verdict section.
pub fn render(report: &EvalReport, gates: Option<&GateOutcome>) -> String {
    let s = &report.summary;
    let mut m = String::new();
    let status = match gates {
        Some(g) if g.passed() => " — ✅ gates passed",
        Some(_) => " — ❌ gate failed",
        None => "",
    };
    let _ = writeln!(m, "## lmc eval: {}{status}\n", cell(&report.program, 80));
    if !report.status.complete {
        let _ = writeln!(
            m,
            "> ⚠️ **Incomplete run**: {}; the figures cover the finished examples only.\n",
            cell(&report.status.describe(), 200)
        );
    }
    m.push_str("| | |\n|---|---|\n");
    let _ = writeln!(
        m,
        "| **Score** | **{:.4}** (95% CI {:.4} – {:.4}) |",
        s.mean, s.ci95_low, s.ci95_high
    );
    let _ = writeln!(m, "| Metric | {} |", cell(&report.metric, 120));
    let _ = writeln!(
        m,
        "| Examples | {} (errors {}, parse failures {}{}) |",
        s.n,
        s.errors,
        s.parse_failures,
        if report.dataset.bad_rows > 0 {
            format!(", bad rows skipped {}", report.dataset.bad_rows)
        } else {
            String::new()
        }
    );
    let _ = writeln!(m, "| Model | {} |", cell(&report.model, 120));
    let _ = writeln!(
        m,
        "| LM calls | {} (cache hits {}) |",
        s.lm_calls, s.cache_hits
    );
    let _ = writeln!(
        m,
        "| Tokens | {} prompt + {} completion |",
        s.prompt_tokens, s.completion_tokens
    );
    let _ = writeln!(m, "| Cost | ${:.4} |", s.cost);
    // Per LM when the program used named LMs (the rows above are totals).
    for u in &report.lms {
        let l = &u.usage;
        let _ = writeln!(
            m,
            "| LM `{}` | {}: {} calls (cache hits {}), {} prompt + {} completion tokens, ${:.4} |",
            cell(&u.name, 40),
            cell(&u.model, 80),
            l.calls,
            l.cache_hits,
            l.prompt_tokens,
            l.completion_tokens,
            l.cost
        );
    }
    let _ = writeln!(
        m,
        "| Wall time | {:.1} s ({:.2} examples/s) |",
        s.wall_s, s.examples_per_s
    );
    let dataset = report.dataset.label();
    let short_hash: String = report
        .dataset
        .hash
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect();
    let _ = writeln!(
        m,
        "| Dataset | `{}` (sha256 {short_hash}) |",
        cell(&dataset, 120)
    );
    if let Some(g) = gates {
        m.push_str("\n### Gates\n\n");
        for c in &g.checks {
            let mark = if c.passed { "✅" } else { "❌" };
            let _ = writeln!(m, "- {mark} **{}**: {}", c.name, cell(&c.detail, 400));
        }
        if !g.regressed.is_empty() {
            let _ = writeln!(
                m,
                "\n### Regressed against the baseline ({} examples)\n",
                g.regressed.len()
            );
            changes_table(&g.regressed, "Baseline", "Now", &mut m);
        }
    }
    let worst = worst(report, WORST);
    if !worst.is_empty() {
        let _ = writeln!(
            m,
            "\n### Lowest-scoring examples ({} of {} under 1)\n",
            worst.len(),
            report.results.iter().filter(|r| r.score < 1.0).count()
        );
        m.push_str(
            "| Row | Score | Inputs | Expected | Output / error |\n|---:|---:|---|---|---|\n",
        );
        for r in worst {
            let out = match (&r.error, &r.outputs) {
                (Some(e), _) => format!("⚠ {e}"),
                (None, Some(o)) => compact(o),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                m,
                "| {} | {:.2} | {} | {} | {} |",
                r.row,
                r.score,
                cell(&compact(&r.inputs), 80),
                cell(&compact(&r.expected), 40),
                cell(&out, 80)
            );
        }
    }
    m
}

/// A table of changed examples: row, scores, inputs, expected, and what
/// each run produced.
fn changes_table(changes: &[Change], before: &str, after: &str, m: &mut String) {
    let _ = writeln!(
        m,
        "| Row | Score | Inputs | Expected | {before} got | {after} got |\n|---:|---|---|---|---|---|"
    );
    for c in changes.iter().take(CHANGES) {
        let _ = writeln!(
            m,
            "| {} | {:.2} → {:.2} | {} | {} | {} | {} |",
            c.row,
            c.before,
            c.after,
            cell(&compact(&c.inputs), 80),
            cell(&compact(&c.expected), 40),
            cell(&c.before_got, 60),
            cell(&c.after_got, 60)
        );
    }
    if changes.len() > CHANGES {
        let _ = writeln!(
            m,
            "\n{} more: see `lmc diff --json`.",
            changes.len() - CHANGES
        );
    }
}

/// `lmc diff --markdown`: the change of mean, the paired test, then the
/// regressed and improved examples.
pub fn render_diff(d: &Diff, before: &str, after: &str) -> String {
    let c = &d.comparison;
    let mut m = String::new();
    let _ = writeln!(
        m,
        "## lmc diff: `{}` → `{}`\n",
        cell(before, 120),
        cell(after, 120)
    );
    let _ = writeln!(
        m,
        "- **{}** on {} paired examples{}",
        describe_change(c.baseline_mean, c.current_mean),
        d.paired,
        unpaired_note(d)
    );
    let _ = writeln!(m, "- {}", cell(&describe_test(c), 300));
    let _ = writeln!(
        m,
        "- {} regressed, {} improved, {} unchanged",
        d.regressed.len(),
        d.improved.len(),
        d.paired - d.regressed.len() - d.improved.len()
    );
    for (title, list) in [("Regressed", &d.regressed), ("Improved", &d.improved)] {
        let _ = writeln!(m, "\n### {title} ({})\n", list.len());
        if list.is_empty() {
            m.push_str("None.\n");
        } else {
            changes_table(list, "Before", "After", &mut m);
        }
    }
    m
}

/// `; 3 rows only in the first report, ...` when the runs differ in rows.
pub fn unpaired_note(d: &Diff) -> String {
    let mut parts = Vec::new();
    if d.only_before > 0 {
        parts.push(format!("{} rows only in the first report", d.only_before));
    }
    if d.only_after > 0 {
        parts.push(format!("{} rows only in the second", d.only_after));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({}, left out)", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_single_line_and_escaped() {
        assert_eq!(cell("a|b\n<c>", 80), "a\\|b &lt;c&gt;");
        assert_eq!(cell("abcdef", 3), "abc…");
    }
}
