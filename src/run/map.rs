//! The `map` module kind: apply one predictor to every item of a list input.
//!
//! The calls run concurrently (each with its own trace, merged afterwards in
//! item order, so traces and results are deterministic whatever finishes
//! first). Every other input is passed unchanged to each call; the list
//! input `over` is replaced by one item. The node's outputs are lists of the
//! signature's outputs, item `i` at position `i`. A failed item fails the
//! node: a list with holes would silently misalign downstream.

use futures::future::join_all;
use serde_json::{Map as JsonMap, Value};

use crate::nodes::map::Map;
use crate::overlay::Overlay;
use crate::run::{call_predictor, RunContext, RunError};
use crate::trace::Trace;

pub async fn run_map(
    ctx: &RunContext,
    overlay: &Overlay,
    name: &str,
    node: &Map,
    inputs: JsonMap<String, Value>,
    trace: &mut Trace,
) -> Result<JsonMap<String, Value>, RunError> {
    let Map {
        signature,
        chain_of_thought,
        over,
    } = node;
    let sig = if *chain_of_thought {
        signature.with_reasoning()
    } else {
        signature.clone()
    };
    let items = match inputs.get(over) {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        // A single value maps as a one-item list rather than failing.
        Some(other) => vec![other.clone()],
    };
    let calls = items.iter().map(|item| {
        let mut call_inputs = inputs.clone();
        call_inputs.insert(over.clone(), item.clone());
        let sig = &sig;
        async move {
            let mut t = Trace::default();
            let r = call_predictor(
                ctx,
                overlay,
                name,
                name,
                sig,
                &call_inputs,
                ctx.rollout_id,
                &mut t,
            )
            .await;
            (r, t)
        }
    });
    let results = join_all(calls).await;
    let mut columns: Vec<(String, Vec<Value>)> = sig
        .outputs
        .iter()
        .map(|f| (f.name.clone(), Vec::with_capacity(items.len())))
        .collect();
    let mut first_err = None;
    for (r, t) in results {
        trace.steps.extend(t.steps);
        match r {
            Ok(out) => {
                for (name, col) in columns.iter_mut() {
                    col.push(out.get(name).cloned().unwrap_or(Value::Null));
                }
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(columns
        .into_iter()
        .map(|(n, col)| (n, Value::Array(col)))
        .collect())
}
