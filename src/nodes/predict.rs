//! `predict` and `chain_of_thought`: one LM call of a signature (DSPy's
//! `Predict` and `ChainOfThought`, the latter with a `reasoning` output
//! first). Both own one predictor at the node's own path.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{bare, Expects, Kind, KindInfo, Lowered, NodeRun, OwnedPredictor, INPUTS, SIGNATURE};
use crate::program::lower::NodeLowering;
use crate::run::{call_predictor, RunError};
use crate::signature::Signature;
use crate::trace::Trace;

/// One LM call. Predictor path: `NODE` (DSPy name `NODE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predict {
    pub signature: Signature,
}

/// One LM call with a `reasoning` output first. Predictor path: `NODE`
/// (DSPy name `NODE.predict`, inside the ChainOfThought module).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainOfThought {
    pub signature: Signature,
}

pub const PREDICT: KindInfo = KindInfo {
    name: "predict",
    summary: "One LM call of the signature (DSPy's Predict).",
    calls_lm: true,
    keys: &[SIGNATURE, INPUTS],
    lower: |nl| {
        let sig = nl.signature()?;
        let (inputs, outputs) = (sig.inputs.clone(), sig.outputs.clone());
        Some(Lowered::new(
            Predict { signature: sig },
            outputs,
            Expects::Fields(inputs),
        ))
    },
};

pub const CHAIN_OF_THOUGHT_KIND: KindInfo = KindInfo {
    name: "chain_of_thought",
    summary: "One LM call with a `reasoning` output before the signature's outputs (DSPy's ChainOfThought).",
    calls_lm: true,
    keys: &[SIGNATURE, INPUTS],
    lower: lower_cot,
};

fn lower_cot(nl: &mut NodeLowering<'_, '_>) -> Option<Lowered> {
    let sig = nl.signature()?;
    let inputs = sig.inputs.clone();
    let outputs = sig.with_reasoning().outputs;
    Some(Lowered::new(
        ChainOfThought { signature: sig },
        outputs,
        Expects::Fields(inputs),
    ))
}

impl Kind for Predict {
    fn info(&self) -> &'static KindInfo {
        &PREDICT
    }
    fn predictors(&self, node: &str) -> Vec<OwnedPredictor> {
        vec![bare(node.to_string(), self.signature.clone())]
    }
    fn calls_per_run(&self) -> (u64, bool) {
        (1, true)
    }
    async fn run(
        &self,
        cx: &NodeRun<'_>,
        inputs: Map<String, Value>,
        trace: &mut Trace,
    ) -> Result<Map<String, Value>, RunError> {
        call_own(cx, &self.signature, &inputs, trace).await
    }
}

impl Kind for ChainOfThought {
    fn info(&self) -> &'static KindInfo {
        &CHAIN_OF_THOUGHT_KIND
    }
    fn predictors(&self, node: &str) -> Vec<OwnedPredictor> {
        vec![super::wrapped(
            node.to_string(),
            self.signature.with_reasoning(),
        )]
    }
    fn calls_per_run(&self) -> (u64, bool) {
        (1, true)
    }
    async fn run(
        &self,
        cx: &NodeRun<'_>,
        inputs: Map<String, Value>,
        trace: &mut Trace,
    ) -> Result<Map<String, Value>, RunError> {
        call_own(cx, &self.signature.with_reasoning(), &inputs, trace).await
    }
}

/// The node's one LM call: its own predictor (path = node name) with the
/// run's rollout id.
async fn call_own(
    cx: &NodeRun<'_>,
    signature: &Signature,
    inputs: &Map<String, Value>,
    trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    let ctx = cx.ctx;
    call_predictor(
        ctx,
        cx.overlay,
        cx.name,
        cx.name,
        signature,
        inputs,
        ctx.rollout_id,
        trace,
    )
    .await
}
