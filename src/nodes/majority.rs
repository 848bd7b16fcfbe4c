//! `majority`: `n` samples of one predict/chain-of-thought signature, and
//! the most common value of its last output field wins, as DSPy's
//! `dspy.majority` over a module's completions.
//!
//! Attempt 0 runs at the context's temperature and attempt `i` at
//! `0.5 + 0.5·i/n` (rising, the schedule DSPy's BestOfN and Refine use), each
//! with its own rollout id, so the samples differ and each is cached. The
//! attempts run concurrently; their steps are merged in attempt order, so
//! traces do not depend on which reply came first. Votes compare values
//! normalized as DSPy's `normalize_text` does (lowercase, no punctuation or
//! articles, single spaces; an empty value does not vote). The winner is
//! the value with most votes, the earliest among ties, and the node outputs
//! the first attempt that gave it. Failed attempts (LM error, unparseable
//! reply) do not vote; if none succeeds the node fails with the last error.
//! This file is the whole kind: keys, lowering, predictor, cost and runner.

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    bare, wrapped, Expects, KeyDoc, Kind, KindInfo, Lowered, NodeRun, OwnedPredictor,
    CHAIN_OF_THOUGHT, INPUTS, SIGNATURE,
};
use crate::program::lower::NodeLowering;
use crate::run::{call_predictor, RunError};
use crate::signature::Signature;
use crate::trace::{Step, Trace};

pub const DEFAULT_N: u32 = 5;

/// `n` samples of the signature; the majority of its last output wins.
/// Predictor path: `NODE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Majority {
    pub signature: Signature,
    pub chain_of_thought: bool,
    pub n: u32,
}

pub const INFO: KindInfo = KindInfo {
    name: "majority",
    summary: "`n` samples of the signature at rising temperature; the most common value of its last output wins (DSPy's `dspy.majority`).",
    calls_lm: true,
    keys: &[
        SIGNATURE,
        INPUTS,
        CHAIN_OF_THOUGHT,
        KeyDoc {
            key: "n",
            required: false,
            schema: || json!({"type": "integer", "minimum": 1, "default": DEFAULT_N, "description": "Samples that vote."}),
        },
    ],
    lower,
};

/// The keys only a majority node has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    chain_of_thought: Option<bool>,
    n: Option<u32>,
}

fn lower(nl: &mut NodeLowering<'_, '_>) -> Option<Lowered> {
    let keys: Keys = nl.keys()?;
    let sig = nl.signature();
    let n = nl.positive(keys.n, "n", DEFAULT_N);
    let node = Majority {
        signature: sig?,
        chain_of_thought: keys.chain_of_thought.unwrap_or(false),
        n: n?,
    };
    let inputs = node.signature.inputs.clone();
    let outputs = node.rendered().outputs;
    Some(Lowered::new(node, outputs, Expects::Fields(inputs)))
}

impl Majority {
    fn rendered(&self) -> Signature {
        if self.chain_of_thought {
            self.signature.with_reasoning()
        } else {
            self.signature.clone()
        }
    }
}

/// DSPy's `normalize_text`: the value compared when voting; `None` (no
/// vote) for an empty value.
pub fn normalize(v: &Value) -> Option<String> {
    let text = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let lower = text.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let words: Vec<&str> = no_punct
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

impl Kind for Majority {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }
    fn predictors(&self, node: &str) -> Vec<OwnedPredictor> {
        let sig = self.rendered();
        if self.chain_of_thought {
            vec![wrapped(node.to_string(), sig)]
        } else {
            // A bare dspy.Predict called with n completions.
            vec![bare(node.to_string(), sig)]
        }
    }
    fn calls_per_run(&self) -> (u64, bool) {
        (self.n.max(1) as u64, true)
    }
    async fn run(
        &self,
        cx: &NodeRun<'_>,
        inputs: Map<String, Value>,
        trace: &mut Trace,
    ) -> Result<Map<String, Value>, RunError> {
        let sig = self.rendered();
        let Some(field) = sig.outputs.last().map(|f| f.name.clone()) else {
            return Err(RunError::Node {
                node: cx.name.to_string(),
                message: "the signature has no output to vote on".into(),
            });
        };
        let n = self.n.max(1);
        let attempts = (0..n).map(|i| {
            let mut actx = cx.ctx.attempt(i);
            if i > 0 {
                actx.temperature = 0.5 + 0.5 * i as f32 / n as f32;
            }
            let (sig, inputs) = (&sig, &inputs);
            async move {
                let mut t = Trace::default();
                let r = call_predictor(
                    &actx,
                    cx.overlay,
                    cx.name,
                    cx.name,
                    sig,
                    inputs,
                    actx.rollout_id,
                    &mut t,
                )
                .await;
                (r, t)
            }
        });
        let mut outs = Vec::new();
        let mut last_err = None;
        for (r, t) in join_all(attempts).await {
            trace.steps.extend(t.steps);
            match r {
                Ok(out) => outs.push(out),
                Err(e) => last_err = Some(e),
            }
        }
        // Votes per normalized value, in first-seen order (ties: earliest).
        let mut tally: Vec<(String, usize, usize)> = Vec::new();
        for (i, out) in outs.iter().enumerate() {
            let Some(key) = out.get(&field).and_then(normalize) else {
                continue;
            };
            match tally.iter_mut().find(|(k, _, _)| *k == key) {
                Some(entry) => entry.1 += 1,
                None => tally.push((key, 1, i)),
            }
        }
        let best = tally
            .iter()
            .fold(None::<&(String, usize, usize)>, |b, e| match b {
                Some(b) if b.1 >= e.1 => Some(b),
                _ => Some(e),
            });
        // No vote at all (every value empty): the first completion (DSPy
        // raises here; an empty answer is still an answer).
        let winner = match best {
            Some((_, _, i)) => *i,
            None if !outs.is_empty() => 0,
            None => {
                return Err(last_err.unwrap_or_else(|| RunError::Node {
                    node: cx.name.to_string(),
                    message: "no attempt produced outputs".into(),
                }))
            }
        };
        let votes: Map<String, Value> = tally
            .iter()
            .map(|(k, c, _)| (k.clone(), json!(c)))
            .collect();
        trace.steps.push(Step {
            node: cx.name.to_string(),
            predictor: None,
            kind: "majority_vote".into(),
            inputs: Map::from_iter([
                ("field".to_string(), Value::String(field)),
                ("votes".to_string(), Value::Object(votes)),
                ("attempts".to_string(), json!(n)),
                ("failed".to_string(), json!(n as usize - outs.len())),
            ]),
            outputs: Some(outs[winner].clone()),
            lm: None,
            tool: None,
            parse_error: None,
            error: None,
        });
        Ok(outs.swap_remove(winner))
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use serde_json::json;

    #[test]
    fn normalize_is_dspys_normalize_text() {
        assert_eq!(normalize(&json!("The Answer.")), Some("answer".into()));
        assert_eq!(normalize(&json!("  an  apple, ")), Some("apple".into()));
        assert_eq!(normalize(&json!(4)), Some("4".into()));
        assert_eq!(normalize(&json!("...")), None);
        assert_eq!(normalize(&json!(null)), None);
    }
}
