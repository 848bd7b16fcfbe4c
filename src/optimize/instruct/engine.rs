//! Binds the instruction searches to the compile engine: an [`Evaluator`]
//! over the engine's trainset/valset (every run goes through the engine, so
//! the response cache, budget and stop checks, usage tallies, progress bars
//! and the best-so-far are shared with the few-shot optimizers), the
//! proposer on the engine's prompt LM, MIPRO's demo-set candidates from the
//! generator random search uses, and [`finish`], which turns a
//! [`SearchResult`] into an optimizer [`Outcome`] for the artifact.

use std::collections::BTreeMap;

use crate::artifact::CandidateRecord;
use crate::optimize::{Engine, OptimizeError, Outcome};
use crate::overlay::Overlay;

use super::propose::Proposer;
use super::{Evaluator, ExampleScore, SearchError, SearchResult, Split};

/// Scores overlays through the compile engine.
pub struct EngineEvaluator<'e, 'a> {
    pub engine: &'e Engine<'a>,
}

#[async_trait::async_trait]
impl Evaluator for EngineEvaluator<'_, '_> {
    async fn evaluate(
        &self,
        overlay: &Overlay,
        split: Split,
        indices: &[usize],
    ) -> Result<Vec<ExampleScore>, SearchError> {
        // One progress phase per evaluation: a whole-valset score shows as
        // `evaluating`, a sample (GEPA's minibatch, MIPRO's trial) as `minibatch`.
        let full = split == Split::Val && indices.len() == self.engine.valset.len();
        let reporter = self.engine.reporter;
        reporter.phase(if full { "evaluating" } else { "minibatch" }, indices.len());
        let results = self.engine.evaluate(overlay, split, indices).await;
        reporter.phase_done();
        // A budget stop returns fewer results: pad with zeros so callers see
        // one score per index (they stop proposing once `exhausted()`).
        let mut out: Vec<ExampleScore> = results
            .into_iter()
            .map(|r| ExampleScore {
                score: r.score,
                feedback: r.feedback,
                inputs: r.inputs,
                expected: r.expected,
                outputs: r.outputs,
                error: r.error,
                trace: r.trace,
            })
            .collect();
        out.resize_with(indices.len(), ExampleScore::default);
        Ok(out)
    }

    fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.engine.trainset.len(),
            Split::Val => self.engine.valset.len(),
        }
    }

    fn exhausted(&self) -> bool {
        self.engine.should_stop()
    }

    fn candidate(&self, record: &CandidateRecord) {
        self.engine.report_candidate(record);
    }

    fn checkpointing(&self) -> bool {
        self.engine.checkpointing()
    }

    fn checkpoint(&self, unit: &str, done: usize, total: usize, state: serde_json::Value) {
        self.engine.save_checkpoint(unit, done, total, state);
    }
}

/// The proposer on the engine's prompt LM at `temperature`.
pub fn proposer(engine: &Engine<'_>, temperature: f64) -> Proposer {
    let mut ctx = engine.prompt_ctx();
    ctx.temperature = temperature as f32;
    Proposer::new(ctx)
}

/// The optimizer outcome of a finished search: its history joins the
/// engine's, and the winner is scored on the valset through the engine's
/// score cache for the lineage's interval.
pub async fn finish(
    engine: &Engine<'_>,
    optimizer: &str,
    search: Result<SearchResult, SearchError>,
) -> Result<Outcome, OptimizeError> {
    let result = search.map_err(|e| OptimizeError::Search {
        optimizer: optimizer.to_string(),
        message: e.to_string(),
    })?;
    engine.adopt_history(result.history);
    let best_score = engine.score(&result.best).await;
    Ok(Outcome {
        best: result.best,
        best_score,
        baseline_score: Some(result.baseline_score),
        train_score: None,
        plan: result.plan,
        history: engine.history(),
    })
}

/// MIPROv2's demo-set candidates, DSPy's `create_n_fewshot_demo_sets`
/// scheme from the generator random search uses
/// ([`crate::optimize::random_search::demo_candidate`]): set 0 zero-shot,
/// set 1 labeled demos only, set 2 an unshuffled bootstrap, then bootstraps
/// over seeded shuffles with a seeded number of demos in [1,
/// max_bootstrapped_demos]. Returns `n` sets (fewer if the search must stop).
pub async fn demo_sets(
    engine: &Engine<'_>,
    n: usize,
    max_bootstrapped: usize,
    max_labeled: usize,
) -> Vec<BTreeMap<String, Vec<crate::overlay::Demo>>> {
    use crate::optimize::{bootstrap::Params, random_search::demo_candidate};
    let params = Params {
        max_bootstrapped_demos: max_bootstrapped,
        max_labeled_demos: max_labeled,
        max_rounds: 1,
        metric_threshold: None,
    };
    let mut sets = Vec::new();
    for index in -3i64..(n as i64 - 3) {
        if engine.should_stop() {
            break;
        }
        let c = demo_candidate(engine, index, &params, 1, None).await;
        sets.push(
            engine
                .program
                .predictors()
                .iter()
                .map(|p| (p.path.clone(), c.overlay.state(&p.path).demos))
                .collect(),
        );
    }
    sets
}

/// The first `n` training examples as text, for proposers that ground
/// instructions in the data (MIPRO's dataset summary, COPRO's examples).
pub fn train_view(engine: &Engine<'_>, n: usize) -> Vec<String> {
    engine
        .trainset
        .iter()
        .take(n)
        .map(|ex| {
            format!(
                "inputs: {} -> expected: {}",
                serde_json::Value::Object(ex.inputs.clone()),
                serde_json::Value::Object(ex.expected.clone())
            )
        })
        .collect()
}
