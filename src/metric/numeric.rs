//! `numeric`: the last number in the output against the expected number,
//! within a tolerance.
//!
//! Models write numbers inside prose ("so she makes $18 a day."), and GSM8K
//! writes gold answers after `####`. Parsing takes the number after the last
//! `####` when there is one and otherwise the last number in the text,
//! accepting `$`, thousands commas and a minus sign, which is what graders of
//! GSM8K-style tasks do.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use std::sync::OnceLock;

use super::{answers, short, value_text, MetricError, Score};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NumericOptions {
    /// Relative tolerance: |pred - gold| <= rel_tol * |gold| passes.
    #[serde(default)]
    rel_tol: f64,
    /// Absolute tolerance: |pred - gold| <= abs_tol passes.
    #[serde(default = "default_abs")]
    abs_tol: f64,
}

fn default_abs() -> f64 {
    1e-6
}

#[derive(Debug, Clone)]
pub(crate) struct Numeric {
    rel_tol: f64,
    abs_tol: f64,
}

impl Numeric {
    pub fn new(o: NumericOptions) -> Result<Self, MetricError> {
        for (k, v) in [("rel_tol", o.rel_tol), ("abs_tol", o.abs_tol)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(MetricError::Spec(format!(
                    "numeric: `{k}` must be a number >= 0, got {v}"
                )));
            }
        }
        Ok(Numeric {
            rel_tol: o.rel_tol,
            abs_tol: o.abs_tol,
        })
    }

    pub fn score(&self, pred: &Value, gold: &Value) -> Score {
        let golds: Vec<f64> = answers(pred, gold)
            .into_iter()
            .filter_map(number_of)
            .collect();
        if golds.is_empty() {
            return Score::new(
                0.0,
                Some(format!(
                    "the expected value `{}` holds no number",
                    short(&value_text(gold), 120)
                )),
            );
        }
        let Some(p) = number_of(pred) else {
            return Score::new(
                0.0,
                Some(format!(
                    "no number found in the output `{}`; expected {}",
                    short(&value_text(pred), 200),
                    fmt_num(golds[0])
                )),
            );
        };
        let ok = golds
            .iter()
            .any(|g| (p - g).abs() <= self.abs_tol.max(self.rel_tol * g.abs()));
        Score::pass_fail(ok, || {
            format!("expected {}, got {}", fmt_num(golds[0]), fmt_num(p))
        })
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The number a value stands for: JSON numbers as they are, text parsed.
pub(crate) fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(_) | Value::Null => None,
        other => parse_number(&value_text(other)),
    }
}

/// The number after the last `####`, else the last number in the text.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    static NUM: OnceLock<Regex> = OnceLock::new();
    let re = NUM.get_or_init(|| {
        Regex::new(
            r"(-|−)?\s?\$?\s?(-|−)?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE]([-+]?\d+))?",
        )
        .expect("static regex")
    });
    let scope = match text.rfind("####") {
        Some(i) => &text[i + 4..],
        None => text,
    };
    let m = re.captures_iter(scope).last()?;
    let whole = m.get(0)?;
    let digits = m.get(3)?.as_str().replace(',', "");
    let mut x: f64 = digits.parse().ok()?;
    if let Some(e) = m.get(4) {
        x *= 10f64.powi(e.as_str().parse::<i32>().ok()?);
    }
    // A minus right after a letter or digit is a hyphen ("3-5", "COVID-19").
    let before = scope[..whole.start()].chars().next_back();
    let hyphen = before.is_some_and(|c| c.is_alphanumeric());
    let negative = (m.get(1).is_some() && !hyphen) || m.get(2).is_some();
    Some(if negative { -x } else { x })
}
