//! The `react` module kind, with DSPy's ReAct semantics.
//!
//! Each iteration calls the step predictor (`NODE.react`) with the user's
//! inputs and the trajectory so far; it answers with a thought, a tool name
//! (an enum of the node's tools plus `finish`, so the parser rejects any
//! other name) and JSON arguments. The tool's observation (an error message
//! when the tool fails: the agent must see it to recover) is appended to the
//! trajectory. The loop ends at `finish`, after `max_iters` steps, or when
//! the step predictor's reply cannot be parsed; then the extract predictor
//! (`NODE.extract`, chain of thought) reads the whole trajectory and
//! produces the outputs. The trajectory is rendered the way DSPy does, as
//! `[[ ## thought_0 ## ]]`-style sections. When the LM reports a context
//! overflow, the oldest step is dropped and the call retried. Every LM call
//! and tool call is a step in the trace, so bootstrapping yields demos for
//! both predictors.

use serde_json::{Map, Value};

use crate::lm::LmError;
use crate::nodes::react::React;
use crate::overlay::Overlay;
use crate::program::react::{extract_signature, react_signature};
use crate::run::{call_predictor, RunContext, RunError};
use crate::signature::Signature;
use crate::trace::{Step, ToolCallRecord, Trace};

/// One finished iteration.
#[derive(Debug, Clone)]
struct Turn {
    thought: String,
    tool: String,
    args: Value,
    observation: String,
}

/// Render the trajectory as DSPy's ChatAdapter formats it: one
/// `[[ ## key_i ## ]]` section per value. `offset` keeps the original step
/// numbers after truncation.
fn format_trajectory(turns: &[Turn], offset: usize) -> String {
    let mut parts = Vec::new();
    for (i, t) in turns.iter().enumerate() {
        let n = i + offset;
        let args = serde_json::to_string(&t.args).unwrap_or_else(|_| "{}".into());
        parts.push(format!("[[ ## thought_{n} ## ]]\n{}", t.thought));
        parts.push(format!("[[ ## tool_name_{n} ## ]]\n{}", t.tool));
        parts.push(format!("[[ ## tool_args_{n} ## ]]\n{args}"));
        parts.push(format!("[[ ## observation_{n} ## ]]\n{}", t.observation));
    }
    parts.join("\n\n")
}

/// Whether an LM error says the prompt did not fit the context window.
fn is_context_overflow(e: &LmError) -> bool {
    let msg = e.to_string().to_lowercase();
    // OpenAI-style servers: "maximum context length is ..."; llama.cpp and
    // the embedded engine: "does not fit the ... context", "n_ctx".
    msg.contains("n_ctx")
        || msg.contains("context_length_exceeded")
        || (msg.contains("context")
            && ["fit", "exceed", "too long", "maximum", "length", "window"]
                .iter()
                .any(|m| msg.contains(m)))
}

/// The step signature with DSPy's numbered tool list appended to its
/// instructions (each tool with its description and argument schema).
fn step_signature(ctx: &RunContext, user: &Signature, tools: &[String]) -> Signature {
    let mut sig = react_signature(user, tools);
    let mut list = String::from("\n\nThe tools:\n");
    let described = ctx.tools.describe(tools);
    let mut i = 1;
    for name in tools {
        match described.iter().find(|d| &d.name == name) {
            Some(d) => list.push_str(&format!(
                "({i}) {}, whose description is <desc>{}</desc>. It takes arguments {}.\n",
                d.name, d.description, d.args
            )),
            None => list.push_str(&format!("({i}) {name}.\n")),
        }
        i += 1;
    }
    let outs: Vec<String> = user
        .outputs
        .iter()
        .map(|f| format!("`{}`", f.name))
        .collect();
    list.push_str(&format!(
        "({i}) finish, whose description is <desc>Marks the task as complete. That is, signals that all information for producing the outputs, i.e. {}, are now available to be extracted.</desc>. It takes arguments {{}}.\n\
         When providing `next_tool_args`, the value inside the field must be in JSON format.",
        outs.join(", ")
    ));
    let base = sig.objective();
    sig.instructions = Some(format!("{base}{list}"));
    sig
}

pub async fn run_react(
    ctx: &RunContext,
    overlay: &Overlay,
    name: &str,
    node: &React,
    inputs: Map<String, Value>,
    trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    let React {
        signature,
        tools,
        max_iters,
    } = node;
    let react_path = format!("{name}.react");
    let extract_path = format!("{name}.extract");
    let step_sig = step_signature(ctx, signature, tools);

    let mut turns: Vec<Turn> = Vec::new();
    // Steps dropped from the front after a context overflow.
    let mut dropped = 0usize;
    let mut iter = 0u32;
    while iter < *max_iters {
        let mut step_inputs = inputs.clone();
        step_inputs.insert(
            "trajectory".into(),
            Value::String(format_trajectory(&turns[dropped..], dropped)),
        );
        let pred = match call_predictor(
            ctx,
            overlay,
            name,
            &react_path,
            &step_sig,
            &step_inputs,
            ctx.rollout_id,
            trace,
        )
        .await
        {
            Ok(p) => p,
            Err(RunError::Lm(e)) if is_context_overflow(&e) && dropped < turns.len() => {
                dropped += 1;
                continue;
            }
            Err(RunError::Lm(e)) => return Err(RunError::Lm(e)),
            // An unparseable step ends the loop; the extract step still
            // gets to answer from what was gathered (DSPy does the same).
            Err(_) => break,
        };
        iter += 1;
        let thought = pred
            .get("next_thought")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let tool = pred
            .get("next_tool_name")
            .and_then(|v| v.as_str())
            .unwrap_or("finish")
            .to_string();
        let args = pred
            .get("next_tool_args")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        if tool == "finish" {
            turns.push(Turn {
                thought,
                tool,
                args,
                observation: "Completed.".into(),
            });
            break;
        }
        let out = if tools.contains(&tool) {
            ctx.tools.call(&tool, &args).await
        } else {
            crate::tools::ToolOutcome::error(format!("unknown tool `{tool}`"))
        };
        let observation = if out.is_error {
            format!("Execution error in {tool}: {}", out.observation)
        } else {
            out.observation.clone()
        };
        trace.steps.push(Step {
            node: name.to_string(),
            predictor: None,
            kind: "tool".into(),
            inputs: match &args {
                Value::Object(m) => m.clone(),
                other => {
                    let mut m = Map::new();
                    m.insert("args".into(), other.clone());
                    m
                }
            },
            outputs: None,
            lm: None,
            tool: Some(ToolCallRecord {
                tool: tool.clone(),
                args: args.clone(),
                observation: out.observation,
                is_error: out.is_error,
            }),
            parse_error: None,
            error: None,
        });
        turns.push(Turn {
            thought,
            tool,
            args,
            observation,
        });
    }

    let extract_sig = extract_signature(signature);
    loop {
        let mut ex_inputs = inputs.clone();
        let trajectory = format_trajectory(&turns[dropped..], dropped);
        ex_inputs.insert("trajectory".into(), Value::String(trajectory.clone()));
        match call_predictor(
            ctx,
            overlay,
            name,
            &extract_path,
            &extract_sig,
            &ex_inputs,
            ctx.rollout_id,
            trace,
        )
        .await
        {
            Ok(mut out) => {
                out.insert("trajectory".into(), Value::String(trajectory));
                return Ok(out);
            }
            Err(RunError::Lm(e)) if is_context_overflow(&e) && dropped < turns.len() => {
                dropped += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trajectory_is_rendered_as_dspy_sections() {
        let t = Turn {
            thought: "look".into(),
            tool: "db".into(),
            args: json!({"operation": "list_tables"}),
            observation: "singer".into(),
        };
        let s = format_trajectory(&[t], 2);
        assert_eq!(
            s,
            "[[ ## thought_2 ## ]]\nlook\n\n[[ ## tool_name_2 ## ]]\ndb\n\n\
             [[ ## tool_args_2 ## ]]\n{\"operation\":\"list_tables\"}\n\n\
             [[ ## observation_2 ## ]]\nsinger"
        );
    }

    #[test]
    fn recognises_context_overflow_messages() {
        assert!(is_context_overflow(&LmError::Fatal(
            "prompt of 3000 tokens exceeds the context window".into()
        )));
        assert!(!is_context_overflow(&LmError::Fatal(
            "401 unauthorized".into()
        )));
    }
}
