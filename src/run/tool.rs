//! Tool and retrieve nodes: deterministic graph steps that call a tool
//! without an LM.
//!
//! A `tool` node passes its bound inputs as the tool's argument object (plus
//! the node's `operation`) and outputs `result` (the observation) and `ok`.
//! A failing tool does not fail the run: downstream nodes see `ok: false`
//! and the error text, as a ReAct agent would. A `retrieve` node outputs
//! `passages: list[str]`. Both record a `ToolCallRecord` step in the trace.

use serde_json::{json, Map, Value};

use crate::run::{RunContext, RunError};
use crate::trace::{Step, ToolCallRecord, Trace};

/// A `tool` node: the bound inputs (plus `operation`) are the tool's arguments.
pub async fn run_tool(
    ctx: &RunContext,
    name: &str,
    tool: &str,
    operation: Option<&str>,
    inputs: Map<String, Value>,
    trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    let mut args = inputs.clone();
    if let Some(op) = operation {
        args.insert("operation".into(), Value::String(op.to_string()));
    }
    let args = Value::Object(args);
    if !ctx.tools.contains(tool) {
        return Err(unknown_tool(ctx, name, tool));
    }
    let out = ctx.tools.call(tool, &args).await;
    let mut outputs = Map::new();
    outputs.insert("result".into(), Value::String(out.observation.clone()));
    outputs.insert("ok".into(), Value::Bool(!out.is_error));
    trace.steps.push(Step {
        node: name.to_string(),
        predictor: None,
        kind: "tool".into(),
        inputs,
        outputs: Some(outputs.clone()),
        lm: None,
        tool: Some(ToolCallRecord {
            tool: tool.to_string(),
            args,
            observation: out.observation,
            is_error: out.is_error,
        }),
        parse_error: None,
        error: None,
    });
    Ok(outputs)
}

fn unknown_tool(ctx: &RunContext, name: &str, tool: &str) -> RunError {
    RunError::Node {
        node: name.to_string(),
        message: format!(
            "tool `{tool}` is not open in this run (open tools: {})",
            ctx.tools.names().join(", ")
        ),
    }
}

/// A `retrieve` node: top `k` passages for the bound `query`.
pub fn run_retrieve(
    ctx: &RunContext,
    name: &str,
    tool: &str,
    k: usize,
    inputs: Map<String, Value>,
    trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    if !ctx.tools.contains(tool) {
        return Err(unknown_tool(ctx, name, tool));
    }
    let query = match inputs.get("query") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect::<Vec<_>>()
            .join(" "),
        Some(other) => other.to_string(),
        None => return Err(RunError::MissingInput(format!("{name}.query"))),
    };
    let k = if k == 0 {
        ctx.tools.retrieve_k(tool).unwrap_or(3)
    } else {
        k
    };
    let args = json!({"query": query, "k": k});
    let (passages, error) = match ctx.tools.retrieve(tool, &query, Some(k)) {
        Ok(p) => (p, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let mut outputs = Map::new();
    outputs.insert(
        "passages".into(),
        Value::Array(passages.iter().cloned().map(Value::String).collect()),
    );
    trace.steps.push(Step {
        node: name.to_string(),
        predictor: None,
        kind: "retrieve".into(),
        inputs,
        outputs: Some(outputs.clone()),
        lm: None,
        tool: Some(ToolCallRecord {
            tool: tool.to_string(),
            args,
            observation: error.clone().unwrap_or_else(|| passages.join("\n")),
            is_error: error.is_some(),
        }),
        parse_error: None,
        error: error.clone(),
    });
    match error {
        Some(message) => Err(RunError::Node {
            node: name.to_string(),
            message,
        }),
        None => Ok(outputs),
    }
}
