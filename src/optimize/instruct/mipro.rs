//! MIPROv2: grounded instruction proposals plus a Bayesian (TPE) search over
//! which instruction and which demo set each predictor uses, DSPy's semantics.
//!
//! 1. Demo-set candidates come from the few-shot machinery (index 0 is the
//!    first set given, normally zero-shot).
//! 2. For every predictor the proposer writes instructions grounded in a
//!    dataset summary, a description of the program and of the module, demos
//!    from one demo set and a randomly drawn tip; the original instruction is
//!    candidate 0.
//! 3. A seeded TPE proposes (instruction, demo set) per predictor; each trial
//!    is scored on a random minibatch of the validation set when that set has
//!    more than 50 examples (else on all of it); every
//!    `minibatch_full_eval_steps + 1` trials and at the end, the combination
//!    with the best mean minibatch score not yet fully evaluated is scored on
//!    the whole validation set. The best full score wins; the starting program
//!    is scored in full first, so the result never scores below it.
//!
//! `auto` presets follow DSPy: light/medium/heavy = 6/12/18 candidates and a
//! validation sample of 100/300/1000; trials = max(2·v·log2(n), 1.5·n) where
//! v counts the variables (predictors, doubled when demos are searched).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::BTreeMap;

use crate::artifact::CandidateRecord;
use crate::optimize::settings::AutoPreset;
use crate::optimize::{Engine, Estimate, OptimizeError, Optimizer, Outcome, Shape};
use crate::overlay::{Demo, Overlay};
use crate::program::Program;

use super::engine::{demo_sets, finish, proposer, train_view, EngineEvaluator};
use super::propose::{describe_module, describe_program, Grounding, Proposer, TIPS};
use super::tpe::Tpe;
use super::{
    current_instruction, instruction_diff, mean, record as new_record, Evaluator, History,
    SearchError, SearchResult, Split,
};

crate::optimizer_settings! {
    /// MIPROv2's settings (DSPy's defaults).
    pub struct MiproSettings {
        /// Preset for candidates and validation sample (light 6/100, medium 12/300, heavy 18/1000); `none` uses `num_candidates` and the whole valset.
        auto: AutoPreset = AutoPreset::Light;
        /// Instruction and demo-set candidates when `auto` is none.
        num_candidates: usize = 6, min 1;
        /// TPE trials (default: DSPy's formula from the candidates and predictors).
        num_trials: Option<usize> = None;
        /// Validation examples per trial when the sample exceeds 50.
        minibatch_size: usize = 35, min 1;
        /// A full evaluation of the best-averaging trial every this many trials.
        minibatch_full_eval_steps: usize = 5, min 1;
        /// The proposer's sampling temperature.
        init_temperature: f64 = 0.5, min 0.0, max 2.0;
        /// Most bootstrapped demos per demo-set candidate.
        max_bootstrapped_demos: usize = 4;
        /// Most labeled demos per demo-set candidate (both 0: instructions only).
        max_labeled_demos: usize = 4;
    }
}

impl MiproConfig {
    pub fn new(s: &MiproSettings, seed: u64) -> Self {
        MiproConfig {
            auto: s.auto.preset(),
            num_candidates: s.num_candidates,
            num_trials: s.num_trials,
            minibatch_size: s.minibatch_size,
            minibatch_full_eval_steps: s.minibatch_full_eval_steps,
            seed,
        }
    }
    /// Demo-set candidates to generate (0: instructions only).
    pub fn demo_set_count(&self, s: &MiproSettings) -> usize {
        if s.max_bootstrapped_demos + s.max_labeled_demos == 0 {
            0
        } else {
            self.auto
                .map(|a| a.settings().0)
                .unwrap_or(self.num_candidates)
        }
    }
}

/// DSPy's MIPROv2.
pub struct Mipro;

#[async_trait::async_trait]
impl Optimizer for Mipro {
    type Settings = MiproSettings;
    const NAME: &'static str = "mipro";
    const DSPY: &'static str = "MIPROv2";
    const ABOUT: &'static str =
        "grounded instruction proposals and a TPE search over instructions x demo sets";
    const PROMPT_LM: bool = true;

    fn project(&self, s: &MiproSettings, shape: &Shape<'_>) -> Estimate {
        let cfg = MiproConfig::new(s, 0);
        let n_sets = cfg.demo_set_count(s);
        let p = shape.program.predictors().len() as u64;
        let pl = plan(shape.program, &cfg, shape.n_val, n_sets);
        let mut phases = Vec::new();
        if n_sets > 2 {
            phases.push((
                "bootstrapping".into(),
                shape.n_train as u64 * (n_sets as u64 - 2),
            ));
        }
        let proposals = 1 + p * (pl.instruct_candidates.saturating_sub(1) as u64);
        let vv = pl.val_indices.len() as u64;
        let per_trial = if pl.minibatch {
            cfg.minibatch_size.min(pl.val_indices.len()) as u64
        } else {
            vv
        };
        let fulls = if pl.minibatch {
            pl.full_evals as u64 * vv
        } else {
            0
        };
        phases.push((
            "evaluating".into(),
            2 * vv + pl.trials as u64 * per_trial + fulls,
        ));
        Estimate {
            phases,
            extra_calls: proposals,
            exact: false,
        }
    }

    async fn compile(
        &self,
        s: &MiproSettings,
        engine: &Engine<'_>,
    ) -> Result<Outcome, OptimizeError> {
        let cfg = MiproConfig::new(s, engine.seed);
        let n_sets = cfg.demo_set_count(s);
        let resume: Option<MiproState> = engine.resume_state(Self::NAME)?;
        let sets = if n_sets == 0 || resume.is_some() {
            Vec::new()
        } else {
            demo_sets(
                engine,
                n_sets,
                s.max_bootstrapped_demos,
                s.max_labeled_demos,
            )
            .await
        };
        let eval = EngineEvaluator { engine };
        let proposer = proposer(engine, s.init_temperature);
        let view = train_view(engine, 10);
        let search = mipro(
            engine.program,
            &Overlay::default(),
            &sets,
            &view,
            &eval,
            &proposer,
            &cfg,
            resume,
        )
        .await;
        finish(engine, Self::NAME, search).await
    }
}

/// Below this many validation examples trials are scored on all of them.
pub const MIN_MINIBATCH_SIZE: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auto {
    Light,
    Medium,
    Heavy,
}

impl Auto {
    pub fn parse(s: &str) -> Option<Auto> {
        match s {
            "light" => Some(Auto::Light),
            "medium" => Some(Auto::Medium),
            "heavy" => Some(Auto::Heavy),
            _ => None,
        }
    }
    /// (candidates, validation sample size), as DSPy's AUTO_RUN_SETTINGS.
    pub fn settings(self) -> (usize, usize) {
        match self {
            Auto::Light => (6, 100),
            Auto::Medium => (12, 300),
            Auto::Heavy => (18, 1000),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MiproConfig {
    pub auto: Option<Auto>,
    /// Candidates (instructions and demo sets) when `auto` is off.
    pub num_candidates: usize,
    pub num_trials: Option<usize>,
    pub minibatch_size: usize,
    pub minibatch_full_eval_steps: usize,
    pub seed: u64,
}

/// DSPy's trial count: max(2·v·log2(n), 1.5·n).
pub fn num_trials(num_predictors: usize, with_demos: bool, n: usize) -> usize {
    let vars = num_predictors * if with_demos { 2 } else { 1 };
    let n = n.max(2) as f64;
    (2.0 * vars as f64 * n.log2()).max(1.5 * n) as usize
}

/// The plan a run will follow (also used for `--dry-run`).
#[derive(Debug, Clone)]
pub struct MiproPlan {
    pub instruct_candidates: usize,
    pub trials: usize,
    pub val_indices: Vec<usize>,
    pub minibatch: bool,
    pub full_evals: usize,
}

pub fn plan(program: &Program, cfg: &MiproConfig, val_len: usize, demo_sets: usize) -> MiproPlan {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let with_demos = demo_sets > 1;
    let (n, val_size) = match cfg.auto {
        Some(a) => a.settings(),
        None => (cfg.num_candidates.max(1), val_len),
    };
    let mut val_indices: Vec<usize> = (0..val_len).collect();
    if val_size < val_len {
        val_indices.shuffle(&mut rng);
        val_indices.truncate(val_size);
        val_indices.sort_unstable();
    }
    let instruct = if cfg.auto.is_some() && with_demos {
        (n / 2).max(1)
    } else {
        n
    };
    let trials = cfg
        .num_trials
        .unwrap_or_else(|| num_trials(program.predictors().len(), with_demos, n));
    let minibatch = val_indices.len() > MIN_MINIBATCH_SIZE;
    let full_evals = if minibatch {
        trials / (cfg.minibatch_full_eval_steps + 1) + 1
    } else {
        trials
    };
    MiproPlan {
        instruct_candidates: instruct,
        trials,
        val_indices,
        minibatch,
        full_evals,
    }
}

/// Where a MIPROv2 search stands after its proposals and each trial: what
/// a checkpoint holds. The demo sets and instruction candidates are kept
/// verbatim (they cost bootstrapping runs and proposals); the trials, the
/// samplers' positions and the best so far let the trial loop continue
/// with the draws an uninterrupted run would make.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiproState {
    pub demo_sets: Vec<BTreeMap<String, Vec<Demo>>>,
    pub instructions: Vec<Vec<String>>,
    pub baseline_score: f64,
    pub best: Overlay,
    pub best_score: f64,
    pub tpe_trials: Vec<(Vec<usize>, f64)>,
    pub tpe_pos: u64,
    pub rng_pos: u64,
    pub minibatch_scores: Vec<(Vec<usize>, Vec<f64>)>,
    pub fully_evaluated: Vec<(Vec<usize>, f64)>,
    pub history: Vec<CandidateRecord>,
    pub trials_done: usize,
}

impl MiproState {
    /// The search dimensions (instruction and demo-set choices per predictor).
    fn dims(&self) -> Vec<usize> {
        let mut dims = Vec::new();
        for list in &self.instructions {
            dims.push(list.len());
            if !self.demo_sets.is_empty() {
                dims.push(self.demo_sets.len());
            }
        }
        dims
    }

    /// A restored state must fit the program and index only what it holds.
    fn check(&self, n_preds: usize, trials: usize) -> Result<(), SearchError> {
        let bad = |m: String| Err(SearchError::Config(format!("checkpoint: {m}")));
        if self.instructions.len() != n_preds || self.instructions.iter().any(Vec::is_empty) {
            return bad(format!(
                "{} instruction lists for {n_preds} predictors",
                self.instructions.len()
            ));
        }
        if self.trials_done > trials {
            return bad(format!("{} trials done of {trials}", self.trials_done));
        }
        let dims = self.dims();
        let fits =
            |p: &Vec<usize>| p.len() == dims.len() && p.iter().zip(&dims).all(|(c, k)| c < k);
        let all = self
            .tpe_trials
            .iter()
            .map(|(p, _)| p)
            .chain(self.minibatch_scores.iter().map(|(p, _)| p))
            .chain(self.fully_evaluated.iter().map(|(p, _)| p));
        for p in all {
            if !fits(p) {
                return bad(format!("trial {p:?} is outside the search space {dims:?}"));
            }
        }
        Ok(())
    }
}

/// Run MIPROv2. `demo_sets[j]` maps predictor path → demos for demo-set
/// candidate j (empty: instructions only). `train_view` holds a few training
/// examples rendered as text for the dataset summary. With `resume` (a
/// checkpoint's state) the proposals are not made again and the trials
/// continue where they stopped.
#[allow(clippy::too_many_arguments)]
pub async fn mipro(
    program: &Program,
    start: &Overlay,
    demo_sets: &[BTreeMap<String, Vec<Demo>>],
    train_view: &[String],
    eval: &dyn Evaluator,
    proposer: &Proposer,
    cfg: &MiproConfig,
    resume: Option<MiproState>,
) -> Result<SearchResult, SearchError> {
    let preds = program.predictors();
    let n_sets = match &resume {
        Some(st) => st.demo_sets.len(),
        None => demo_sets.len(),
    };
    let pl = plan(program, cfg, eval.len(Split::Val), n_sets);
    let val = pl.val_indices.clone();
    if val.is_empty() {
        return Err(SearchError::Config(
            "mipro needs a non-empty validation set".into(),
        ));
    }
    let st = match resume {
        Some(st) => {
            st.check(preds.len(), pl.trials)?;
            st
        }
        None => {
            prepare(
                program, start, demo_sets, train_view, eval, proposer, cfg, &pl,
            )
            .await?
        }
    };
    trials(program, start, st, eval, cfg, &pl).await
}

/// Steps 1–2 and the default trial: the baseline scored in full, the
/// instruction candidates, and the state the trial loop starts from.
#[allow(clippy::too_many_arguments)]
async fn prepare(
    program: &Program,
    start: &Overlay,
    demo_sets: &[BTreeMap<String, Vec<Demo>>],
    train_view: &[String],
    eval: &dyn Evaluator,
    proposer: &Proposer,
    cfg: &MiproConfig,
    pl: &MiproPlan,
) -> Result<MiproState, SearchError> {
    let preds = program.predictors();
    let val = &pl.val_indices;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(1));
    let mut history = History::new(eval);
    let baseline_score = mean(&eval.evaluate(start, Split::Val, val).await?);
    history.push(CandidateRecord {
        full_score: Some(baseline_score),
        ..new_record("baseline")
    });
    let (mut best, mut best_score) = (start.clone(), baseline_score);

    // Step 2: instruction candidates per predictor.
    let mut rollout = 1u64;
    let dataset = if train_view.is_empty() {
        String::new()
    } else {
        proposer
            .dataset_summary(train_view, rollout)
            .await
            .unwrap_or_default()
    };
    rollout += 1;
    let program_desc = describe_program(program);
    let mut instructions: Vec<Vec<String>> = Vec::new();
    for p in &preds {
        let base = current_instruction(start, p);
        let mut list = vec![base.clone()];
        for j in 1..pl.instruct_candidates {
            if eval.exhausted() {
                break;
            }
            let demos = demo_sets
                .get(j % demo_sets.len().max(1))
                .and_then(|s| s.get(&p.path))
                .map(|d| render_demos(d))
                .unwrap_or_default();
            let tip = TIPS[rng.gen_range(0..TIPS.len())].1;
            let g = Grounding {
                dataset: &dataset,
                program: &program_desc,
                module: &describe_module(p),
                demos: &demos,
                previous: &list[1..],
                basic: &base,
                tip,
            };
            if let Ok(ins) = proposer.grounded(&g, rollout).await {
                if !list.contains(&ins) {
                    list.push(ins);
                }
            }
            rollout += 1;
        }
        instructions.push(list);
    }
    let mut st = MiproState {
        demo_sets: demo_sets.to_vec(),
        instructions,
        baseline_score,
        best: Overlay::default(),
        best_score,
        tpe_trials: Vec::new(),
        tpe_pos: 0,
        rng_pos: crate::optimize::checkpoint::rng_pos(&rng),
        minibatch_scores: Vec::new(),
        fully_evaluated: Vec::new(),
        history: Vec::new(),
        trials_done: 0,
    };

    // The default configuration (original instructions, first demo set) is a
    // known trial, as DSPy seeds Optuna with it.
    let dims = st.dims();
    let default_params = vec![0; dims.len()];
    let default_overlay = build(&preds, start, &st, &default_params);
    // Free when it is the baseline: the engine keeps complete runs.
    let default_score = mean(&eval.evaluate(&default_overlay, Split::Val, val).await?);
    let mut tpe = Tpe::new(dims, cfg.seed);
    tpe.observe(default_params.clone(), default_score);
    history.push(record(
        "trial",
        program,
        &default_overlay,
        &default_params,
        &preds,
        !st.demo_sets.is_empty(),
        None,
        Some(default_score),
    ));
    if default_score > best_score {
        best = default_overlay;
        best_score = default_score;
    }
    st.best = best;
    st.best_score = best_score;
    st.tpe_pos = tpe.rng_pos();
    st.tpe_trials = tpe.trials;
    st.fully_evaluated.push((default_params, default_score));
    st.history = history.records;
    if eval.checkpointing() {
        checkpoint(eval, &st, pl.trials);
    }
    Ok(st)
}

/// The candidate of `params`: per predictor, its instruction and demo set.
fn build(
    preds: &[crate::program::PredictorRef],
    start: &Overlay,
    st: &MiproState,
    params: &[usize],
) -> Overlay {
    let with_demos = !st.demo_sets.is_empty();
    let mut o = start.clone();
    let stride = if with_demos { 2 } else { 1 };
    for (i, p) in preds.iter().enumerate() {
        let s = o.predictors.entry(p.path.clone()).or_default();
        s.instructions = Some(st.instructions[i][params[i * stride]].clone());
        if with_demos {
            s.demos = st.demo_sets[params[i * stride + 1]]
                .get(&p.path)
                .cloned()
                .unwrap_or_default();
        }
    }
    o
}

fn checkpoint(eval: &dyn Evaluator, st: &MiproState, trials: usize) {
    if let Ok(v) = serde_json::to_value(st) {
        eval.checkpoint("trial", st.trials_done, trials, v);
    }
}

/// Step 3: TPE over (instruction, demo set) per predictor, from `st`.
async fn trials(
    program: &Program,
    start: &Overlay,
    mut st: MiproState,
    eval: &dyn Evaluator,
    cfg: &MiproConfig,
    pl: &MiproPlan,
) -> Result<SearchResult, SearchError> {
    let preds = program.predictors();
    let val = pl.val_indices.clone();
    let with_demos = !st.demo_sets.is_empty();
    let mut rng = crate::optimize::checkpoint::rng_at(cfg.seed.wrapping_add(1), st.rng_pos);
    let mut tpe = Tpe::resumed(
        st.dims(),
        cfg.seed,
        std::mem::take(&mut st.tpe_trials),
        st.tpe_pos,
    );
    let mut history = History::resumed(eval, std::mem::take(&mut st.history));
    let mut minibatch_scores: BTreeMap<Vec<usize>, Vec<f64>> =
        std::mem::take(&mut st.minibatch_scores)
            .into_iter()
            .collect();
    let mut fully_evaluated: BTreeMap<Vec<usize>, f64> = std::mem::take(&mut st.fully_evaluated)
        .into_iter()
        .collect();
    let (mut best, mut best_score) = (std::mem::take(&mut st.best), st.best_score);
    for trial in st.trials_done + 1..=pl.trials {
        if eval.exhausted() {
            break;
        }
        let params = tpe.suggest();
        let cand = build(&preds, start, &st, &params);
        if pl.minibatch {
            let mut batch = val.clone();
            batch.shuffle(&mut rng);
            batch.truncate(cfg.minibatch_size.min(val.len()));
            let s = mean(&eval.evaluate(&cand, Split::Val, &batch).await?);
            tpe.observe(params.clone(), s);
            minibatch_scores.entry(params.clone()).or_default().push(s);
            history.push(record(
                "trial",
                program,
                &cand,
                &params,
                &preds,
                with_demos,
                Some(s),
                None,
            ));
            if trial % (cfg.minibatch_full_eval_steps + 1) == 0 || trial == pl.trials {
                // Fully evaluate the best-averaging combination not yet done.
                let top = minibatch_scores
                    .iter()
                    .filter(|(k, _)| !fully_evaluated.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.iter().sum::<f64>() / v.len() as f64))
                    .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
                if let Some((p, _)) = top {
                    let o = build(&preds, start, &st, &p);
                    let s = mean(&eval.evaluate(&o, Split::Val, &val).await?);
                    fully_evaluated.insert(p.clone(), s);
                    tpe.observe(p.clone(), s);
                    history.push(record(
                        "full_eval",
                        program,
                        &o,
                        &p,
                        &preds,
                        with_demos,
                        None,
                        Some(s),
                    ));
                    if s > best_score {
                        best_score = s;
                        best = o;
                    }
                }
            }
        } else {
            let s = match fully_evaluated.get(&params) {
                Some(s) => *s,
                None => mean(&eval.evaluate(&cand, Split::Val, &val).await?),
            };
            fully_evaluated.insert(params.clone(), s);
            tpe.observe(params.clone(), s);
            history.push(record(
                "trial",
                program,
                &cand,
                &params,
                &preds,
                with_demos,
                None,
                Some(s),
            ));
            if s > best_score {
                best_score = s;
                best = cand;
            }
        }
        if eval.checkpointing() && !eval.exhausted() {
            // Between trials, the whole state: the loop resumes at trial + 1.
            let snapshot = MiproState {
                best: best.clone(),
                best_score,
                tpe_trials: tpe.trials.clone(),
                tpe_pos: tpe.rng_pos(),
                rng_pos: crate::optimize::checkpoint::rng_pos(&rng),
                minibatch_scores: minibatch_scores
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                fully_evaluated: fully_evaluated
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
                history: history.records.clone(),
                trials_done: trial,
                ..st.clone()
            };
            checkpoint(eval, &snapshot, pl.trials);
        }
    }
    Ok(SearchResult {
        best,
        best_score,
        baseline_score: st.baseline_score,
        history: history.records,
        plan: BTreeMap::from([
            (
                "instruction_candidates".into(),
                json!(pl.instruct_candidates),
            ),
            ("demo_set_candidates".into(), json!(st.demo_sets.len())),
            ("num_trials".into(), json!(pl.trials)),
            ("minibatch".into(), json!(pl.minibatch)),
            ("val_size".into(), json!(pl.val_indices.len())),
        ]),
    })
}

#[allow(clippy::too_many_arguments)]
fn record(
    origin: &str,
    program: &Program,
    o: &Overlay,
    params: &[usize],
    preds: &[crate::program::PredictorRef],
    with_demos: bool,
    minibatch: Option<f64>,
    full: Option<f64>,
) -> CandidateRecord {
    let mut demo_sets = BTreeMap::new();
    if with_demos {
        for (i, p) in preds.iter().enumerate() {
            demo_sets.insert(p.path.clone(), params[i * 2 + 1]);
        }
    }
    CandidateRecord {
        instructions: instruction_diff(o, program),
        demo_sets,
        minibatch_score: minibatch,
        full_score: full,
        ..new_record(origin)
    }
}

/// Demos as text for the proposer.
pub fn render_demos(demos: &[Demo]) -> String {
    demos
        .iter()
        .map(|d| {
            d.fields
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}: {}",
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_that_indexes_outside_the_search_space_is_refused() {
        let ok = MiproState {
            demo_sets: vec![BTreeMap::new(), BTreeMap::new()],
            instructions: vec![vec!["a".into(), "b".into()]],
            baseline_score: 0.0,
            best: Overlay::default(),
            best_score: 0.0,
            tpe_trials: vec![(vec![1, 1], 0.5)],
            tpe_pos: 0,
            rng_pos: 0,
            minibatch_scores: Vec::new(),
            fully_evaluated: vec![(vec![0, 0], 0.0)],
            history: Vec::new(),
            trials_done: 1,
        };
        assert_eq!(ok.dims(), vec![2, 2]);
        assert!(ok.check(1, 10).is_ok());
        // An instruction index past the candidates would panic in `build`.
        let bad = MiproState {
            fully_evaluated: vec![(vec![2, 0], 0.0)],
            ..ok.clone()
        };
        assert!(bad.check(1, 10).is_err());
        // Another program (two predictors), or more trials than planned.
        assert!(ok.check(2, 10).is_err());
        let late = MiproState {
            trials_done: 11,
            ..ok.clone()
        };
        assert!(late.check(1, 10).is_err());
    }

    #[test]
    fn trial_formula_matches_dspy() {
        // One predictor, zero-shot, light (n=6): max(2*1*log2 6, 9) = max(5.17, 9) = 9.
        assert_eq!(num_trials(1, false, 6), 9);
        // One predictor with demos, medium (n=12): max(2*2*log2 12, 18) = max(14.3, 18) = 18.
        assert_eq!(num_trials(1, true, 12), 18);
        // Three predictors with demos, heavy (n=18): max(2*6*log2 18, 27) = 50.
        assert_eq!(num_trials(3, true, 18), 50);
    }
}
