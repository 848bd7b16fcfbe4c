//! Inline SVG plots for the HTML reports of `lmc eval` and `lmc compare`:
//! score per cell with its interval, cost (or tokens) against score, the
//! per-example agreement matrix, and the latency distribution.
//!
//! Plots are drawn here as plain SVG strings rather than with a charting
//! library or a script so a report stays one offline file that renders the
//! same with scripting off. Every plot is an `<svg class="plot">` (the
//! headless-browser check counts them) with a `<title>` on each mark, so
//! hovering tells the exact number. All text passes through `esc`.

use std::fmt::Write as _;

use super::compare::percentile;
use super::junit::xml_escape as esc;

const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 220.0;
const ROW_H: f64 = 26.0;
const COLORS: [&str; 8] = [
    "#4a78c2", "#d9822b", "#3a9a5b", "#b8453a", "#7d5ab5", "#8c6d3f", "#c45c9a", "#5f6b76",
];

/// One color per cell, stable across plots.
pub fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn open(h: f64, label: &str) -> String {
    format!(
        "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{h:.0}\" viewBox=\"0 0 {WIDTH} {h:.0}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    )
}

/// Ticks along a [lo, hi] axis at x positions, with labels under `y`.
fn axis(svg: &mut String, lo: f64, hi: f64, x0: f64, x1: f64, y: f64, fmt: &dyn Fn(f64) -> String) {
    let _ = write!(
        svg,
        "<line x1=\"{x0:.1}\" y1=\"{y:.1}\" x2=\"{x1:.1}\" y2=\"{y:.1}\" stroke=\"#999\"/>"
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let x = x0 + (x1 - x0) * k as f64 / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
            10.0,
            y,
            y + 14.0,
            esc(&fmt(v))
        );
    }
}

/// A score per cell as a dot with its 95% interval as a bar; the
/// reference cell is drawn with a dashed vertical line through its mean.
pub struct ScoreRow<'a> {
    pub name: &'a str,
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

pub fn scores(rows: &[ScoreRow], reference: Option<usize>) -> String {
    let h = 30.0 + rows.len() as f64 * ROW_H + 24.0;
    let (x0, x1) = (LABEL_W, WIDTH - 20.0);
    let lo = rows.iter().map(|r| r.low).fold(1.0f64, f64::min).min(0.0);
    let hi = rows.iter().map(|r| r.high).fold(0.0f64, f64::max).max(1.0);
    let x = |v: f64| x0 + (x1 - x0) * (v - lo) / (hi - lo).max(1e-9);
    let mut svg = open(h, "score per cell with 95% intervals");
    let axis_y = 20.0 + rows.len() as f64 * ROW_H;
    axis(&mut svg, lo, hi, x0, x1, axis_y, &|v| format!("{v:.2}"));
    if let Some(r) = reference.and_then(|i| rows.get(i)) {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"10\" x2=\"{0:.1}\" y2=\"{axis_y:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>",
            x(r.mean)
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = 20.0 + i as f64 * ROW_H + ROW_H / 2.0 - 6.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>\
             <g class=\"mark\"><title>{}: {:.4} (95% CI {:.4} – {:.4})</title>\
             <line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{c}\" stroke-width=\"4\" stroke-linecap=\"round\" opacity=\".45\"/>\
             <circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"6\" fill=\"{c}\"/></g>",
            x0 - 8.0,
            y + 4.0,
            esc(r.name),
            esc(r.name),
            r.mean,
            r.low,
            r.high,
            x(r.low),
            x(r.high),
            x(r.mean),
            c = color(i)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One point per cell: x = cost per 1,000 examples (or tokens per
/// example when no prices are known, said on the axis), y = score.
pub struct CostPoint<'a> {
    pub name: &'a str,
    pub x: f64,
    pub score: f64,
}

pub fn cost_vs_score(points: &[CostPoint], x_label: &str) -> String {
    let h = 300.0;
    let (x0, x1, y0, y1) = (70.0, WIDTH - 240.0, 20.0, h - 50.0);
    let xmax = points.iter().map(|p| p.x).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let ymin = points
        .iter()
        .map(|p| p.score)
        .fold(1.0f64, f64::min)
        .min(0.0);
    let ymax = points
        .iter()
        .map(|p| p.score)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let px = |v: f64| x0 + (x1 - x0) * v / xmax;
    let py = |v: f64| y1 - (y1 - y0) * (v - ymin) / (ymax - ymin).max(1e-9);
    let mut svg = open(h, "cost against score");
    axis(&mut svg, 0.0, xmax, x0, x1, y1, &|v| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.3}")
        }
    });
    let _ = write!(
        svg,
        "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"#999\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" font-size=\"12\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">score</text>",
        (x0 + x1) / 2.0,
        h - 10.0,
        esc(x_label),
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
    for k in 0..=4 {
        let v = ymin + (ymax - ymin) * k as f64 / 4.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#555\">{v:.2}</text>",
            x0 - 6.0,
            py(v) + 4.0
        );
    }
    // Cells often land on the same spot (an artifact and its program under
    // one LM): label points `#n`, stacking labels of coincident points.
    let mut placed: Vec<(f64, f64)> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let (cx, cy) = (px(p.x), py(p.score));
        let stacked = placed
            .iter()
            .filter(|(x, y)| (x - cx).abs() < 30.0 && (y - cy).abs() < 8.0)
            .count();
        placed.push((cx, cy));
        let _ = write!(
            svg,
            "<g class=\"mark\"><title>#{n} {name}: score {:.4}, {} {:.4}</title><circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"7\" fill=\"{c}\" opacity=\".8\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"{c}\">#{n}</text></g>",
            p.score,
            esc(x_label),
            p.x,
            cx + 10.0 + 24.0 * stacked as f64,
            cy + 4.0,
            n = i + 1,
            name = esc(p.name),
            c = color(i)
        );
    }
    // The legend: number, color and name of every cell.
    for (i, p) in points.iter().enumerate() {
        let y = y0 + 16.0 * i as f64;
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{c}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">#{} {}</text>",
            x1 + 20.0,
            y,
            x1 + 30.0,
            y + 4.0,
            i + 1,
            esc(p.name),
            c = color(i)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The agreement matrix: a row per cell, a column per example, each square
/// shaded by score (red 0 … green 1, grey: not evaluated). A square whose
/// score differs from the reference's is outlined in black: the flips.
pub fn agreement(names: &[&str], scores: &[Vec<Option<f64>>], reference: usize) -> String {
    let n = scores.first().map(Vec::len).unwrap_or(0).max(1);
    let cols = n.min(100);
    let lines = n.div_ceil(cols);
    let sq = ((WIDTH - LABEL_W - 20.0) / cols as f64).clamp(2.0, 14.0);
    let band = names.len() as f64 * sq + 8.0;
    let h = 10.0 + lines as f64 * band + 10.0;
    let mut svg = open(h, "per-example agreement and flips against the reference");
    for line in 0..lines {
        for (ci, name) in names.iter().enumerate() {
            let y = 10.0 + line as f64 * band + ci as f64 * sq;
            if line == 0 || lines <= 3 {
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{:.0}\" text-anchor=\"end\">{}</text>",
                    LABEL_W - 8.0,
                    y + sq - 1.0,
                    sq.clamp(8.0, 12.0),
                    esc(name)
                );
            }
            for k in 0..cols {
                let e = line * cols + k;
                let Some(s) = scores[ci].get(e) else { break };
                let r = scores[reference].get(e).copied().flatten();
                let fill = match s {
                    None => "#ccc".to_string(),
                    Some(v) => shade(*v),
                };
                let flip = ci != reference && s.is_some() && r.is_some() && *s != r;
                let stroke = if flip {
                    " stroke=\"#000\" stroke-width=\"1.5\""
                } else {
                    ""
                };
                let _ = write!(
                    svg,
                    "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\"{stroke}{}><title>example {}: {} {}</title></rect>",
                    LABEL_W + k as f64 * sq,
                    sq - 1.0,
                    sq - 1.0,
                    if flip { " class=\"flip\"" } else { "" },
                    e + 1,
                    esc(name),
                    s.map(|v| format!("{v:.3}")).unwrap_or_else(|| "not evaluated".into())
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Red (0) through amber to green (1).
fn shade(v: f64) -> String {
    let v = v.clamp(0.0, 1.0);
    let (r, g) = if v < 0.5 {
        (200.0, 60.0 + 300.0 * v)
    } else {
        (200.0 - 300.0 * (v - 0.5), 210.0)
    };
    format!("rgb({:.0},{:.0},80)", r, g)
}

/// Latency per cell: a line from the fastest to the slowest example, a box
/// from p25 to p75, a tick at the median and a diamond at p95.
pub fn latency(names: &[&str], latencies: &[Vec<f64>]) -> String {
    let h = 30.0 + names.len() as f64 * ROW_H + 24.0;
    let (x0, x1) = (LABEL_W, WIDTH - 20.0);
    let hi = latencies
        .iter()
        .flatten()
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let x = |v: f64| x0 + (x1 - x0) * v / hi;
    let mut svg = open(h, "latency per example (seconds)");
    let axis_y = 20.0 + names.len() as f64 * ROW_H;
    axis(&mut svg, 0.0, hi, x0, x1, axis_y, &|v| format!("{v:.3} s"));
    for (i, (name, l)) in names.iter().zip(latencies).enumerate() {
        let y = 20.0 + i as f64 * ROW_H + ROW_H / 2.0 - 6.0;
        let q = |p: f64| percentile(l, p);
        let (min, p25, p50, p75, p95, max) = (q(0.0), q(0.25), q(0.5), q(0.75), q(0.95), q(1.0));
        let c = color(i);
        let _ = write!(
            svg,
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"12\" text-anchor=\"end\">{name}</text>\
             <g class=\"mark\"><title>{name}: p50 {p50:.3} s, p95 {p95:.3} s, max {max:.3} s over {n} examples</title>\
             <line x1=\"{xmin:.1}\" y1=\"{y:.1}\" x2=\"{xmax:.1}\" y2=\"{y:.1}\" stroke=\"{c}\"/>\
             <rect x=\"{xb:.1}\" y=\"{yb:.1}\" width=\"{wb:.1}\" height=\"12\" fill=\"{c}\" opacity=\".35\"/>\
             <line x1=\"{xm:.1}\" y1=\"{yt:.1}\" x2=\"{xm:.1}\" y2=\"{ybt:.1}\" stroke=\"{c}\" stroke-width=\"3\"/>\
             <path d=\"M{xp:.1} {yb:.1} l5 6 l-5 6 l-5 -6 z\" fill=\"{c}\"/></g>",
            lx = x0 - 8.0,
            ly = y + 4.0,
            name = esc(name),
            n = l.len(),
            xmin = x(min),
            xmax = x(max),
            xb = x(p25),
            yb = y - 6.0,
            wb = (x(p75) - x(p25)).max(1.0),
            xm = x(p50),
            yt = y - 8.0,
            ybt = y + 8.0,
            xp = x(p95),
        );
    }
    svg.push_str("</svg>");
    svg
}
