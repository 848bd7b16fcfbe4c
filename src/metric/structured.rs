//! `json_match`: structured outputs compared key by key.
//!
//! Partial credit matters for JSON outputs (an extraction that gets 4 of 5
//! fields right is better than one that gets none), so the score is the
//! fraction of expected keys whose values are equal, with the mismatches
//! named in the feedback.

use serde::Deserialize;
use serde_json::Value;

use super::{short, Score};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JsonMatch {
    /// Count keys the output has but the expected value lacks as mismatches.
    #[serde(default)]
    pub strict: bool,
}

/// JSON text is parsed; other values are taken as they are.
fn as_json(v: &Value) -> Value {
    if let Value::String(s) = v {
        if let Ok(parsed) = serde_json::from_str::<Value>(s.trim()) {
            return parsed;
        }
    }
    v.clone()
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

impl JsonMatch {
    pub fn score(&self, pred: &Value, gold: &Value) -> Score {
        let p = as_json(pred);
        let g = as_json(gold);
        let (Value::Object(po), Value::Object(go)) = (&p, &g) else {
            return Score::pass_fail(json_eq(&p, &g), || {
                format!(
                    "expected `{}`, got `{}`",
                    short(&g.to_string(), 200),
                    short(&p.to_string(), 200)
                )
            });
        };
        let mut keys: Vec<&String> = go.keys().collect();
        if self.strict {
            keys.extend(po.keys().filter(|k| !go.contains_key(*k)));
        }
        if keys.is_empty() {
            return Score::new(1.0, None);
        }
        let mut wrong = Vec::new();
        for k in &keys {
            match (po.get(*k), go.get(*k)) {
                (Some(a), Some(b)) if json_eq(a, b) => {}
                (None, Some(b)) => wrong.push(format!(
                    "`{k}` missing (expected {})",
                    short(&b.to_string(), 80)
                )),
                (Some(a), None) => wrong.push(format!(
                    "`{k}` not expected (got {})",
                    short(&a.to_string(), 80)
                )),
                (Some(a), Some(b)) => wrong.push(format!(
                    "`{k}`: expected {}, got {}",
                    short(&b.to_string(), 80),
                    short(&a.to_string(), 80)
                )),
                (None, None) => {}
            }
        }
        let score = (keys.len() - wrong.len()) as f64 / keys.len() as f64;
        let feedback = (!wrong.is_empty()).then(|| {
            format!(
                "{} of {} keys match; {}",
                keys.len() - wrong.len(),
                keys.len(),
                wrong.join("; ")
            )
        });
        Score::new(score, feedback)
    }
}
