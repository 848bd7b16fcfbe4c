//! The `multi_chain_comparison` module kind (DSPy's `MultiChainComparison`).
//!
//! The node first samples `n` chain-of-thought attempts of its signature
//! (predictor `NODE.attempt`); attempt `i` uses rollout id `i` offset by the
//! context's own, and temperature 1.0 after the first, exactly as refine
//! does, so the attempts are distinct samples rather than cache hits of one
//! another. Each successful attempt is condensed the way DSPy condenses a
//! completion, the first line of its reasoning and of its last output inside
//! «…», and handed to one comparison call (predictor `NODE.compare`) that
//! writes a `rationale` and then the signature's outputs, which are the
//! node's outputs. DSPy expects its caller to supply exactly `M` completions;
//! here an attempt that fails (LM error or unparseable reply) is skipped,
//! recorded in the trace, and its slot in the comparison prompt gets
//! [`FAILED_ATTEMPT`], so the compare signature (and any demos compiled for
//! it) keeps its `n` inputs. When no attempt succeeds there is nothing to
//! compare and the node fails with the last attempt's error. The comparison
//! samples at the run's temperature, not DSPy's default 0.7, so an eval at
//! temperature 0 stays deterministic.

use serde_json::{json, Map, Value};

use crate::adapter::chat::python_str;
use crate::nodes::multichain::MultiChainComparison;
use crate::overlay::Overlay;
use crate::program::multichain::{attempt_field, attempt_signature, compare_signature};
use crate::run::{call_predictor, RunContext, RunError};
use crate::trace::{Step, Trace};

/// Stands in for an attempt that produced no prediction.
pub const FAILED_ATTEMPT: &str = "«This attempt failed and produced no prediction.»";

/// First line of `text`, trimmed (DSPy: `.strip().split("\n")[0].strip()`).
fn first_line(text: &str) -> &str {
    text.trim().split('\n').next().unwrap_or("").trim()
}

/// One attempt as the comparison sees it: its reasoning and its value of the
/// signature's last output, first lines only, in DSPy's words.
pub fn render_attempt(out: &Map<String, Value>, last_output: &str) -> String {
    let reasoning = out.get("reasoning").map(python_str).unwrap_or_default();
    let answer = out.get(last_output).map(python_str).unwrap_or_default();
    format!(
        "«I'm trying to {} I'm not sure but my prediction is {}»",
        first_line(&reasoning),
        first_line(&answer)
    )
}

fn attempt_step(name: &str, outputs: Value) -> Step {
    Step {
        node: name.to_string(),
        predictor: None,
        kind: "chain_attempt".into(),
        inputs: Map::new(),
        outputs: outputs.as_object().cloned(),
        lm: None,
        tool: None,
        parse_error: None,
        error: None,
    }
}

pub async fn run_multichain(
    ctx: &RunContext,
    overlay: &Overlay,
    name: &str,
    node: &MultiChainComparison,
    inputs: Map<String, Value>,
    trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    let MultiChainComparison { signature, n } = node;
    let Some(last) = signature.outputs.last().map(|f| f.name.clone()) else {
        return Err(RunError::Node {
            node: name.to_string(),
            message: "the signature has no outputs to compare".into(),
        });
    };
    let n = (*n).max(1);
    let attempt_sig = attempt_signature(signature);
    let attempt_path = format!("{name}.attempt");
    let compare_path = format!("{name}.compare");

    let mut rendered: Vec<Option<String>> = Vec::with_capacity(n as usize);
    let mut last_err: Option<RunError> = None;
    for attempt in 0..n {
        let actx = ctx.attempt(attempt);
        let number = attempt + 1;
        match call_predictor(
            &actx,
            overlay,
            name,
            &attempt_path,
            &attempt_sig,
            &inputs,
            actx.rollout_id,
            trace,
        )
        .await
        {
            Ok(out) => {
                let text = render_attempt(&out, &last);
                trace.steps.push(attempt_step(
                    name,
                    json!({"attempt": number, "skipped": false, "rendered": text}),
                ));
                rendered.push(Some(text));
            }
            // Unlike refine, an LM error does not end the node: the other
            // attempts may still give the comparison something to read.
            Err(e) => {
                trace.steps.push(attempt_step(
                    name,
                    json!({"attempt": number, "skipped": true, "reason": e.to_string()}),
                ));
                rendered.push(None);
                last_err = Some(e);
            }
        }
    }
    if rendered.iter().all(Option::is_none) {
        return Err(last_err.unwrap_or_else(|| RunError::Node {
            node: name.to_string(),
            message: "no attempt produced outputs".into(),
        }));
    }

    let mut call_inputs = inputs;
    for (i, r) in rendered.into_iter().enumerate() {
        let text = r.unwrap_or_else(|| FAILED_ATTEMPT.to_string());
        call_inputs.insert(attempt_field(i as u32 + 1), Value::String(text));
    }
    call_predictor(
        ctx,
        overlay,
        name,
        &compare_path,
        &compare_signature(signature, n),
        &call_inputs,
        ctx.rollout_id,
        trace,
    )
    .await
}
