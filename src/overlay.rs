//! Overlays: the per-predictor parameters optimizers choose.
//!
//! A program is immutable; what compiling changes is data layered on top of
//! it, keyed by stable predictor path: an instruction, demonstrations and
//! field prefix/description overrides. Candidates in a search are overlays;
//! an artifact stores the winning one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::signature::Signature;

/// One demonstration: field name -> value. Incomplete demos (some outputs
/// missing) are allowed and rendered as DSPy does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Demo {
    pub fields: Map<String, Value>,
    /// True for bootstrapped demos (produced by a successful trace), false
    /// for labeled ones taken from the dataset (DSPy's `augmented`).
    #[serde(default)]
    pub augmented: bool,
}

/// Field text overrides (DSPy lets optimizers change prefixes/descriptions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The optimizable state of one predictor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PredictorState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default)]
    pub demos: Vec<Demo>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldOverride>,
    /// When set, demos are chosen per input by similarity (kNN few-shot)
    /// instead of the fixed `demos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn: Option<KnnDemos>,
}

impl PredictorState {
    /// The signature with this state's instruction and field overrides applied.
    pub fn apply(&self, sig: &Signature) -> Signature {
        let mut sig = sig.clone();
        if let Some(i) = &self.instructions {
            sig.instructions = Some(i.clone());
        }
        for f in sig.inputs.iter_mut().chain(sig.outputs.iter_mut()) {
            if let Some(o) = self.fields.get(&f.name) {
                if o.prefix.is_some() {
                    f.prefix = o.prefix.clone();
                }
                if o.description.is_some() {
                    f.description = o.description.clone();
                }
            }
        }
        sig
    }
}

/// Per-predictor state by path. Predictors absent from the map run as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overlay {
    pub predictors: BTreeMap<String, PredictorState>,
}

impl Overlay {
    pub fn get(&self, path: &str) -> Option<&PredictorState> {
        self.predictors.get(path)
    }

    pub fn state(&self, path: &str) -> PredictorState {
        self.predictors.get(path).cloned().unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.predictors
            .values()
            .all(|s| s.instructions.is_none() && s.demos.is_empty() && s.fields.is_empty())
    }
}

/// kNN few-shot state: demos are chosen per input from `pool` by similarity
/// of the input fields (see `optimize::knn`). Stored whole in the artifact so
/// the choice is reproducible.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KnnDemos {
    pub k: usize,
    /// Input fields whose text is compared.
    pub input_fields: Vec<String>,
    pub pool: Vec<Demo>,
}
