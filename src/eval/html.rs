//! Self-contained HTML report (`--html FILE`): one file with inline CSS,
//! SVG and a small inline script, no external assets, so it can be attached
//! to a CI run and opened offline. It shows the summary, the gate verdicts
//! and (with `--baseline`) the examples that regressed, a score histogram,
//! a per-label breakdown and confusion matrix for every enum/bool output,
//! the worst examples with the prompts sent and replies received (from
//! their traces), and a table of all examples with expected vs got that
//! sorts on a header click and filters by text, outcome, label and score
//! (`report.js`; the view is kept in the URL fragment). `render_diff`
//! writes `lmc diff --html` with the same look. Every piece of text is
//! escaped; the script only reads the page.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use serde_json::Value;

use super::diff::{self, describe_change, describe_test, Change, Diff};
use super::gate::GateOutcome;
use super::junit::xml_escape as esc;
use super::markdown::worst;
use super::{EvalReport, ExampleResult, LabelField};

/// Worst examples shown with full prompts and replies.
const WORST: usize = 20;
/// Rows in the all-examples table (the JSONL results hold the rest).
const TABLE_ROWS: usize = 2000;

pub(super) const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f5f5f5}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.pass{color:#176f2c}.fail{color:#b00020}pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:6px;margin:2px 0;max-height:30em;overflow:auto}\
details{margin:.6em 0;border:1px solid #e3e3e3;padding:.3em .6em}summary{cursor:pointer}.role{font-weight:600;color:#555}\
table.sortable th{cursor:pointer;user-select:none;white-space:nowrap}table.sortable th:after{content:\" \u{2195}\";color:#aaa}\
table.sortable th[aria-sort=ascending]:after{content:\" \u{25B2}\";color:#222}table.sortable th[aria-sort=descending]:after{content:\" \u{25BC}\";color:#222}\
.filters{display:flex;flex-wrap:wrap;gap:.6em;align-items:center;margin:.5em 0;padding:.5em;background:#f5f5f5;border:1px solid #ddd}\
.filters input[type=search]{width:18em}.filters input[type=number]{width:5em}#f-shown{color:#555;margin-left:auto}\
td.cell{max-width:22em;word-break:break-word}.k-wrong{color:#b00020}.k-error,.k-parse_failure{color:#8a4b00}.k-correct{color:#176f2c}";

/// Sorting and filtering (inline, so the report stays one offline file).
pub(super) const JS: &str = include_str!("report.js");

fn value_label(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "(none)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn compact_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Score histogram as inline SVG: ten bins over [0, 1] (scores outside are
/// clamped into the end bins).
pub fn histogram_svg(scores: &[f64]) -> String {
    let bins = 10usize;
    let mut counts = vec![0usize; bins];
    for s in scores {
        let b = ((s.clamp(0.0, 1.0) * bins as f64).floor() as usize).min(bins - 1);
        counts[b] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let (w, h, pad) = (520.0, 180.0, 30.0);
    let bw = (w - 2.0 * pad) / bins as f64;
    let mut svg = format!(
        "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" role=\"img\" aria-label=\"score histogram\">",
        h + 20.0
    );
    for (i, c) in counts.iter().enumerate() {
        let bh = (h - 2.0 * pad) * (*c as f64) / max as f64;
        let x = pad + i as f64 * bw;
        let y = h - pad - bh;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#4a78c2\"><title>[{:.1}, {:.1}{}: {c}</title></rect>",
            bw - 2.0,
            i as f64 / bins as f64,
            (i + 1) as f64 / bins as f64,
            if i + 1 == bins { "]" } else { ")" }
        );
        if *c > 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{c}</text>",
                x + bw / 2.0,
                y - 3.0
            );
        }
    }
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#333\"/>",
        h - pad,
        w - pad
    );
    for i in 0..=bins {
        if i % 2 == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{:.1}</text>",
                pad + i as f64 * bw,
                h - pad + 14.0,
                i as f64 / bins as f64
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">score</text></svg>",
        w / 2.0,
        h + 12.0
    );
    svg
}

/// Per-label counts and mean score, then the confusion matrix
/// (rows: expected, columns: predicted, `(none)` for failed runs).
fn label_section(report: &EvalReport, field: &LabelField, h: &mut String) {
    let mut labels: Vec<String> = field.values.clone();
    let mut per: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    let mut confusion: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut any = false;
    for r in &report.results {
        let Some(exp) = r.expected.get(&field.name) else {
            continue;
        };
        any = true;
        let e = value_label(Some(exp));
        let p = value_label(r.outputs.as_ref().and_then(|o| o.get(&field.name)));
        for l in [&e, &p] {
            if !labels.contains(l) {
                labels.push(l.clone());
            }
        }
        let entry = per.entry(e.clone()).or_default();
        entry.0 += 1;
        entry.1 += r.score;
        *confusion.entry((e, p)).or_default() += 1;
    }
    if !any {
        return;
    }
    let _ = write!(
        h,
        "<h2>Output <code>{}</code>: per label</h2><table><tr><th>expected label</th><th>examples</th><th>mean score</th></tr>",
        esc(&field.name)
    );
    for l in &labels {
        if let Some((n, sum)) = per.get(l) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=n>{n}</td><td class=n>{:.3}</td></tr>",
                esc(l),
                sum / *n as f64
            );
        }
    }
    h.push_str("</table><h3>Confusion matrix (rows: expected, columns: predicted)</h3><table><tr><th></th>");
    let predicted: Vec<&String> = labels
        .iter()
        .filter(|p| confusion.keys().any(|(_, q)| q == *p))
        .collect();
    for p in &predicted {
        let _ = write!(h, "<th>{}</th>", esc(p));
    }
    h.push_str("</tr>");
    for e in labels.iter().filter(|e| per.contains_key(*e)) {
        let _ = write!(h, "<tr><th>{}</th>", esc(e));
        for p in &predicted {
            let c = confusion
                .get(&(e.clone(), (*p).clone()))
                .copied()
                .unwrap_or(0);
            let style = if e == *p && c > 0 {
                " style=\"background:#e3f3e6\""
            } else if c > 0 {
                " style=\"background:#fbe9eb\""
            } else {
                ""
            };
            let _ = write!(h, "<td class=n{style}>{c}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn example_details(r: &ExampleResult, h: &mut String) {
    let _ = write!(
        h,
        "<details><summary>row {} — score {:.3} — expected <b>{}</b>, got <b>{}</b></summary>",
        r.row,
        r.score,
        esc(&diff::compact(&r.expected)),
        if r.error.is_some() {
            format!(
                "<span class=fail>{}</span>",
                esc(&diff::got(r.outputs.as_ref(), r.error.as_deref()))
            )
        } else {
            esc(&diff::got(r.outputs.as_ref(), None))
        }
    );
    let _ = write!(
        h,
        "<p><b>inputs</b></p><pre>{}</pre><p><b>expected</b></p><pre>{}</pre><p><b>outputs</b></p><pre>{}</pre>",
        esc(&serde_json::to_string_pretty(&r.inputs).unwrap_or_default()),
        esc(&serde_json::to_string_pretty(&r.expected).unwrap_or_default()),
        esc(&r
            .outputs
            .as_ref()
            .map(|o| serde_json::to_string_pretty(o).unwrap_or_default())
            .unwrap_or_else(|| "(none)".into()))
    );
    if let Some(f) = &r.feedback {
        let _ = write!(h, "<p><b>feedback</b></p><pre>{}</pre>", esc(f));
    }
    match &r.trace {
        Some(t) => {
            for (i, step) in t.steps.iter().enumerate() {
                let Some(lm) = &step.lm else {
                    if let Some(tool) = &step.tool {
                        let _ = write!(
                            h,
                            "<p><b>step {} — tool {}</b></p><pre>{}\n→ {}</pre>",
                            i + 1,
                            esc(&tool.tool),
                            esc(&compact_json(&tool.args)),
                            esc(&tool.observation)
                        );
                    }
                    continue;
                };
                let _ = write!(
                    h,
                    "<p><b>step {} — {} ({})</b></p>",
                    i + 1,
                    esc(step.predictor.as_deref().unwrap_or(&step.node)),
                    esc(&lm.model)
                );
                for m in &lm.messages {
                    let role = serde_json::to_value(m.role)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    let _ = write!(
                        h,
                        "<div class=role>{}</div><pre>{}</pre>",
                        esc(&role),
                        esc(&m.content)
                    );
                }
                let _ = write!(
                    h,
                    "<div class=role>reply{}</div><pre>{}</pre>",
                    if lm.cache_hit { " (cached)" } else { "" },
                    esc(lm.reply.as_deref().unwrap_or("(no reply)"))
                );
                if let Some(e) = &step.error {
                    let _ = write!(h, "<p class=fail>{}</p>", esc(e));
                }
            }
        }
        None => {
            if let Some(raw) = &r.raw_reply {
                let _ = write!(h, "<p><b>raw reply</b></p><pre>{}</pre>", esc(raw));
            }
        }
    }
    h.push_str("</details>");
}

/// Render the report as one HTML document.
pub fn render(report: &EvalReport, gates: Option<&GateOutcome>) -> String {
    let s = &report.summary;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>lmc eval: {}</title><style>{CSS}</style></head><body>",
        esc(&report.program)
    );
    if !report.status.complete {
        let _ = write!(
            h,
            "<p class=incomplete style=\"background:#fff3cd;border:1px solid #e0a800;padding:.5em\"><b>Incomplete run</b>: {}; the figures cover the finished examples only.</p>",
            esc(&report.status.describe())
        );
    }
    let _ = write!(
        h,
        "<h1>lmc eval: {}</h1><table>\
<tr><th>score</th><td><b>{:.4}</b> (95% CI {:.4} – {:.4})</td></tr>\
<tr><th>metric</th><td>{}</td></tr><tr><th>model</th><td>{}</td></tr>\
<tr><th>examples</th><td>{} (errors {}, parse failures {}, bad rows skipped {})</td></tr>\
<tr><th>LM calls</th><td>{} (cache hits {})</td></tr>\
<tr><th>tokens</th><td>{} prompt + {} completion</td></tr><tr><th>cost</th><td>${:.4}</td></tr>\
<tr><th>wall time</th><td>{:.1} s ({:.2} examples/s)</td></tr>\
<tr><th>dataset</th><td>{} (sha256 {})</td></tr><tr><th>program</th><td>sha256 {}</td></tr></table>",
        esc(&report.program),
        s.mean,
        s.ci95_low,
        s.ci95_high,
        esc(&report.metric),
        esc(&report.model),
        s.n,
        s.errors,
        s.parse_failures,
        report.dataset.bad_rows,
        s.lm_calls,
        s.cache_hits,
        s.prompt_tokens,
        s.completion_tokens,
        s.cost,
        s.wall_s,
        s.examples_per_s,
        esc(&report.dataset.label()),
        esc(&report.dataset.hash),
        esc(&report.program_hash)
    );
    if !report.lms.is_empty() {
        // Usage per named LM; the table above keeps the totals.
        h.push_str("<h2>LMs</h2><table><tr><th>LM</th><th>model</th><th>calls</th><th>cache hits</th><th>prompt tokens</th><th>completion tokens</th><th>cost</th></tr>");
        for u in &report.lms {
            let l = &u.usage;
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>${:.4}</td></tr>",
                esc(&u.name),
                esc(&u.model),
                l.calls,
                l.cache_hits,
                l.prompt_tokens,
                l.completion_tokens,
                l.cost
            );
        }
        h.push_str("</table>");
    }
    if let Some(g) = gates {
        h.push_str("<h2>Gates</h2><ul>");
        for c in &g.checks {
            let (cls, mark) = if c.passed {
                ("pass", "passed")
            } else {
                ("fail", "FAILED")
            };
            let _ = write!(
                h,
                "<li class={cls}><b>{} {mark}</b>: {}</li>",
                esc(&c.name),
                esc(&c.detail)
            );
        }
        h.push_str("</ul>");
        if let Some(c) = &g.comparison {
            let _ = write!(
                h,
                "<p>Against the baseline: <b>{}</b> on {} paired examples; {}.</p>",
                esc(&describe_change(c.baseline_mean, c.current_mean)),
                c.n,
                esc(&describe_test(c))
            );
        }
        if !g.regressed.is_empty() {
            let _ = write!(
                h,
                "<h2>Regressed against the baseline ({})</h2>",
                g.regressed.len()
            );
            changes_table(&g.regressed, "baseline got", "now got", &mut h);
        }
    }
    let scores: Vec<f64> = report.results.iter().map(|r| r.score).collect();
    h.push_str("<h2>Score (95% interval)</h2>");
    h.push_str(&super::plots::scores(
        &[super::plots::ScoreRow {
            name: &report.model,
            mean: s.mean,
            low: s.ci95_low,
            high: s.ci95_high,
        }],
        None,
    ));
    h.push_str("<h2>Score distribution</h2>");
    h.push_str(&histogram_svg(&scores));
    h.push_str(
        "<h2>Latency per example (line: min–max, box: p25–p75, bar: median, diamond: p95)</h2>",
    );
    let latencies: Vec<f64> = report.results.iter().map(|r| r.latency_s).collect();
    h.push_str(&super::plots::latency(&[&report.model], &[latencies]));
    for f in &report.label_fields {
        label_section(report, f, &mut h);
    }
    let worst = worst(report, WORST);
    if !worst.is_empty() {
        let _ = write!(h, "<h2>Worst examples ({} shown)</h2>", worst.len());
        for r in worst {
            example_details(r, &mut h);
        }
    }
    examples_table(report, &mut h);
    let _ = writeln!(
        h,
        "<p style=\"color:#888\">lmc {} · {}</p><script>{JS}</script></body></html>",
        esc(&report.lmc_version),
        esc(&report.format)
    );
    h
}

/// An example's outcome, for the kind filter: `correct`, `wrong` (scored
/// under 1), `parse_failure` or `error` (the run failed).
fn kind(r: &ExampleResult) -> &'static str {
    match (&r.error, r.parse_failure) {
        (Some(_), true) => "parse_failure",
        (Some(_), false) => "error",
        (None, _) if r.score >= 1.0 => "correct",
        (None, _) => "wrong",
    }
}

/// The filter bar and the sortable table of all examples.
fn examples_table(report: &EvalReport, h: &mut String) {
    // The label filter uses the first enum/bool output: the one a
    // classification report is about.
    let label_field = report.label_fields.first().map(|f| f.name.as_str());
    let label_of = |r: &ExampleResult| {
        label_field
            .and_then(|f| r.expected.get(f))
            .map(|v| value_label(Some(v)))
    };
    let mut labels: Vec<String> = report.results.iter().filter_map(label_of).collect();
    labels.sort();
    labels.dedup();
    h.push_str("<h2>All examples</h2><div class=filters role=search>");
    h.push_str(
        "<label>search <input id=f-q type=search placeholder=\"text in any column\"></label>",
    );
    h.push_str("<label>outcome <select id=f-kind><option value=\"\">all</option><option value=correct>correct</option><option value=wrong>wrong</option><option value=parse_failure>parse failure</option><option value=error>error</option></select></label>");
    if let (Some(f), false) = (label_field, labels.is_empty()) {
        let _ = write!(
            h,
            "<label>expected {} <select id=f-label><option value=\"\">all</option>",
            esc(f)
        );
        for l in &labels {
            let _ = write!(h, "<option value=\"{0}\">{0}</option>", esc(l));
        }
        h.push_str("</select></label>");
    }
    h.push_str("<label>score from <input id=f-min type=number step=0.05 min=0 max=1></label><label>to <input id=f-max type=number step=0.05 min=0 max=1></label><button id=f-reset type=button>reset</button><span id=f-shown></span></div>");
    h.push_str("<table id=examples class=sortable><thead><tr>\
<th data-key=row data-type=n>row</th><th data-key=score data-type=n>score</th><th data-key=kind>outcome</th>\
<th data-key=inputs>inputs</th><th data-key=expected>expected</th><th data-key=got>got</th>\
<th data-key=latency data-type=n>latency s</th></tr></thead><tbody>");
    for r in report.results.iter().take(TABLE_ROWS) {
        let k = kind(r);
        let label = label_of(r).unwrap_or_default();
        let _ = write!(
            h,
            "<tr data-row={row} data-score=\"{score}\" data-kind={k} data-label=\"{label}\">\
<td class=n>{row}</td><td class=\"n {cls}\" data-v=\"{score}\">{score:.3}</td><td class=k-{k}>{kt}</td>\
<td class=cell>{inputs}</td><td class=cell>{expected}</td><td class=cell>{got}{raw}</td><td class=n data-v=\"{lat}\">{lat:.2}</td></tr>",
            row = r.row,
            score = r.score,
            cls = if r.score >= 1.0 { "pass" } else { "fail" },
            kt = k.replace('_', " "),
            label = esc(&label),
            inputs = esc(&diff::compact(&r.inputs)),
            expected = esc(&diff::compact(&r.expected)),
            got = esc(&diff::got(r.outputs.as_ref(), r.error.as_deref())),
            // The reply that failed to parse, as the model wrote it.
            raw = r
                .raw_reply
                .as_ref()
                .filter(|_| r.failed())
                .map(|raw| format!("<details><summary>raw reply</summary><pre>{}</pre></details>", esc(raw)))
                .unwrap_or_default(),
            lat = r.latency_s,
        );
    }
    h.push_str("</tbody></table>");
    if report.results.len() > TABLE_ROWS {
        let _ = write!(
            h,
            "<p>{} more examples: see the JSONL results (<code>--results</code>).</p>",
            report.results.len() - TABLE_ROWS
        );
    }
}

/// A sortable table of examples whose score changed between two runs.
fn changes_table(changes: &[Change], before: &str, after: &str, h: &mut String) {
    let _ = write!(
        h,
        "<table class=sortable><thead><tr><th data-type=n>row</th><th data-type=n>before</th><th data-type=n>after</th>\
<th>inputs</th><th>expected</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        esc(before),
        esc(after)
    );
    for c in changes {
        let _ = write!(
            h,
            "<tr data-row={row}><td class=n>{row}</td><td class=n>{b:.3}</td><td class=\"n {cls}\">{a:.3}</td>\
<td class=cell>{}</td><td class=cell>{}</td><td class=cell>{}</td><td class=cell>{}</td></tr>",
            esc(&diff::compact(&c.inputs)),
            esc(&diff::compact(&c.expected)),
            esc(&c.before_got),
            esc(&c.after_got),
            row = c.row,
            b = c.before,
            a = c.after,
            cls = if c.after > c.before { "pass" } else { "fail" },
        );
    }
    h.push_str("</tbody></table>");
}

/// `lmc diff --html`: the change of mean, the paired test, then the
/// regressed and improved examples, in one self-contained page.
pub fn render_diff(d: &Diff, before: &str, after: &str) -> String {
    let c = &d.comparison;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>lmc diff: {0} → {1}</title><style>{CSS}</style></head><body>\
<h1>lmc diff</h1><table><tr><th>before</th><td>{0}</td></tr><tr><th>after</th><td>{1}</td></tr>\
<tr><th>change</th><td><b>{2}</b> on {3} paired examples{4}</td></tr><tr><th>paired test</th><td>{5}</td></tr>\
<tr><th>examples</th><td>{6} regressed, {7} improved, {8} unchanged</td></tr></table>",
        esc(before),
        esc(after),
        esc(&describe_change(c.baseline_mean, c.current_mean)),
        d.paired,
        esc(&super::markdown::unpaired_note(d)),
        esc(&describe_test(c)),
        d.regressed.len(),
        d.improved.len(),
        d.paired - d.regressed.len() - d.improved.len()
    );
    for (title, list) in [("Regressed", &d.regressed), ("Improved", &d.improved)] {
        let _ = write!(h, "<h2>{title} ({})</h2>", list.len());
        if list.is_empty() {
            h.push_str("<p>None.</p>");
        } else {
            changes_table(list, "before got", "after got", &mut h);
        }
    }
    let _ = writeln!(h, "<script>{JS}</script></body></html>");
    h
}

pub fn write(
    report: &EvalReport,
    gates: Option<&GateOutcome>,
    mut out: impl Write,
) -> std::io::Result<()> {
    out.write_all(render(report, gates).as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{DatasetInfo, Summary};
    use serde_json::{json, Map};

    fn result(index: usize, expected: &str, got: Option<&str>) -> ExampleResult {
        let mut inputs = Map::new();
        inputs.insert("sentence".into(), json!(format!("<b>row {index}</b>")));
        let mut exp = Map::new();
        exp.insert("sentiment".into(), json!(expected));
        let outputs = got.map(|g| {
            let mut m = Map::new();
            m.insert("sentiment".into(), json!(g));
            m
        });
        ExampleResult {
            index,
            row: index + 1,
            inputs,
            expected: exp,
            score: if got == Some(expected) { 1.0 } else { 0.0 },
            error: got.is_none().then(|| "could not parse".to_string()),
            parse_failure: got.is_none(),
            raw_reply: got
                .is_none()
                .then(|| "<script>alert(1)</script>".to_string()),
            outputs,
            feedback: None,
            latency_s: 0.1,
            usage: Default::default(),
            cost: 0.0,
            cache_hit: false,
            lm_calls: 1,
            cache_hits: 0,
            trace: None,
        }
    }

    #[test]
    fn confusion_matrix_counts_and_everything_is_escaped() {
        let results = vec![
            result(0, "positive", Some("positive")),
            result(1, "positive", Some("negative")),
            result(2, "negative", Some("negative")),
            result(3, "negative", None),
        ];
        let report = EvalReport {
            format: crate::eval::REPORT_FORMAT.into(),
            program: "p<&>".into(),
            program_hash: String::new(),
            overlay_hash: String::new(),
            metric: "exact_match(sentiment)".into(),
            model: "m".into(),
            dataset: DatasetInfo::default(),
            label_fields: vec![LabelField {
                name: "sentiment".into(),
                values: vec!["positive".into(), "negative".into()],
            }],
            summary: Summary::from_results(&results, 1.0),
            status: Default::default(),
            results,
            gates: None,
            lms: Vec::new(),
            lmc_version: "0".into(),
        };
        let h = render(&report, None);
        assert!(h.contains("<title>lmc eval: p&lt;&amp;&gt;</title>"));
        assert!(!h.contains("<script>alert"), "raw reply must be escaped");
        assert!(!h.contains("src="), "no external assets");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!h.contains("<b>row"), "inputs must be escaped");
        // Row `positive`: 1 right, 1 predicted negative; row `negative`:
        // 1 right, 1 failed run in the `(none)` column.
        let matrix = &h[h.find("Confusion matrix").unwrap()..];
        let cells: Vec<&str> = matrix
            .split("<td class=n")
            .skip(1)
            .map(|c| &c[c.find('>').unwrap() + 1..c.find("</td>").unwrap()])
            .take(6)
            .collect();
        assert_eq!(cells, ["1", "1", "0", "0", "1", "1"], "{matrix}");
        assert_eq!(histogram_svg(&[0.0, 0.0, 1.0]).matches("<rect").count(), 10);
    }
}
