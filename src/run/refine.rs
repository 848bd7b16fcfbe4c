//! The `refine` and `best_of_n` module kinds (DSPy's `Refine` / `BestOfN`).
//!
//! The node's predictor runs up to `n` times. Attempt `i` uses rollout id
//! `i` (offset by the context's own rollout id, so bootstrapping rounds stay
//! distinct) and temperature 1.0 after the first attempt, so retries are new
//! samples and not cache hits of the first one. Each attempt is scored by the
//! node's reward; the first attempt reaching `threshold` wins, otherwise the
//! best-scoring one is returned. `refine` feeds advice on a failed attempt
//! into the next one as an extra `hint_` input, as DSPy does; unlike DSPy the
//! advice is written by code from what the reward observed (e.g. the SQL
//! error text), not by a second LM call, so a failed query's exact error
//! reaches the model at no extra cost. `best_of_n` gives no advice. The
//! retry count is bounded by `n` whatever happens.

use serde_json::{json, Map, Value};

use crate::nodes::refine::Refine;
use crate::overlay::Overlay;
use crate::program::{Binding, Program, RewardSpec};
use crate::run::{call_predictor, RunContext, RunError};
use crate::signature::{Field, FieldType, Signature};
use crate::trace::{Step, ToolCallRecord, Trace};

/// The input field carrying advice from the previous attempt.
pub const HINT_FIELD: &str = "hint_";

/// A scored attempt.
struct Scored {
    reward: f64,
    /// Why the reward was not full, in words for the model.
    advice: Option<String>,
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

async fn score(
    ctx: &RunContext,
    program: &Program,
    name: &str,
    reward: &RewardSpec,
    inputs: &Map<String, Value>,
    out: &Map<String, Value>,
    trace: &mut Trace,
) -> Scored {
    match reward {
        RewardSpec::NonEmpty { field } => {
            if is_empty(out.get(field)) {
                Scored {
                    reward: 0.0,
                    advice: Some(format!(
                        "The previous attempt left `{field}` empty. Give a non-empty `{field}`."
                    )),
                }
            } else {
                Scored {
                    reward: 1.0,
                    advice: None,
                }
            }
        }
        RewardSpec::ToolOk { tool, field } => {
            let Some(v) = out.get(field).filter(|v| !is_empty(Some(v))) else {
                return Scored {
                    reward: 0.0,
                    advice: Some(format!("The previous attempt left `{field}` empty.")),
                };
            };
            let text = value_text(v);
            let args = match ctx.tools.kind(tool) {
                Some("sqlite") => json!({"operation": "query", "sql": text}),
                Some("retrieve") => json!({"query": text}),
                _ => json!({ field.as_str(): v }),
            };
            let res = ctx.tools.call(tool, &args).await;
            trace.steps.push(Step {
                node: name.to_string(),
                predictor: None,
                kind: "reward".into(),
                inputs: args.as_object().cloned().unwrap_or_default(),
                outputs: None,
                lm: None,
                tool: Some(ToolCallRecord {
                    tool: tool.clone(),
                    args: args.clone(),
                    observation: res.observation.clone(),
                    is_error: res.is_error,
                }),
                parse_error: None,
                error: None,
            });
            if res.is_error {
                Scored {
                    reward: 0.0,
                    advice: Some(format!(
                        "The previous attempt's `{field}` was:\n{text}\nRunning it failed with: {}\nWrite a corrected `{field}` that avoids this error.",
                        res.observation
                    )),
                }
            } else {
                Scored {
                    reward: 1.0,
                    advice: None,
                }
            }
        }
        RewardSpec::Metric {
            metric,
            field,
            expected,
        } => {
            let expected = match expected {
                Binding::Literal(v) => Some(v.clone()),
                Binding::ProgramInput(name) => inputs.get(name).cloned(),
                // An earlier node's output reaches this node only when it is
                // bound as an input of the same name.
                Binding::NodeOutput { field: f, .. } => inputs.get(f).cloned(),
            };
            let got = out.get(field).cloned().unwrap_or(Value::Null);
            match metric_reward(ctx, program, metric, field, &got, expected.as_ref()).await {
                Ok((s, feedback)) => Scored {
                    reward: s,
                    advice: (s < 1.0).then(|| {
                        let mut a = format!(
                            "The previous attempt's `{field}` was {} and scored {s:.2}.",
                            value_text(&got)
                        );
                        if let Some(fb) = feedback {
                            a.push(' ');
                            a.push_str(&fb);
                        }
                        a
                    }),
                },
                Err(message) => Scored {
                    reward: 0.0,
                    advice: Some(message),
                },
            }
        }
    }
}

pub async fn run_refine(
    ctx: &RunContext,
    program: &Program,
    overlay: &Overlay,
    name: &str,
    node: &Refine,
    inputs: Map<String, Value>,
    trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    let Refine {
        signature,
        chain_of_thought,
        n,
        threshold,
        reward,
        advise,
    } = node;
    let base: Signature = if *chain_of_thought {
        signature.with_reasoning()
    } else {
        signature.clone()
    };
    let mut with_hint = base.clone();
    let mut hint = Field::new(HINT_FIELD, FieldType::String);
    hint.description = Some("A hint to the module from an earlier run".into());
    with_hint.inputs.push(hint);

    let attempts = (*n).max(1);
    let mut best: Option<(f64, Map<String, Value>)> = None;
    let mut last_err: Option<RunError> = None;
    let mut advice: Option<String> = None;
    for attempt in 0..attempts {
        let actx = ctx.attempt(attempt);
        let (sig, call_inputs) = match (&advice, *advise) {
            (Some(a), true) => {
                let mut i = inputs.clone();
                i.insert(HINT_FIELD.into(), Value::String(a.clone()));
                (&with_hint, i)
            }
            _ => (&base, inputs.clone()),
        };
        let out = match call_predictor(
            &actx,
            overlay,
            name,
            name,
            sig,
            &call_inputs,
            actx.rollout_id,
            trace,
        )
        .await
        {
            Ok(o) => o,
            // An LM outage will not heal by retrying here (the LM layer has
            // already retried); a parse failure may.
            Err(e @ RunError::Lm(_)) => return Err(e),
            Err(e) => {
                advice = Some(format!(
                    "The previous attempt's reply could not be parsed ({e}). Follow the output format exactly."
                ));
                last_err = Some(e);
                continue;
            }
        };
        let s = score(&actx, program, name, reward, &inputs, &out, trace).await;
        trace.steps.push(Step {
            node: name.to_string(),
            predictor: None,
            kind: "refine_attempt".into(),
            inputs: Map::new(),
            outputs: Some(
                json!({"attempt": attempt, "reward": s.reward, "advice": s.advice})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            lm: None,
            tool: None,
            parse_error: None,
            error: None,
        });
        let better = best.as_ref().is_none_or(|(b, _)| s.reward > *b);
        if s.reward >= *threshold {
            return Ok(out);
        }
        if better {
            best = Some((s.reward, out));
        }
        advice = s.advice;
    }
    match (best, last_err) {
        (Some((_, out)), _) => Ok(out),
        (None, Some(e)) => Err(e),
        (None, None) => Err(RunError::Node {
            node: name.to_string(),
            message: "no attempt produced outputs".into(),
        }),
    }
}

/// Score one output with a metric spec, the way an eval would score a
/// program output `field` against an expected value `expected`. Relative
/// paths in the spec (databases, scripts) resolve against the program file.
async fn metric_reward(
    ctx: &RunContext,
    program: &Program,
    metric: &Value,
    field: &str,
    got: &Value,
    expected: Option<&Value>,
) -> Result<(f64, Option<String>), String> {
    let base = program
        .source_path
        .as_ref()
        .and_then(|p| p.parent())
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let m = crate::metric::Metric::from_spec(metric, &base).map_err(|e| e.to_string())?;
    let mut ex = crate::data::Example {
        index: 0,
        row: 0,
        inputs: Map::new(),
        expected: Map::new(),
        extra: Map::new(),
    };
    if let Some(e) = expected {
        ex.expected.insert(field.to_string(), e.clone());
    }
    let mut outputs = Map::new();
    outputs.insert(field.to_string(), got.clone());
    m.score(&ex, &outputs, &crate::metric::MetricContext::new(ctx))
        .await
        .map(|s| (s.score, s.feedback))
        .map_err(|e| e.to_string())
}
