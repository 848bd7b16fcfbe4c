//! A test-only optimizer proving that an optimizer is one file plus one
//! registry line: with nothing else it appears in dispatch, `--list`, the
//! settings checks, the dry-run projection and the lineage.

use std::collections::BTreeMap;

use super::{labeled, Engine, Estimate, OptimizeError, Optimizer, Outcome, Shape};

crate::optimizer_settings! {
    /// `first_examples`' settings.
    pub struct FirstSettings {
        /// How many of the first training examples become demos.
        n: usize = 1, min 1, max 8;
    }
}

/// The first `n` training examples as demos, unscored search aside.
pub struct FirstExample;

#[async_trait::async_trait]
impl Optimizer for FirstExample {
    type Settings = FirstSettings;
    const NAME: &'static str = "first_examples";
    const DSPY: &'static str = "(none: test only)";
    const ABOUT: &'static str = "the first n training examples as demos";

    fn project(&self, _: &FirstSettings, shape: &Shape<'_>) -> Estimate {
        Estimate {
            phases: vec![("evaluating".into(), shape.n_val as u64)],
            extra_calls: 0,
            exact: true,
        }
    }

    async fn compile(
        &self,
        s: &FirstSettings,
        engine: &Engine<'_>,
    ) -> Result<Outcome, OptimizeError> {
        let chosen = labeled::pick(engine.trainset, s.n, 0, false);
        let best = labeled::overlay(engine.program, &chosen);
        let best_score = engine.score_candidate(&best, "first", None).await;
        Ok(Outcome {
            best,
            best_score,
            baseline_score: None,
            train_score: None,
            plan: BTreeMap::new(),
            history: engine.history(),
        })
    }
}
