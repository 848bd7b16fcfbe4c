//! `map`: apply one predict/chain-of-thought signature to every item of a
//! list input (`over`); each output becomes a list, item `i` at position
//! `i`. The concurrent calls live in `run::map`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map as JsonMap, Value};

use super::{
    wrapped, Expects, KeyDoc, Kind, KindInfo, Lowered, NodeRun, OwnedPredictor, CHAIN_OF_THOUGHT,
    INPUTS, SIGNATURE,
};
use crate::program::lower::NodeLowering;
use crate::run::RunError;
use crate::signature::{Field, FieldType, Signature};
use crate::trace::Trace;

/// Apply the predictor to every item of `over`. Predictor path: `NODE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Map {
    pub signature: Signature,
    pub chain_of_thought: bool,
    pub over: String,
}

pub const INFO: KindInfo = KindInfo {
    name: "map",
    summary: "The signature applied to every item of the list input `over`; every output becomes a list in item order.",
    calls_lm: true,
    keys: &[
        SIGNATURE,
        INPUTS,
        CHAIN_OF_THOUGHT,
        KeyDoc {
            key: "over",
            required: true,
            schema: || json!({"type": "string", "description": "The list-typed input iterated over."}),
        },
    ],
    lower,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    chain_of_thought: Option<bool>,
    over: Option<String>,
}

fn lower(nl: &mut NodeLowering<'_, '_>) -> Option<Lowered> {
    let keys: Keys = nl.keys()?;
    let sig = nl.signature()?;
    let Some(over) = keys.over else {
        let p = nl.path.to_string();
        nl.err_key(
            &p,
            "a `map` node needs `over` (the list input to iterate)",
            Some(format!(
                "one of the signature inputs: {}",
                NodeLowering::field_names(&sig.inputs)
            )),
        );
        return None;
    };
    if sig.input(&over).is_none() {
        let hint = NodeLowering::suggest(
            &over,
            sig.inputs.iter().map(|f| f.name.as_str()),
            format!(
                "signature inputs are {}",
                NodeLowering::field_names(&sig.inputs)
            ),
        );
        nl.err(
            &nl.at("over"),
            format!("`over` names `{over}`, which is not a signature input"),
            Some(hint),
        );
        return None;
    }
    let node = Map {
        signature: sig,
        chain_of_thought: keys.chain_of_thought.unwrap_or(false),
        over: over.clone(),
    };
    let outputs = node
        .rendered()
        .outputs
        .iter()
        .map(|f| Field {
            ty: FieldType::List {
                item: Box::new(f.ty.clone()),
            },
            // A default is per item (the inner predictor's), not a list.
            default: None,
            ..f.clone()
        })
        .collect();
    let inputs = node.signature.inputs.clone();
    let mut l = Lowered::new(node, outputs, Expects::Fields(inputs));
    l.over = Some(over);
    Some(l)
}

impl Map {
    /// The signature as the predictor renders it.
    pub fn rendered(&self) -> Signature {
        if self.chain_of_thought {
            self.signature.with_reasoning()
        } else {
            self.signature.clone()
        }
    }
}

impl Kind for Map {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }
    fn predictors(&self, node: &str) -> Vec<OwnedPredictor> {
        vec![wrapped(node.to_string(), self.rendered())]
    }
    /// Items are unknown before the run: counted once.
    fn calls_per_run(&self) -> (u64, bool) {
        (1, false)
    }
    async fn run(
        &self,
        cx: &NodeRun<'_>,
        inputs: JsonMap<String, Value>,
        trace: &mut Trace,
    ) -> Result<JsonMap<String, Value>, RunError> {
        crate::run::map::run_map(cx.ctx, cx.overlay, cx.name, self, inputs, trace).await
    }
}
