//! `lmc compare --html`: one self-contained page (inline CSS, SVG and the
//! same small script as the eval report, no network) with the cell table,
//! the gate verdict, four plots (score per cell with intervals, cost
//! against score, the per-example agreement matrix with flips outlined,
//! latency per cell) and a sortable, filterable table of every example
//! across cells with the raw replies of failures. Text is escaped; the
//! script only reads the page.

use std::fmt::Write as _;

use super::compare::{fmt_p, CompareExample, CompareReport};
use super::diff;
use super::html::{CSS, JS};
use super::junit::xml_escape as esc;
use super::plots::{self, CostPoint, ScoreRow};

/// Rows in the per-example table (the JSON report holds all of them).
const TABLE_ROWS: usize = 2000;

pub fn render(r: &CompareReport, gate: bool) -> String {
    let mut h = String::new();
    let dataset = r.dataset.label();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>lmc compare: {}</title><style>{CSS}</style></head><body>\
         <h1>lmc compare: {} cells on {} examples of {}</h1>\
         <p>Metric {}. Reference: <b>{}</b>. Paired tests (McNemar's exact for 0/1 scores, paired t otherwise) at alpha = {}. Dataset sha256 {}.</p>",
        esc(&dataset),
        r.cells.len(),
        r.dataset.n,
        esc(&dataset),
        esc(&r.metric),
        esc(&r.cells[r.reference].name),
        r.alpha,
        esc(&r.dataset.hash)
    );
    if !r.complete {
        h.push_str("<p class=incomplete style=\"background:#fff3cd;border:1px solid #e0a800;padding:.5em\"><b>Incomplete</b>: some cells stopped early; they are compared on the examples they reached.</p>");
    }
    if gate {
        let worse = r.worse();
        if worse.is_empty() {
            h.push_str("<p class=pass id=gate><b>Gate passed</b>: no candidate is significantly worse than the reference.</p>");
        } else {
            h.push_str("<div class=fail id=gate><b>Gate FAILED</b><ul>");
            for w in worse {
                let _ = write!(h, "<li>{}</li>", esc(&w));
            }
            h.push_str("</ul></div>");
        }
    }
    cells_table(r, &mut h);

    let names: Vec<&str> = r.cells.iter().map(|c| c.name.as_str()).collect();
    h.push_str("<h2>Score per cell (95% interval; dashed: the reference)</h2>");
    let rows: Vec<ScoreRow> = r
        .cells
        .iter()
        .map(|c| ScoreRow {
            name: &c.name,
            mean: c.summary.mean,
            low: c.summary.ci95_low,
            high: c.summary.ci95_high,
        })
        .collect();
    h.push_str(&plots::scores(&rows, Some(r.reference)));

    let priced = r.cells.iter().all(|c| c.cost_per_1k.is_some());
    let (label, points): (&str, Vec<CostPoint>) = if priced {
        (
            "USD per 1,000 examples",
            r.cells
                .iter()
                .map(|c| CostPoint {
                    name: &c.name,
                    x: c.cost_per_1k.unwrap_or(0.0),
                    score: c.summary.mean,
                })
                .collect(),
        )
    } else {
        (
            "tokens per example (no prices configured)",
            r.cells
                .iter()
                .map(|c| CostPoint {
                    name: &c.name,
                    x: (c.summary.prompt_tokens + c.summary.completion_tokens) as f64
                        / c.summary.n.max(1) as f64,
                    score: c.summary.mean,
                })
                .collect(),
        )
    };
    let _ = write!(h, "<h2>Cost against score</h2>");
    h.push_str(&plots::cost_vs_score(&points, label));

    h.push_str(
        "<h2>Per-example agreement (red 0 … green 1; outlined: differs from the reference)</h2>",
    );
    let scores: Vec<Vec<Option<f64>>> = (0..r.cells.len())
        .map(|i| {
            r.examples
                .iter()
                .map(|e| e.cells[i].as_ref().map(|o| o.score))
                .collect()
        })
        .collect();
    h.push_str(&plots::agreement(&names, &scores, r.reference));

    h.push_str(
        "<h2>Latency per example (line: min–max, box: p25–p75, bar: median, diamond: p95)</h2>",
    );
    let lat: Vec<Vec<f64>> = (0..r.cells.len())
        .map(|i| {
            r.examples
                .iter()
                .filter_map(|e| e.cells[i].as_ref().map(|o| o.latency_s))
                .collect()
        })
        .collect();
    h.push_str(&plots::latency(&names, &lat));

    examples_table(r, &mut h);
    let _ = writeln!(
        h,
        "<p style=\"color:#888\">lmc {} · {}</p><script>{JS}</script></body></html>",
        esc(&r.lmc_version),
        esc(&r.format)
    );
    h
}

fn cells_table(r: &CompareReport, h: &mut String) {
    h.push_str("<h2>Cells</h2><div style=\"overflow-x:auto\"><table id=cells class=sortable><thead><tr>\
<th data-type=n>#</th><th>cell</th><th>model</th><th data-type=n>score</th><th>95% CI</th>\
<th data-type=n>Δ vs reference</th><th data-type=n>p (worse)</th><th data-type=n>p (differs)</th><th>worse / better</th>\
<th data-type=n>examples</th><th data-type=n>parse failures</th><th data-type=n>tokens</th>\
<th data-type=n>p50 s</th><th data-type=n>p95 s</th><th data-type=n>$ / 1k</th></tr></thead><tbody>");
    for (i, c) in r.cells.iter().enumerate() {
        let s = &c.summary;
        let cmp = match r.comparison(i) {
            None => "<td data-v=0>reference</td><td></td><td></td><td></td>".to_string(),
            Some(k) => format!(
                "<td class=\"n {}\" data-v=\"{d}\">{d:+.4}{}</td><td class=n data-v=\"{pw}\">{}</td><td class=n data-v=\"{pd}\">{}</td><td>{} / {}</td>",
                if k.significantly_worse { "fail" } else { "" },
                if k.significantly_worse { " worse" } else { "" },
                fmt_p(k.test.p_worse),
                fmt_p(k.test.p_two_sided),
                k.worse_rows.len(),
                k.better_rows.len(),
                d = k.test.mean_diff,
                pw = k.test.p_worse,
                pd = k.test.p_two_sided,
            ),
        };
        let _ = write!(
            h,
            "<tr data-row={n}><td class=n>{n}</td><td style=\"white-space:nowrap\"><span style=\"color:{col}\">■</span> {name}</td><td>{model}</td>\
<td class=n data-v=\"{mean}\"><b>{mean:.4}</b></td><td>{lo:.4} – {hi:.4}</td>{cmp}\
<td class=n>{ex}{inc}</td><td class=n>{pf}</td><td class=n>{tok}</td><td class=n>{p50:.3}</td><td class=n>{p95:.3}</td><td class=n>{cost}</td></tr>",
            n = i + 1,
            col = plots::color(i),
            name = esc(&c.name),
            model = esc(&c.model),
            mean = s.mean,
            lo = s.ci95_low,
            hi = s.ci95_high,
            ex = s.n,
            inc = if c.complete { "" } else { " (incomplete)" },
            pf = s.parse_failures,
            tok = s.prompt_tokens + s.completion_tokens,
            p50 = c.latency_p50_s,
            p95 = c.latency_p95_s,
            cost = c
                .cost_per_1k
                .map(|x| format!("{x:.4}"))
                .unwrap_or_else(|| "–".into()),
        );
    }
    h.push_str("</tbody></table></div>");
}

/// How one example looks across cells, for the outcome filter.
fn kind(r: &CompareReport, e: &CompareExample) -> &'static str {
    let reference = e.cells[r.reference].as_ref().map(|o| o.score);
    let scored: Vec<f64> = e.cells.iter().flatten().map(|o| o.score).collect();
    if e.cells.iter().flatten().any(|o| o.error.is_some()) {
        "failure"
    } else if scored.iter().any(|s| Some(*s) != reference) {
        "flip"
    } else if scored.iter().all(|s| *s >= 1.0) {
        "all_right"
    } else {
        "all_wrong"
    }
}

fn examples_table(r: &CompareReport, h: &mut String) {
    h.push_str("<h2>All examples</h2><div class=filters role=search>\
<label>search <input id=f-q type=search placeholder=\"text in any column\"></label>\
<label>outcome <select id=f-kind><option value=\"\">all</option><option value=flip>differs from the reference</option>\
<option value=failure>a cell failed</option><option value=all_right>right everywhere</option><option value=all_wrong>wrong everywhere</option></select></label>\
<label>reference score from <input id=f-min type=number step=0.05 min=0 max=1></label><label>to <input id=f-max type=number step=0.05 min=0 max=1></label>\
<button id=f-reset type=button>reset</button><span id=f-shown></span></div>");
    h.push_str("<table id=examples class=sortable><thead><tr><th data-key=row data-type=n>row</th><th data-key=kind>outcome</th><th data-key=inputs>inputs</th><th data-key=expected>expected</th>");
    for (i, c) in r.cells.iter().enumerate() {
        let _ = write!(
            h,
            "<th data-key=\"c{i}\" data-type=n title=\"{name}\">#{n} score</th><th data-key=\"g{i}\">#{n} got</th>",
            name = esc(&c.name),
            n = i + 1
        );
    }
    h.push_str("</tr></thead><tbody>");
    for e in r.examples.iter().take(TABLE_ROWS) {
        let k = kind(r, e);
        let rs = e.cells[r.reference]
            .as_ref()
            .map(|o| o.score)
            .unwrap_or(f64::NAN);
        let _ = write!(
            h,
            "<tr data-row={row} data-score=\"{rs}\" data-kind={k}><td class=n>{row}</td><td class=k-{k}>{kt}</td><td class=cell>{inputs}</td><td class=cell>{expected}</td>",
            row = e.row,
            kt = k.replace('_', " "),
            inputs = esc(&diff::compact(&e.inputs)),
            expected = esc(&diff::compact(&e.expected)),
        );
        for o in &e.cells {
            match o {
                None => h.push_str("<td class=n data-v=\"-1\">–</td><td>not evaluated</td>"),
                Some(o) => {
                    let got = esc(&diff::got(o.outputs.as_ref(), o.error.as_deref()));
                    let raw = o
                        .raw_reply
                        .as_ref()
                        .map(|raw| {
                            format!(
                                "<details><summary>raw reply</summary><pre>{}</pre></details>",
                                esc(raw)
                            )
                        })
                        .unwrap_or_default();
                    let _ = write!(
                        h,
                        "<td class=\"n {cls}\" data-v=\"{s}\">{s:.3}</td><td class=cell>{got}{raw}</td>",
                        cls = if o.score >= 1.0 { "pass" } else { "fail" },
                        s = o.score
                    );
                }
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    if r.examples.len() > TABLE_ROWS {
        let _ = write!(
            h,
            "<p>{} more examples: see the JSON report (<code>--json</code>).</p>",
            r.examples.len() - TABLE_ROWS
        );
    }
}
