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
use serde_json::Value;
use std::collections::BTreeMap;

use super::bootstrap::{self, Params};
use super::{labeled, Engine, OptimizeError, Outcome, Scored, Settings};
use crate::data::Example;
use crate::overlay::Overlay;

/// The rng seed of candidate `seed` under the compile's `--seed`.
fn candidate_seed(base: u64, seed: i64) -> u64 {
    base.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(seed as u64)
}

pub async fn compile(engine: &Engine<'_>, settings: &Settings) -> Result<Outcome, OptimizeError> {
    let mut keys = Params::KEYS.to_vec();
    keys.extend(["num_candidate_programs", "min_num_samples", "stop_at_score"]);
    settings.check_known(&keys)?;
    let params = Params::from_settings(settings)?;
    let num_candidates = settings.usize("num_candidate_programs", 16)?;
    let min_samples = settings.usize("min_num_samples", 1)?;
    let stop_at = settings.opt_f64("stop_at_score")?;
    if engine.trainset.is_empty() {
        return Err(OptimizeError::EmptyTrainset(
            "bootstrap_random_search".into(),
        ));
    }

    let mut best: Option<(Overlay, Scored)> = None;
    let mut baseline = None;
    let mut train_score = None;
    for seed in -3i64..num_candidates as i64 {
        if engine.exhausted() {
            break;
        }
        let (overlay, origin) = match seed {
            -3 => (Overlay::default(), "zero_shot"),
            -2 => {
                let picked =
                    labeled::pick(engine.trainset, params.max_labeled_demos, engine.seed, true);
                (labeled::overlay(engine.program, &picked), "labeled_only")
            }
            -1 => {
                let b = bootstrap::bootstrap(engine, engine.trainset, &params, engine.seed).await;
                if b.attempted > 0 {
                    train_score = Some(b.score_sum / b.attempted as f64);
                }
                (b.overlay, "bootstrap")
            }
            s => {
                let cs = candidate_seed(engine.seed, s);
                let mut rng = ChaCha8Rng::seed_from_u64(cs);
                let mut shuffled: Vec<Example> = engine.trainset.to_vec();
                shuffled.shuffle(&mut rng);
                let hi = params.max_bootstrapped_demos.max(min_samples);
                let size = rng.gen_range(min_samples..=hi);
                let p = Params {
                    max_bootstrapped_demos: size,
                    ..params.clone()
                };
                (
                    bootstrap::bootstrap(engine, &shuffled, &p, cs)
                        .await
                        .overlay,
                    "shuffled_bootstrap",
                )
            }
        };
        if engine.exhausted() {
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
        if let Some((_, b)) = &best {
            if let Some(r) = engine.history().last() {
                engine.reporter.candidate(r, b.mean);
            }
        }
        if stop_at.is_some_and(|t| score.mean >= t) {
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
    let mut s = BTreeMap::new();
    params.record(&mut s);
    s.insert("num_candidate_programs".into(), num_candidates.into());
    s.insert("min_num_samples".into(), min_samples.into());
    s.insert(
        "stop_at_score".into(),
        stop_at.map(Value::from).unwrap_or(Value::Null),
    );
    Ok(Outcome {
        best,
        best_score: Some(best_score),
        baseline_score: baseline,
        train_score,
        settings: s,
        history: engine.history(),
    })
}
