//! Text metrics: exact match, SQuAD token F1, containment and regex.
//!
//! Normalisation follows DSPy's `normalize_text` (itself SQuAD's): Unicode
//! NFD, lowercase, drop ASCII punctuation, drop the articles a/an/the,
//! collapse whitespace. So `"The Eiffel Tower."` equals `"eiffel tower"`.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;
use unicode_normalization::UnicodeNormalization;

use super::{answers, short, value_text, MetricError, Score};

/// DSPy's `normalize_text`.
pub(crate) fn normalize(s: &str) -> String {
    static ARTICLES: OnceLock<Regex> = OnceLock::new();
    let articles = ARTICLES.get_or_init(|| Regex::new(r"\b(a|an|the)\b").expect("static regex"));
    let lowered: String = s.nfd().collect::<String>().to_lowercase();
    let no_punct: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let no_articles = articles.replace_all(&no_punct, " ");
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn prepare(s: &str, normalize_text: bool) -> String {
    if normalize_text {
        normalize(s)
    } else {
        s.to_string()
    }
}

/// Two values equal as text; lists compare item by item.
fn text_eq(pred: &Value, gold: &Value, norm: bool) -> bool {
    match (pred, gold) {
        (Value::Array(p), Value::Array(g)) => {
            p.len() == g.len() && p.iter().zip(g).all(|(a, b)| text_eq(a, b, norm))
        }
        _ => prepare(&value_text(pred), norm) == prepare(&value_text(gold), norm),
    }
}

fn expected_phrase(golds: &[&Value]) -> String {
    let shown: Vec<String> = golds
        .iter()
        .take(5)
        .map(|g| format!("`{}`", short(&value_text(g), 120)))
        .collect();
    if golds.len() == 1 {
        format!("expected {}", shown[0])
    } else {
        format!("expected one of {}", shown.join(", "))
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExactMatch {
    #[serde(default = "default_true")]
    pub normalize: bool,
}

impl ExactMatch {
    pub fn score(&self, pred: &Value, gold: &Value) -> Score {
        let golds = answers(pred, gold);
        let ok = golds.iter().any(|g| text_eq(pred, g, self.normalize));
        Score::pass_fail(ok, || {
            format!(
                "{}, got `{}`",
                expected_phrase(&golds),
                short(&value_text(pred), 200)
            )
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct F1 {}

/// SQuAD token F1 between normalised texts. Two empty texts score 1 (SQuAD
/// v2's convention); one empty text scores 0.
pub(crate) fn token_f1(pred: &str, gold: &str) -> f64 {
    let p = normalize(pred);
    let g = normalize(gold);
    let pt: Vec<&str> = p.split_whitespace().collect();
    let gt: Vec<&str> = g.split_whitespace().collect();
    if pt.is_empty() || gt.is_empty() {
        return if pt.is_empty() && gt.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &gt {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0i64;
    for t in &pt {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pt.len() as f64;
    let recall = same as f64 / gt.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

impl F1 {
    pub fn score(&self, pred: &Value, gold: &Value) -> Score {
        let golds = answers(&Value::Null, gold);
        let p = value_text(pred);
        let best = golds
            .iter()
            .map(|g| token_f1(&p, &value_text(g)))
            .fold(0.0, f64::max);
        let feedback = (best < 1.0).then(|| {
            format!(
                "token F1 {best:.2}: {}, got `{}`",
                expected_phrase(&golds),
                short(&p, 200)
            )
        });
        Score::new(best, feedback)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Contains {
    #[serde(default = "default_true")]
    pub normalize: bool,
}

impl Contains {
    /// 1 when an expected answer occurs in the output. An empty expected
    /// text only matches an empty output, so a blank gold cannot pass
    /// everything.
    pub fn score(&self, pred: &Value, gold: &Value) -> Score {
        let golds = answers(&Value::Null, gold);
        let p = prepare(&value_text(pred), self.normalize);
        let ok = golds.iter().any(|g| {
            let g = prepare(&value_text(g), self.normalize);
            if g.is_empty() {
                p.is_empty()
            } else {
                p.contains(&g)
            }
        });
        Score::pass_fail(ok, || {
            format!(
                "the output does not contain the expected answer: {}, got `{}`",
                expected_phrase(&golds),
                short(&value_text(pred), 200)
            )
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegexOptions {
    #[serde(default)]
    pattern: Option<String>,
    /// Require the whole output to match, not just a part.
    #[serde(default)]
    full: bool,
    #[serde(default)]
    case_insensitive: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RegexMetric {
    pattern: Option<Regex>,
    full: bool,
    case_insensitive: bool,
}

impl RegexMetric {
    pub fn new(o: RegexOptions) -> Result<Self, MetricError> {
        let pattern = match &o.pattern {
            Some(p) => Some(compile(p, o.full, o.case_insensitive).map_err(MetricError::Spec)?),
            None => None,
        };
        Ok(RegexMetric {
            pattern,
            full: o.full,
            case_insensitive: o.case_insensitive,
        })
    }

    pub fn has_pattern(&self) -> bool {
        self.pattern.is_some()
    }

    /// Match the output against the spec's pattern, or else the expected
    /// value used as a pattern (a per-example pattern).
    pub fn score(&self, pred: &Value, gold: Option<&Value>) -> Result<Score, MetricError> {
        let text = value_text(pred);
        let per_example;
        let re = match (&self.pattern, gold) {
            (Some(re), _) => re,
            (None, Some(g)) => {
                per_example = compile(&value_text(g), self.full, self.case_insensitive)
                    .map_err(MetricError::Score)?;
                &per_example
            }
            (None, None) => {
                return Err(MetricError::Score(
                    "regex: no `pattern` and no expected value to use as one".into(),
                ))
            }
        };
        Ok(Score::pass_fail(re.is_match(&text), || {
            format!(
                "the output `{}` does not match /{}/",
                short(&text, 200),
                short(re.as_str(), 200)
            )
        }))
    }
}

fn compile(p: &str, full: bool, ci: bool) -> Result<Regex, String> {
    let src = if full {
        format!("^(?:{p})$")
    } else {
        p.to_string()
    };
    regex::RegexBuilder::new(&src)
        .case_insensitive(ci)
        .build()
        .map_err(|e| format!("regex: invalid pattern `{p}`: {e}"))
}
