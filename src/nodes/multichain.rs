//! `multi_chain_comparison`: DSPy's MultiChainComparison, `n`
//! chain-of-thought attempts then one call that compares them and answers.
//! Owns `NODE.attempt` and `NODE.compare`; the signatures are built in
//! `program::multichain`, the run in `run::multichain`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    wrapped, Expects, KeyDoc, Kind, KindInfo, Lowered, NodeRun, OwnedPredictor, INPUTS, SIGNATURE,
};
use crate::program::lower::NodeLowering;
use crate::program::multichain::{
    attempt_field, attempt_signature, compare_signature, RATIONALE_FIELD,
};
use crate::run::RunError;
use crate::signature::Signature;
use crate::trace::Trace;

pub const DEFAULT_N: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiChainComparison {
    pub signature: Signature,
    pub n: u32,
}

pub const INFO: KindInfo = KindInfo {
    name: "multi_chain_comparison",
    summary: "`n` chain-of-thought attempts, then one call that compares them and answers with a `rationale` (DSPy's MultiChainComparison).",
    calls_lm: true,
    keys: &[
        SIGNATURE,
        INPUTS,
        KeyDoc {
            key: "n",
            required: false,
            schema: || json!({"type": "integer", "minimum": 1, "default": DEFAULT_N, "description": "Attempts compared."}),
        },
    ],
    lower,
};

fn lower(nl: &mut NodeLowering<'_, '_>) -> Option<Lowered> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Keys {
        n: Option<u32>,
    }
    let keys: Keys = nl.keys()?;
    let kind_name = INFO.name;
    let sig = nl.signature();
    let n = nl.positive(keys.n, "n", DEFAULT_N);
    let sig = sig?;
    let n = n?;
    // The compare predictor adds these fields; a user field of the same
    // name would be silently shadowed.
    let sp = nl.at("signature");
    let mut ok = true;
    if sig.output(RATIONALE_FIELD).is_some() {
        nl.err(
            &sp,
            format!("a `{kind_name}` node adds a `{RATIONALE_FIELD}` output; the signature already has one"),
            Some(format!("rename the signature's `{RATIONALE_FIELD}` output")),
        );
        ok = false;
    }
    for f in &sig.inputs {
        if (1..=n).any(|i| attempt_field(i) == f.name) {
            nl.err(
                &sp,
                format!(
                    "a `{kind_name}` node adds inputs `reasoning_attempt_1`..`{}`; the signature already has `{}`",
                    attempt_field(n),
                    f.name
                ),
                Some(format!("rename the signature's `{}` input", f.name)),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let outputs = compare_signature(&sig, n).outputs;
    let inputs = sig.inputs.clone();
    Some(Lowered::new(
        MultiChainComparison { signature: sig, n },
        outputs,
        Expects::Fields(inputs),
    ))
}

impl Kind for MultiChainComparison {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }
    fn predictors(&self, node: &str) -> Vec<OwnedPredictor> {
        vec![
            wrapped(
                format!("{node}.attempt"),
                attempt_signature(&self.signature),
            ),
            wrapped(
                format!("{node}.compare"),
                compare_signature(&self.signature, self.n),
            ),
        ]
    }
    /// The comparison is skipped only when every attempt failed.
    fn calls_per_run(&self) -> (u64, bool) {
        (self.n.max(1) as u64 + 1, true)
    }
    async fn run(
        &self,
        cx: &NodeRun<'_>,
        inputs: Map<String, Value>,
        trace: &mut Trace,
    ) -> Result<Map<String, Value>, RunError> {
        crate::run::multichain::run_multichain(cx.ctx, cx.overlay, cx.name, self, inputs, trace)
            .await
    }
}
