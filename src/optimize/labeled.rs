//! `labeled_few_shot`: `k` training examples as demos for every predictor
//! (DSPy's LabeledFewShot, k=16, sampled with a seed).
//!
//! A labeled demo is the example's inputs and expected outputs restricted
//! to the fields of the predictor's signature; a predictor that shares no
//! input and no output with the dataset (a middle stage of a pipeline) gets
//! none, which is what DSPy's adapter does with such demos anyway (it drops
//! demos without at least one input and one output field).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Map;
use std::collections::BTreeMap;

use super::{Engine, Estimate, OptimizeError, Optimizer, Outcome, Shape};
use crate::data::Example;
use crate::overlay::{Demo, Overlay};
use crate::program::Program;
use crate::signature::Signature;

/// The labeled demo `ex` gives a predictor with signature `sig`, if any.
pub fn demo_for(sig: &Signature, ex: &Example) -> Option<Demo> {
    let mut fields = Map::new();
    let mut has_in = false;
    let mut has_out = false;
    for f in &sig.inputs {
        if let Some(v) = ex.inputs.get(&f.name).or_else(|| ex.expected.get(&f.name)) {
            fields.insert(f.name.clone(), v.clone());
            has_in = true;
        }
    }
    for f in &sig.outputs {
        if let Some(v) = ex.expected.get(&f.name) {
            fields.insert(f.name.clone(), v.clone());
            has_out = true;
        }
    }
    (has_in && has_out).then_some(Demo {
        fields,
        augmented: false,
    })
}

/// `k` examples: a seeded sample (`sample`) or the first `k`.
pub fn pick(examples: &[Example], k: usize, seed: u64, sample: bool) -> Vec<&Example> {
    let mut v: Vec<&Example> = examples.iter().collect();
    if sample {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        v.shuffle(&mut rng);
    }
    v.truncate(k);
    v
}

/// The overlay giving every predictor labeled demos from `examples`.
pub fn overlay(program: &Program, examples: &[&Example]) -> Overlay {
    let mut o = Overlay::default();
    for p in program.predictors() {
        let demos: Vec<Demo> = examples
            .iter()
            .filter_map(|ex| demo_for(&p.signature, ex))
            .collect();
        if !demos.is_empty() {
            o.predictors.entry(p.path.clone()).or_default().demos = demos;
        }
    }
    o
}

crate::optimizer_settings! {
    /// `labeled_few_shot`'s settings.
    pub struct LabeledSettings {
        /// Labeled demos per predictor, sampled with the seed.
        k: usize = 16;
    }
}

/// DSPy's LabeledFewShot.
pub struct LabeledFewShot;

#[async_trait::async_trait]
impl Optimizer for LabeledFewShot {
    type Settings = LabeledSettings;
    const NAME: &'static str = "labeled_few_shot";
    const SEARCHES: super::Searches = super::Searches::DEMOS;
    const DSPY: &'static str = "LabeledFewShot";
    const ABOUT: &'static str = "k training examples as demos";

    fn project(&self, _: &LabeledSettings, shape: &Shape<'_>) -> Estimate {
        Estimate::valset_only(shape)
    }

    async fn compile(
        &self,
        s: &LabeledSettings,
        engine: &Engine<'_>,
    ) -> Result<Outcome, OptimizeError> {
        let chosen = pick(engine.trainset, s.k, engine.seed, true);
        let best = overlay(engine.program, &chosen);
        Ok(engine.score_only(best, "labeled", BTreeMap::new()).await)
    }
}
