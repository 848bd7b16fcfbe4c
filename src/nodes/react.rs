//! `react`: DSPy's ReAct agent, a loop of (thought, tool, args) steps over
//! the node's tools, then an extract step that writes the signature's
//! outputs. Owns two predictors, `NODE.react` and `NODE.extract`; the loop
//! itself lives in `run::react`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    bare, wrapped, Expects, KeyDoc, Kind, KindInfo, Lowered, NodeRun, OwnedPredictor, INPUTS,
    SIGNATURE,
};
use crate::program::lower::NodeLowering;
use crate::program::react::{extract_signature, react_signature};
use crate::run::RunError;
use crate::signature::Signature;
use crate::trace::Trace;

/// Tool-calling steps when `max_iters` is left out (DSPy's default is 20;
/// small models rarely use more than a few well).
pub const DEFAULT_MAX_ITERS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct React {
    pub signature: Signature,
    pub tools: Vec<String>,
    pub max_iters: u32,
}

pub const INFO: KindInfo = KindInfo {
    name: "react",
    summary: "A ReAct agent: up to `max_iters` tool-calling steps over `tools`, then an extract step (DSPy's ReAct).",
    calls_lm: true,
    keys: &[
        SIGNATURE,
        INPUTS,
        KeyDoc {
            key: "tools",
            required: true,
            schema: || json!({"type": "array", "items": {"type": "string"}, "description": "The tools the agent may call."}),
        },
        KeyDoc {
            key: "max_iters",
            required: false,
            schema: || json!({"type": "integer", "minimum": 1, "default": DEFAULT_MAX_ITERS, "description": "Maximum tool-calling steps."}),
        },
    ],
    lower,
};

/// The keys only a react node has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    tools: Option<Vec<String>>,
    max_iters: Option<u32>,
}

fn lower(nl: &mut NodeLowering<'_, '_>) -> Option<Lowered> {
    let keys: Keys = nl.keys()?;
    let sig = nl.signature();
    let mut names = Vec::new();
    let mut ok = true;
    let p = nl.path.to_string();
    match keys.tools {
        None => {
            nl.err_key(
                &p,
                "a `react` node needs `tools`",
                Some("list the tools the agent may call, e.g. `tools: [db]`".into()),
            );
            ok = false;
        }
        Some(list) if list.is_empty() => {
            nl.err(
                &nl.at("tools"),
                "a `react` node needs at least one tool",
                None,
            );
            ok = false;
        }
        Some(list) => {
            for (i, t) in list.iter().enumerate() {
                let tp = format!("{p}.tools[{i}]");
                if names.contains(t) {
                    nl.err(&tp, format!("tool `{t}` is listed twice"), None);
                    ok = false;
                } else if nl.tool_ref(t, &tp, None).is_none() {
                    ok = false;
                }
                names.push(t.clone());
            }
        }
    }
    let max_iters = nl.positive(keys.max_iters, "max_iters", DEFAULT_MAX_ITERS);
    let sig = sig?;
    if !ok {
        return None;
    }
    let (inputs, outputs) = (sig.inputs.clone(), sig.outputs.clone());
    Some(Lowered::new(
        React {
            signature: sig,
            tools: names,
            max_iters: max_iters?,
        },
        outputs,
        Expects::Fields(inputs),
    ))
}

impl Kind for React {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }
    fn predictors(&self, node: &str) -> Vec<OwnedPredictor> {
        vec![
            // DSPy's ReAct holds `react` as a bare Predict.
            bare(
                format!("{node}.react"),
                react_signature(&self.signature, &self.tools),
            ),
            wrapped(
                format!("{node}.extract"),
                extract_signature(&self.signature),
            ),
        ]
    }
    fn calls_per_run(&self) -> (u64, bool) {
        (self.max_iters as u64 + 1, false)
    }
    async fn run(
        &self,
        cx: &NodeRun<'_>,
        inputs: Map<String, Value>,
        trace: &mut Trace,
    ) -> Result<Map<String, Value>, RunError> {
        crate::run::react::run_react(cx.ctx, cx.overlay, cx.name, self, inputs, trace).await
    }
}
