//! `bootstrap_few_shot`: demos made from the program's own successful runs
//! (DSPy's BootstrapFewShot).
//!
//! The teacher is the program with up to `max_labeled_demos` labeled demos.
//! It runs on the training examples in order (each time without the demo of
//! the example it is answering); a run whose outputs pass the metric
//! (`score >= metric_threshold` when set, else any non-zero score, as DSPy
//! treats the metric's truthiness) yields one demo for *every* predictor
//! that ran in its trace, keyed by predictor path: the step's inputs plus
//! its outputs (reasoning included). Collection stops at
//! `max_bootstrapped_demos` successful examples. Rounds after the first
//! retry the examples that failed at temperature 1.0 with a distinct
//! rollout id per round, so their requests (and cache entries) differ.
//! Each predictor's final demos are its bootstrapped demos followed by
//! labeled demos sampled (seeded) from the examples not bootstrapped, up to
//! `max_labeled_demos` in all. Runs go in fixed batches of eight (run with
//! the engine's concurrency); the first successes in training order are
//! kept, so the result depends neither on timing nor on `--concurrency`.

use futures::StreamExt;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

use super::labeled::{self, demo_for};
use super::{Engine, Estimate, OptimizeError, Optimizer, Outcome, Shape};
use crate::data::Example;
use crate::eval::ExampleResult;
use crate::overlay::{Demo, Overlay};

/// Teacher runs per batch. Fixed rather than the concurrency so that which
/// examples run (and so every request and the artifact) does not depend on
/// `--concurrency`.
const BATCH: usize = 8;

/// Defaults shared with `bootstrap_random_search` (DSPy's).
pub const DEFAULT_MAX_BOOTSTRAPPED: usize = 4;
pub const DEFAULT_MAX_LABELED: usize = 16;

crate::optimizer_settings! {
    /// `bootstrap_few_shot`'s settings.
    pub struct BootstrapSettings {
        /// Most demos made from successful teacher runs, per predictor.
        max_bootstrapped_demos: usize = DEFAULT_MAX_BOOTSTRAPPED;
        /// Most demos in all per predictor (labeled ones fill the rest); also the teacher's labeled demos.
        max_labeled_demos: usize = DEFAULT_MAX_LABELED;
        /// Passes over the trainset; later rounds retry failures at temperature 1.0.
        max_rounds: usize = 1, min 1;
        /// A run passes when its score reaches this (default: any non-zero score).
        metric_threshold: Option<f64> = None;
    }
}

/// What one bootstrap run is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub max_bootstrapped_demos: usize,
    pub max_labeled_demos: usize,
    pub max_rounds: usize,
    pub metric_threshold: Option<f64>,
}

impl From<&BootstrapSettings> for Params {
    fn from(s: &BootstrapSettings) -> Params {
        Params {
            max_bootstrapped_demos: s.max_bootstrapped_demos,
            max_labeled_demos: s.max_labeled_demos,
            max_rounds: s.max_rounds.max(1),
            metric_threshold: s.metric_threshold,
        }
    }
}

impl Params {
    fn passes(&self, r: &ExampleResult) -> bool {
        r.error.is_none()
            && match self.metric_threshold {
                Some(t) => r.score >= t,
                None => r.score != 0.0,
            }
    }
}

/// What one bootstrap produced.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub overlay: Overlay,
    /// Teacher runs made and the sum of their scores (for the train score).
    pub attempted: usize,
    pub score_sum: f64,
    /// Examples whose trace became demos.
    pub bootstrapped: usize,
}

/// Demos from one successful trace: the last call of each predictor path.
fn trace_demos(r: &ExampleResult) -> BTreeMap<String, Demo> {
    let mut out = BTreeMap::new();
    if let Some(trace) = &r.trace {
        for step in &trace.steps {
            if let (Some(path), Some(outputs)) = (&step.predictor, &step.outputs) {
                let mut fields: Map<String, Value> = step.inputs.clone();
                for (k, v) in outputs {
                    fields.insert(k.clone(), v.clone());
                }
                out.insert(
                    path.clone(),
                    Demo {
                        fields,
                        augmented: true,
                    },
                );
            }
        }
    }
    out
}

/// The teacher overlay without the demos that `ex` itself gives.
fn teacher_without(engine: &Engine<'_>, teacher: &Overlay, ex: &Example) -> Overlay {
    let mut t = teacher.clone();
    for p in engine.program.predictors() {
        if let (Some(own), Some(st)) = (demo_for(&p.signature, ex), t.predictors.get_mut(&p.path)) {
            st.demos.retain(|d| d.fields != own.fields);
        }
    }
    t
}

/// Bootstrap over `trainset` (in the given order). `label_seed` seeds the
/// teacher's labeled sample and the labeled fill-in.
pub async fn bootstrap(
    engine: &Engine<'_>,
    trainset: &[Example],
    params: &Params,
    label_seed: u64,
) -> Bootstrapped {
    let labeled = labeled::pick(trainset, params.max_labeled_demos, label_seed, true);
    let teacher = labeled::overlay(engine.program, &labeled);
    let mut augmented: BTreeMap<String, Vec<Demo>> = BTreeMap::new();
    let mut done: HashSet<usize> = HashSet::new();
    let (mut attempted, mut score_sum) = (0usize, 0.0f64);
    engine
        .reporter
        .phase("bootstrapping", trainset.len() * params.max_rounds);
    'rounds: for round in 0..params.max_rounds {
        let mut ctx = engine.teacher_ctx();
        if round > 0 {
            ctx.temperature = 1.0;
            ctx.rollout_id = Some(round as u64);
        }
        let todo: Vec<usize> = (0..trainset.len()).filter(|i| !done.contains(i)).collect();
        for batch in todo.chunks(BATCH) {
            if done.len() >= params.max_bootstrapped_demos || engine.should_stop() {
                break 'rounds;
            }
            // Collected first: a lazy `map` closure held across the await
            // makes the future's lifetimes too specific to be `Send`.
            let runs: Vec<_> = batch
                .iter()
                .map(|&i| {
                    let ex = &trainset[i];
                    let t = teacher_without(engine, &teacher, ex);
                    let ctx = &ctx;
                    async move {
                        (
                            i,
                            engine
                                .run_examples(ctx, &t, std::slice::from_ref(ex), 1)
                                .await,
                        )
                    }
                })
                .collect();
            let results: Vec<_> = futures::stream::iter(runs)
                .buffered(engine.concurrency)
                .collect()
                .await;
            for (i, rs) in results {
                let Some(r) = rs.into_iter().next() else {
                    continue;
                };
                attempted += 1;
                score_sum += r.score;
                if done.len() < params.max_bootstrapped_demos && params.passes(&r) {
                    done.insert(i);
                    for (path, d) in trace_demos(&r) {
                        augmented.entry(path).or_default().push(d);
                    }
                }
            }
        }
    }
    engine.reporter.phase_done();

    // Labeled fill-in from the examples that were not bootstrapped.
    let mut rest: Vec<&Example> = (0..trainset.len())
        .filter(|i| !done.contains(i))
        .map(|i| &trainset[i])
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(label_seed.wrapping_add(1));
    rest.shuffle(&mut rng);
    let mut overlay = Overlay::default();
    for p in engine.program.predictors() {
        let mut demos: Vec<Demo> = augmented.remove(&p.path).unwrap_or_default();
        demos.truncate(params.max_bootstrapped_demos);
        let room = params.max_labeled_demos.saturating_sub(demos.len());
        demos.extend(
            rest.iter()
                .filter_map(|ex| demo_for(&p.signature, ex))
                .take(room),
        );
        if !demos.is_empty() {
            overlay.predictors.entry(p.path.clone()).or_default().demos = demos;
        }
    }
    Bootstrapped {
        overlay,
        attempted,
        score_sum,
        bootstrapped: done.len(),
    }
}

/// DSPy's BootstrapFewShot.
pub struct BootstrapFewShot;

#[async_trait::async_trait]
impl Optimizer for BootstrapFewShot {
    type Settings = BootstrapSettings;
    const NAME: &'static str = "bootstrap_few_shot";
    const SEARCHES: super::Searches = super::Searches::DEMOS;
    const DSPY: &'static str = "BootstrapFewShot";
    const ABOUT: &'static str = "demos from the program's own successful runs";

    fn project(&self, s: &BootstrapSettings, shape: &Shape<'_>) -> Estimate {
        // Every example runs in round 1 unless enough demos are found
        // first; later rounds rerun only the failures.
        Estimate {
            phases: vec![
                (
                    "bootstrapping".into(),
                    (shape.n_train * s.max_rounds) as u64,
                ),
                ("evaluating".into(), shape.n_val as u64),
            ],
            extra_calls: 0,
            exact: s.max_bootstrapped_demos >= shape.n_train && s.max_rounds == 1,
        }
    }

    async fn compile(
        &self,
        s: &BootstrapSettings,
        engine: &Engine<'_>,
    ) -> Result<Outcome, OptimizeError> {
        let params = Params::from(s);
        let b = bootstrap(engine, engine.trainset, &params, engine.seed).await;
        let best_score = engine.score_candidate(&b.overlay, "bootstrap", None).await;
        let mut plan = BTreeMap::new();
        plan.insert("bootstrapped".into(), b.bootstrapped.into());
        Ok(Outcome {
            best: b.overlay,
            best_score,
            baseline_score: None,
            train_score: (b.attempted > 0).then(|| b.score_sum / b.attempted as f64),
            plan,
            history: engine.history(),
        })
    }
}
