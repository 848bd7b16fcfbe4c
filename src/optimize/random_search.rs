//! `bootstrap_random_search`: DSPy's BootstrapFewShotWithRandomSearch.
//!
//! Candidates, by seed: -3 the program as written (zero-shot), -2 labeled
//! demos only, -1 an unshuffled bootstrap with `max_bootstrapped_demos`
//! (these two are exactly what `labeled_few_shot` with k =
//! `max_labeled_demos` and `bootstrap_few_shot` produce under the same
//! `--seed`, so their LM calls are shared through the cache),
//! then seeds 0..`num_candidate_programs` each bootstrapping over a
//! seeded shuffle of the trainset with a seeded random number of demos in
//! [`min_num_samples`, `max_bootstrapped_demos`]. Every candidate is scored
//! on the valset as soon as it exists; the best score wins (the earlier
//! candidate on ties, so zero-shot wins when demos do not help), and the
//! search stops once a candidate reaches `stop_at_score` or the budget is
//! spent. The winner is therefore never worse on the valset than any
//! candidate evaluated.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

use super::bootstrap::{self, Params, DEFAULT_MAX_BOOTSTRAPPED, DEFAULT_MAX_LABELED};
use super::{labeled, Engine, Estimate, OptimizeError, Optimizer, Outcome, Scored, Shape};
use crate::data::Example;
use crate::overlay::Overlay;

crate::optimizer_settings! {
    /// `bootstrap_random_search`'s settings.
    pub struct RandomSearchSettings {
        /// Most demos made from successful teacher runs, per predictor.
        max_bootstrapped_demos: usize = DEFAULT_MAX_BOOTSTRAPPED;
        /// Most demos in all per predictor (labeled ones fill the rest); also the teacher's labeled demos.
        max_labeled_demos: usize = DEFAULT_MAX_LABELED;
        /// Passes over the trainset per bootstrap; later rounds retry failures at temperature 1.0.
        max_rounds: usize = 1, min 1;
        /// A run passes when its score reaches this (default: any non-zero score).
        metric_threshold: Option<f64> = None;
        /// Shuffled bootstraps after the zero-shot, labeled-only and unshuffled candidates.
        num_candidate_programs: usize = 16;
        /// Fewest bootstrapped demos a shuffled candidate draws.
        min_num_samples: usize = 1;
        /// Stop once a candidate reaches this valset score.
        stop_at_score: Option<f64> = None;
    }
}

/// The rng seed of candidate `seed` under the compile's `--seed`.
pub fn candidate_seed(base: u64, seed: i64) -> u64 {
    base.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(seed as u64)
}

/// One demo-set candidate of DSPy's scheme.
pub struct DemoCandidate {
    pub overlay: Overlay,
    pub origin: &'static str,
    /// (teacher runs, sum of their scores) for the unshuffled bootstrap.
    pub teacher: Option<(usize, f64)>,
}

/// Demo-set candidate `index` (-3 zero-shot, -2 labeled only, -1 an
/// unshuffled bootstrap, 0.. bootstraps over seeded shuffles with a seeded
/// demo count in [`min_samples`, max]): the one generator random search
/// and MIPRO share. `fixed_seed` seeds the labeled sample of -2 and -1
/// (random search uses `--seed` itself; MIPRO, as DSPy's
/// `create_n_fewshot_demo_sets`, the candidate's own seed).
pub async fn demo_candidate(
    engine: &Engine<'_>,
    index: i64,
    params: &Params,
    min_samples: usize,
    fixed_seed: Option<u64>,
) -> DemoCandidate {
    let own = candidate_seed(engine.seed, index);
    let fixed = fixed_seed.unwrap_or(own);
    match index {
        -3 => DemoCandidate {
            overlay: Overlay::default(),
            origin: "zero_shot",
            teacher: None,
        },
        -2 => {
            let picked = labeled::pick(engine.trainset, params.max_labeled_demos, fixed, true);
            DemoCandidate {
                overlay: labeled::overlay(engine.program, &picked),
                origin: "labeled_only",
                teacher: None,
            }
        }
        -1 => {
            let b = bootstrap::bootstrap(engine, engine.trainset, params, fixed).await;
            DemoCandidate {
                overlay: b.overlay,
                origin: "bootstrap",
                teacher: Some((b.attempted, b.score_sum)),
            }
        }
        _ => {
            let mut rng = ChaCha8Rng::seed_from_u64(own);
            let mut shuffled: Vec<Example> = engine.trainset.to_vec();
            shuffled.shuffle(&mut rng);
            let hi = params.max_bootstrapped_demos.max(min_samples);
            let size = rng.gen_range(min_samples..=hi);
            let p = Params {
                max_bootstrapped_demos: size,
                ..params.clone()
            };
            DemoCandidate {
                overlay: bootstrap::bootstrap(engine, &shuffled, &p, own)
                    .await
                    .overlay,
                origin: "shuffled_bootstrap",
                teacher: None,
            }
        }
    }
}

/// DSPy's BootstrapFewShotWithRandomSearch.
pub struct BootstrapRandomSearch;

#[async_trait::async_trait]
impl Optimizer for BootstrapRandomSearch {
    type Settings = RandomSearchSettings;
    const NAME: &'static str = "bootstrap_random_search";
    const SEARCHES: super::Searches = super::Searches::DEMOS;
    const DSPY: &'static str = "BootstrapFewShotWithRandomSearch";
    const ABOUT: &'static str =
        "the best of zero-shot, labeled-only and seeded bootstrap candidates";

    fn project(&self, s: &RandomSearchSettings, shape: &Shape<'_>) -> Estimate {
        let (t, v, n) = (
            shape.n_train as u64,
            shape.n_val as u64,
            s.num_candidate_programs as u64,
        );
        Estimate {
            phases: vec![
                ("bootstrapping".into(), t * s.max_rounds as u64 * (n + 1)),
                ("evaluating".into(), v * (n + 3)),
            ],
            extra_calls: 0,
            exact: false,
        }
    }

    async fn compile(
        &self,
        s: &RandomSearchSettings,
        engine: &Engine<'_>,
    ) -> Result<Outcome, OptimizeError> {
        search(engine, s).await
    }
}

async fn search(engine: &Engine<'_>, s: &RandomSearchSettings) -> Result<Outcome, OptimizeError> {
    let params = Params {
        max_bootstrapped_demos: s.max_bootstrapped_demos,
        max_labeled_demos: s.max_labeled_demos,
        max_rounds: s.max_rounds.max(1),
        metric_threshold: s.metric_threshold,
    };
    let mut best: Option<(Overlay, Scored)> = None;
    let mut baseline = None;
    let mut train_score = None;
    for seed in -3i64..s.num_candidate_programs as i64 {
        if engine.should_stop() {
            break;
        }
        let c = demo_candidate(engine, seed, &params, s.min_num_samples, Some(engine.seed)).await;
        if let Some((attempted, sum)) = c.teacher {
            if attempted > 0 {
                train_score = Some(sum / attempted as f64);
            }
        }
        let (overlay, origin) = (c.overlay, c.origin);
        if engine.should_stop() {
            // The bootstrap was cut short: its demos are not the candidate
            // this seed stands for, so it is not scored.
            break;
        }
        let Some(score) = engine.score_candidate(&overlay, origin, Some(seed)).await else {
            break;
        };
        if seed == -3 {
            baseline = Some(score.mean);
        }
        let better = best.as_ref().is_none_or(|(_, b)| score.mean > b.mean);
        if better {
            best = Some((overlay, score));
        }
        if s.stop_at_score.is_some_and(|t| score.mean >= t) {
            engine
                .reporter
                .note(&format!("candidate {seed} reached stop_at_score; stopping"));
            break;
        }
    }
    let Some((best, best_score)) = best else {
        return Err(OptimizeError::Budget(
            engine
                .budget_message()
                .unwrap_or_else(|| "no candidate was scored".into()),
        ));
    };
    Ok(Outcome {
        best,
        best_score: Some(best_score),
        baseline_score: baseline,
        train_score,
        plan: BTreeMap::new(),
        history: engine.history(),
    })
}
