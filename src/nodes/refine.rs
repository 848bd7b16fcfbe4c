//! `refine` and `best_of_n`: re-run one predict/chain-of-thought signature
//! up to `n` times until its `reward` reaches `threshold` (DSPy's Refine and
//! BestOfN). Refine feeds advice about a failed attempt into the next one;
//! best_of_n does not. One typed node serves both, told apart by `advise`.
//! The attempts loop lives in `run::refine`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    wrapped, Expects, KeyDoc, Kind, KindInfo, Lowered, NodeRun, OwnedPredictor, CHAIN_OF_THOUGHT,
    INPUTS, SIGNATURE,
};
use crate::program::lower::NodeLowering;
use crate::program::RewardSpec;
use crate::run::RunError;
use crate::signature::Signature;
use crate::trace::Trace;

pub const DEFAULT_N: u32 = 3;
pub const DEFAULT_THRESHOLD: f64 = 1.0;

/// Re-run the signature until `reward` passes. Predictor path: `NODE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refine {
    pub signature: Signature,
    pub chain_of_thought: bool,
    pub n: u32,
    pub threshold: f64,
    pub reward: RewardSpec,
    /// Feed failure advice back (refine) or not (best_of_n).
    pub advise: bool,
}

const KEYS: &[KeyDoc] = &[
    SIGNATURE,
    INPUTS,
    CHAIN_OF_THOUGHT,
    KeyDoc {
        key: "n",
        required: false,
        schema: || json!({"type": "integer", "minimum": 1, "default": DEFAULT_N, "description": "Maximum attempts."}),
    },
    KeyDoc {
        key: "threshold",
        required: false,
        schema: || json!({"type": "number", "default": DEFAULT_THRESHOLD, "description": "Stop at the first attempt whose reward reaches this."}),
    },
    KeyDoc {
        key: "reward",
        required: true,
        schema: || json!({"$ref": "#/$defs/reward"}),
    },
];

pub const REFINE: KindInfo = KindInfo {
    name: "refine",
    summary: "Up to `n` attempts of the signature until `reward` reaches `threshold`, each retry told why the last failed (DSPy's Refine).",
    calls_lm: true,
    keys: KEYS,
    lower: |nl| lower(nl, true),
};

pub const BEST_OF_N: KindInfo = KindInfo {
    name: "best_of_n",
    summary: "Up to `n` independent attempts of the signature; the first reaching `threshold`, else the best, wins (DSPy's BestOfN).",
    calls_lm: true,
    keys: KEYS,
    lower: |nl| lower(nl, false),
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    chain_of_thought: Option<bool>,
    n: Option<u32>,
    threshold: Option<f64>,
}

fn lower(nl: &mut NodeLowering<'_, '_>, advise: bool) -> Option<Lowered> {
    let keys: Keys = nl.keys()?;
    let sig = nl.signature();
    let n = nl.positive(keys.n, "n", DEFAULT_N);
    let threshold = keys.threshold.unwrap_or(DEFAULT_THRESHOLD);
    if !threshold.is_finite() {
        nl.err(&nl.at("threshold"), "`threshold` must be a number", None);
    }
    let sig = sig?;
    let cot = keys.chain_of_thought.unwrap_or(false);
    let rendered = if cot {
        sig.with_reasoning()
    } else {
        sig.clone()
    };
    let reward = nl.reward(&rendered)?;
    let (inputs, outputs) = (sig.inputs.clone(), rendered.outputs);
    Some(Lowered::new(
        Refine {
            signature: sig,
            chain_of_thought: cot,
            n: n?,
            threshold,
            reward,
            advise,
        },
        outputs,
        Expects::Fields(inputs),
    ))
}

impl Refine {
    /// The signature as the predictor renders it.
    pub fn rendered(&self) -> Signature {
        if self.chain_of_thought {
            self.signature.with_reasoning()
        } else {
            self.signature.clone()
        }
    }
}

impl Kind for Refine {
    fn info(&self) -> &'static KindInfo {
        if self.advise {
            &REFINE
        } else {
            &BEST_OF_N
        }
    }
    fn predictors(&self, node: &str) -> Vec<OwnedPredictor> {
        vec![wrapped(node.to_string(), self.rendered())]
    }
    fn calls_per_run(&self) -> (u64, bool) {
        (self.n.max(1) as u64, false)
    }
    async fn run(
        &self,
        cx: &NodeRun<'_>,
        inputs: Map<String, Value>,
        trace: &mut Trace,
    ) -> Result<Map<String, Value>, RunError> {
        crate::run::refine::run_refine(cx.ctx, cx.program, cx.overlay, cx.name, self, inputs, trace)
            .await
    }
}
