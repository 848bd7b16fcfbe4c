//! Enum outputs decided by likelihood instead of sampling, with optional
//! contextual calibration: the request side (which mode, the content-free
//! prompt), the reply side (per-value probabilities, recorded in the trace)
//! and the arithmetic both share.
//!
//! Sampling an enum value one token at a time picks the best first token,
//! which is not the most likely value when values share a first token or
//! split into several tokens. A backend that can score text (the embedded
//! engine) instead sums each whole value's token log-probabilities after
//! the field header and takes the most likely value. Small models also lean
//! towards one label whatever the input; contextual calibration (Zhao et
//! al. 2021, "Calibrate Before Use") divides each value's probability by
//! the one the same prompt gives a content-free input ("N/A" in every input
//! field) and renormalises. This module holds no engine code, so it builds
//! without llama.cpp and is unit-tested on its own.

use serde::{Deserialize, Serialize};

use crate::adapter::Message;

/// How an enum output field is decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChoiceMode {
    /// Decode it like any other text (greedy or sampled): today's default.
    #[default]
    Sample,
    /// The value whose whole tokenization is most likely after the header.
    Likelihood,
    /// As `likelihood`, with probabilities divided by those a content-free
    /// input gets from the same prompt.
    Calibrated,
}

impl ChoiceMode {
    pub const NAMES: [&'static str; 3] = ["sample", "likelihood", "calibrated"];

    pub fn as_str(self) -> &'static str {
        match self {
            ChoiceMode::Sample => "sample",
            ChoiceMode::Likelihood => "likelihood",
            ChoiceMode::Calibrated => "calibrated",
        }
    }
}

impl std::str::FromStr for ChoiceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sample" => Ok(ChoiceMode::Sample),
            "likelihood" => Ok(ChoiceMode::Likelihood),
            "calibrated" => Ok(ChoiceMode::Calibrated),
            other => Err(format!(
                "unknown choice mode `{other}`; expected one of: {}",
                ChoiceMode::NAMES.join(", ")
            )),
        }
    }
}

/// What a request asks of a backend that can score enum values. Part of
/// the cache key (a likelihood choice is a different reply from a sampled
/// one); absent for `sample`, so default keys are unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceRequest {
    pub mode: ChoiceMode,
    /// The same prompt with "N/A" in every input field (calibrated mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_free: Option<Vec<Message>>,
}

/// The text every input field holds in the content-free prompt.
pub const CONTENT_FREE: &str = "N/A";

/// One enum choice as the backend made it: every value's score, and the
/// value taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceScores {
    pub mode: ChoiceMode,
    pub chosen: String,
    pub values: Vec<ValueScore>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueScore {
    pub value: String,
    /// Sum of the value's token log-probabilities after the header.
    pub logprob: f64,
    /// Probability among the values (softmax of the log-probabilities).
    pub p: f64,
    /// The same for the content-free prompt (calibrated mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_content_free: Option<f64>,
    /// `p / p_content_free`, renormalised (calibrated mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_calibrated: Option<f64>,
}

/// Softmax of log-probabilities, computed stably (shifted by the maximum).
pub fn normalize(logprobs: &[f64]) -> Vec<f64> {
    let max = logprobs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        // Every value impossible (or no values): uniform is the honest answer.
        let n = logprobs.len().max(1) as f64;
        return logprobs.iter().map(|_| 1.0 / n).collect();
    }
    let exps: Vec<f64> = logprobs.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Contextual calibration: `p_i / cf_i`, renormalised. Done in log space
/// so that a content-free probability that underflowed does not divide by
/// zero.
pub fn calibrate(raw_logprobs: &[f64], content_free_logprobs: &[f64]) -> Vec<f64> {
    let raw = log_normalize(raw_logprobs);
    let cf = log_normalize(content_free_logprobs);
    let shifted: Vec<f64> = raw.iter().zip(&cf).map(|(r, c)| r - c).collect();
    normalize(&shifted)
}

fn log_normalize(logprobs: &[f64]) -> Vec<f64> {
    normalize(logprobs)
        .into_iter()
        .map(|p| p.max(f64::MIN_POSITIVE).ln())
        .collect()
}

/// Index of the largest probability; the first on ties (values keep the
/// order the signature lists them in).
pub fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

/// Score values from their log-probabilities (and, for calibrated mode,
/// the content-free ones) and pick one.
pub fn decide(
    mode: ChoiceMode,
    values: &[String],
    logprobs: &[f64],
    content_free: Option<&[f64]>,
) -> ChoiceScores {
    let p = normalize(logprobs);
    let cf = content_free.map(normalize);
    let cal = content_free.map(|cf| calibrate(logprobs, cf));
    let pick = argmax(cal.as_deref().unwrap_or(&p));
    ChoiceScores {
        mode,
        chosen: values[pick].clone(),
        values: values
            .iter()
            .enumerate()
            .map(|(i, v)| ValueScore {
                value: v.clone(),
                logprob: logprobs[i],
                p: p[i],
                p_content_free: cf.as_ref().map(|c| c[i]),
                p_calibrated: cal.as_ref().map(|c| c[i]),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_sums_to_one_and_keeps_order() {
        let p = normalize(&[-1.0, -2.0, -3.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[0] > p[1] && p[1] > p[2]);
        // Very negative log-probabilities do not underflow to 0/0.
        let q = normalize(&[-1000.0, -1001.0]);
        assert!((q[0] - 1.0 / (1.0 + (-1f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn calibration_divides_by_the_content_free_prior() {
        // Raw 0.7/0.3, content-free 0.9/0.1: calibrated 0.7/0.9 : 0.3/0.1.
        let raw = [0.7f64.ln(), 0.3f64.ln()];
        let cf = [0.9f64.ln(), 0.1f64.ln()];
        let c = calibrate(&raw, &cf);
        let a = 0.7 / 0.9;
        let b = 0.3 / 0.1;
        assert!((c[0] - a / (a + b)).abs() < 1e-12, "{c:?}");
        assert_eq!(argmax(&c), 1);
        // A uniform content-free prior changes nothing.
        let same = calibrate(&raw, &[0.0, 0.0]);
        assert!((same[0] - 0.7).abs() < 1e-12);
    }

    #[test]
    fn decide_picks_the_calibrated_argmax_and_records_both() {
        let values = vec!["positive".to_string(), "negative".to_string()];
        let raw = [0.7f64.ln(), 0.3f64.ln()];
        let cf = [0.9f64.ln(), 0.1f64.ln()];
        let d = decide(ChoiceMode::Calibrated, &values, &raw, Some(&cf));
        assert_eq!(d.chosen, "negative");
        assert!((d.values[0].p - 0.7).abs() < 1e-12);
        assert!(d.values[0].p_calibrated.is_some());
        let l = decide(ChoiceMode::Likelihood, &values, &raw, None);
        assert_eq!(l.chosen, "positive");
        assert!(l.values[0].p_calibrated.is_none());
    }

    #[test]
    fn modes_parse_with_a_helpful_error() {
        assert_eq!(
            "Calibrated".parse::<ChoiceMode>(),
            Ok(ChoiceMode::Calibrated)
        );
        let err = "greedy".parse::<ChoiceMode>().unwrap_err();
        assert!(err.contains("sample, likelihood, calibrated"), "{err}");
    }
}
