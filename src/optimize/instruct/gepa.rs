//! GEPA: reflective prompt evolution (Agrawal et al. 2025), DSPy's semantics.
//!
//! A pool of candidates starts with the program. Each iteration samples a
//! parent from the per-instance Pareto frontier on the validation set
//! (candidates that are best on at least one validation example, dominated
//! ones removed, weighted by how many examples they lead on), picks the
//! parent's next predictor round robin, runs the parent on a small training
//! minibatch with traces, and shows the prompt LM that predictor's inputs,
//! outputs and the metric's feedback (parse failures become feedback too).
//! The LM rewrites the instruction; the child is kept only if it beats the
//! parent on the same minibatch, then scored on the whole validation set and
//! added to the pool. After an accepted child, a system-aware merge may
//! combine two frontier candidates with a common ancestor, taking each
//! predictor's instruction from the side that changed it. The budget counts
//! metric calls (one per example scored); `auto` presets follow DSPy's
//! formula. As in DSPy, the budget is checked at the top of an iteration and
//! a started iteration finishes (the last evaluation may overshoot), so an
//! accepted child is always scored and kept; the search also stops once a
//! candidate is perfect on every validation example, since nothing could
//! then change the result. The winner is the candidate with the best validation mean, ties
//! to the earliest, so the starting program wins unless something beats it.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

use crate::artifact::CandidateRecord;
use crate::optimize::settings::AutoPreset;
use crate::optimize::{Engine, Estimate, OptimizeError, Optimizer, Outcome, Shape};
use crate::overlay::Overlay;
use crate::program::Program;
use crate::trace::Trace;

use super::engine::{finish, proposer, EngineEvaluator};
use super::mipro::Auto;
use super::propose::Proposer;
use super::{
    current_instruction, instruction_diff, record, with_instruction, Evaluator, ExampleScore,
    History, SearchError, SearchResult, Split,
};

crate::optimizer_settings! {
    /// GEPA's settings (DSPy's defaults).
    pub struct GepaSettings {
        /// Budget preset (DSPy's formula over light 6, medium 12, heavy 18 candidates); `max_metric_calls` overrides it.
        auto: AutoPreset = AutoPreset::Light;
        /// Budget in metric calls (examples scored); overrides `auto`.
        max_metric_calls: Option<usize> = None, min 1;
        /// Training examples shown to the reflection LM per iteration.
        reflection_minibatch_size: usize = 3, min 1;
        /// Merge frontier candidates that improved different predictors.
        use_merge: bool = true;
        /// Most merges per run.
        max_merge_invocations: usize = 5;
        /// The reflection LM's sampling temperature.
        temperature: f64 = 1.0, min 0.0, max 2.0;
    }
}

#[derive(Debug, Clone)]
pub struct GepaConfig {
    pub auto: Option<Auto>,
    /// Budget in metric calls (examples scored); overrides `auto`.
    pub max_metric_calls: Option<usize>,
    pub reflection_minibatch_size: usize,
    pub use_merge: bool,
    pub max_merge_invocations: usize,
    /// Scores at or above this count as perfect: such minibatches are skipped.
    pub perfect_score: f64,
    pub seed: u64,
}

impl GepaConfig {
    pub fn new(s: &GepaSettings, seed: u64) -> Self {
        GepaConfig {
            auto: s.auto.preset(),
            max_metric_calls: s.max_metric_calls,
            reflection_minibatch_size: s.reflection_minibatch_size,
            use_merge: s.use_merge,
            max_merge_invocations: s.max_merge_invocations,
            perfect_score: 1.0,
            seed,
        }
    }

    /// The budget in metric calls for `preds` predictors and `v` validation examples.
    pub fn budget(&self, preds: usize, v: usize) -> usize {
        self.max_metric_calls
            .unwrap_or_else(|| auto_budget(preds, self.auto.unwrap_or(Auto::Light).settings().0, v))
    }
}

/// DSPy's GEPA.
pub struct Gepa;

#[async_trait::async_trait]
impl Optimizer for Gepa {
    type Settings = GepaSettings;
    const NAME: &'static str = "gepa";
    const SEARCHES: crate::optimize::Searches = crate::optimize::Searches::INSTRUCTIONS;
    const DSPY: &'static str = "GEPA";
    const ABOUT: &'static str =
        "reflective instruction evolution over a per-example Pareto frontier";
    const PROMPT_LM: bool = true;

    fn project(&self, s: &GepaSettings, shape: &Shape<'_>) -> Estimate {
        let cfg = GepaConfig::new(s, 0);
        let budget = cfg.budget(shape.program.predictors().len(), shape.n_val) as u64;
        let mb = s.reflection_minibatch_size as u64;
        // The last iteration may overshoot by its minibatches and a full
        // evaluation.
        let overshoot = 2 * mb + shape.n_val as u64;
        Estimate {
            phases: vec![("evaluating".into(), budget + overshoot)],
            extra_calls: budget / (2 * mb),
            exact: false,
        }
    }

    async fn compile(
        &self,
        s: &GepaSettings,
        engine: &Engine<'_>,
    ) -> Result<Outcome, OptimizeError> {
        let cfg = GepaConfig::new(s, engine.seed);
        let eval = EngineEvaluator { engine };
        let proposer = proposer(engine, s.temperature);
        // An artifact's overlay when composing: reflection starts from its instructions.
        let resume: Option<GepaState> = engine.resume_state(Self::NAME)?;
        let search = gepa(
            engine.program,
            &engine.start(),
            &eval,
            &proposer,
            &cfg,
            resume,
        )
        .await;
        finish(engine, Self::NAME, search).await
    }
}

/// DSPy's `auto_budget`: metric calls for a MIPRO-like schedule with
/// `n` candidates over a validation set of `v` examples.
pub fn auto_budget(num_preds: usize, n: usize, v: usize) -> usize {
    let (m_size, steps) = (35usize, 5usize);
    let trials =
        (2.0 * (num_preds * 2) as f64 * (n.max(2) as f64).log2()).max(1.5 * n as f64) as usize;
    let mut total = v + n * 5 + trials * m_size;
    if trials == 0 {
        return total;
    }
    let periodic = (trials + 1) / steps + 1;
    let extra = usize::from(steps > trials);
    total += (periodic + extra) * v;
    total
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Cand {
    overlay: Overlay,
    parents: Vec<usize>,
    val: Vec<f64>,
    next_pred: usize,
}

impl Cand {
    fn mean(&self) -> f64 {
        if self.val.is_empty() {
            0.0
        } else {
            self.val.iter().sum::<f64>() / self.val.len() as f64
        }
    }
}

/// Candidates on the per-instance Pareto frontier, dominated ones removed,
/// each with the number of instances it leads on.
pub fn frontier(scores: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let n_inst = scores.first().map_or(0, Vec::len);
    let mut lead = vec![0usize; scores.len()];
    for k in 0..n_inst {
        let best = scores.iter().map(|s| s[k]).fold(f64::MIN, f64::max);
        for (c, s) in scores.iter().enumerate() {
            if s[k] >= best {
                lead[c] += 1;
            }
        }
    }
    let dominated = |p: usize| {
        scores.iter().enumerate().any(|(q, sq)| {
            q != p
                && sq.iter().zip(&scores[p]).all(|(a, b)| a >= b)
                && sq.iter().zip(&scores[p]).any(|(a, b)| a > b)
        })
    };
    (0..scores.len())
        .filter(|&c| lead[c] > 0 && !dominated(c))
        .map(|c| (c, lead[c]))
        .collect()
}

fn ancestors(pool: &[Cand], c: usize) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    let mut stack = pool[c].parents.clone();
    while let Some(p) = stack.pop() {
        if out.insert(p) {
            stack.extend(pool[p].parents.iter().copied());
        }
    }
    out
}

/// Text shown to the reflection LM: the predictor's inputs and outputs on
/// each minibatch example with the metric's feedback.
pub fn reflective_examples(path: &str, results: &[ExampleScore]) -> String {
    let mut s = String::new();
    for (i, r) in results.iter().enumerate() {
        s.push_str(&format!("### Example {}\n", i + 1));
        let step = r.trace.as_ref().and_then(|t: &Trace| {
            t.steps
                .iter()
                .find(|st| st.predictor.as_deref() == Some(path))
        });
        let inputs = step
            .map(|st| st.inputs.clone())
            .unwrap_or_else(|| r.inputs.clone());
        s.push_str("Inputs:\n");
        for (k, v) in &inputs {
            s.push_str(&format!(
                "- {k}: {}\n",
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            ));
        }
        match step.and_then(|st| st.outputs.clone()) {
            Some(out) => {
                s.push_str("Generated outputs:\n");
                for (k, v) in &out {
                    s.push_str(&format!(
                        "- {k}: {}\n",
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    ));
                }
            }
            None => {
                let raw = step
                    .and_then(|st| st.parse_error.as_ref())
                    .map(|p| p.raw.clone());
                match raw {
                    Some(raw) => s.push_str(&format!(
                        "Generated outputs: (could not be parsed)\n{raw}\n"
                    )),
                    None => s.push_str("Generated outputs: (none)\n"),
                }
            }
        }
        let feedback = match (&r.error, &r.feedback) {
            (Some(e), _) => {
                format!("The run failed: {e}. The output must follow the required format exactly.")
            }
            (None, Some(f)) => f.clone(),
            (None, None) if r.score >= 1.0 => "This output is correct.".to_string(),
            (None, None) => format!(
                "This output scored {:.2}; expected: {}",
                r.score,
                serde_json::Value::Object(r.expected.clone())
            ),
        };
        s.push_str(&format!("Feedback: {feedback}\n\n"));
    }
    s
}

/// Where a GEPA search stands between two iterations: what a checkpoint
/// holds. The pool carries each candidate's per-example valset scores (the
/// frontier is computed from them), and the positions of the seeded stream
/// and of the epoch-shuffled training order let the search continue with
/// the draws an uninterrupted run would make.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GepaState {
    pool: Vec<Cand>,
    baseline_score: f64,
    history: Vec<CandidateRecord>,
    rng_pos: u64,
    train_order: Vec<usize>,
    cursor: usize,
    merges_due: usize,
    merges_done: usize,
    rollout: u64,
    calls: usize,
    iterations: usize,
}

impl GepaState {
    /// A restored state must fit the data and index only what it holds.
    fn check(&self, n_val: usize, n_train: usize) -> Result<(), SearchError> {
        let bad = |m: String| Err(SearchError::Config(format!("checkpoint: {m}")));
        if self.pool.is_empty() {
            return bad("an empty candidate pool".into());
        }
        for (i, c) in self.pool.iter().enumerate() {
            if c.val.len() != n_val || c.parents.iter().any(|&p| p >= i) {
                return bad(format!(
                    "pool candidate {i} does not fit the valset or its parents"
                ));
            }
        }
        let mut order = self.train_order.clone();
        order.sort_unstable();
        if order != (0..n_train).collect::<Vec<_>>() || self.cursor > n_train {
            return bad("the training order is not a permutation of the trainset".into());
        }
        Ok(())
    }
}

pub async fn gepa(
    program: &Program,
    start: &Overlay,
    eval: &dyn Evaluator,
    proposer: &Proposer,
    cfg: &GepaConfig,
    resume: Option<GepaState>,
) -> Result<SearchResult, SearchError> {
    let preds = program.predictors();
    if preds.is_empty() {
        return Err(SearchError::Config(
            "gepa needs at least one predictor".into(),
        ));
    }
    let v = eval.len(Split::Val);
    let t = eval.len(Split::Train);
    if v == 0 || t == 0 {
        return Err(SearchError::Config(
            "gepa needs non-empty training and validation sets".into(),
        ));
    }
    let budget = cfg.budget(preds.len(), v);
    let all_val: Vec<usize> = (0..v).collect();
    let b = cfg.reflection_minibatch_size.clamp(1, t);
    let st = match resume {
        Some(st) => {
            st.check(v, t)?;
            st
        }
        None => {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            let base_scores: Vec<f64> = eval
                .evaluate(start, Split::Val, &all_val)
                .await?
                .iter()
                .map(|s| s.score)
                .collect();
            let pool = vec![Cand {
                overlay: start.clone(),
                parents: vec![],
                val: base_scores,
                next_pred: 0,
            }];
            let baseline_score = pool[0].mean();
            let mut history = History::new(eval);
            history.push(CandidateRecord {
                full_score: Some(baseline_score),
                accepted: Some(true),
                ..record("baseline")
            });
            let mut train_order: Vec<usize> = (0..t).collect();
            train_order.shuffle(&mut rng);
            GepaState {
                pool,
                baseline_score,
                history: history.records,
                rng_pos: crate::optimize::checkpoint::rng_pos(&rng),
                train_order,
                cursor: 0,
                merges_due: 0,
                merges_done: 0,
                rollout: 1,
                calls: v,
                iterations: 0,
            }
        }
    };
    let mut rng = crate::optimize::checkpoint::rng_at(cfg.seed, st.rng_pos);
    let mut pool = st.pool;
    let baseline_score = st.baseline_score;
    let mut history = History::resumed(eval, st.history);
    let mut train_order = st.train_order;
    let mut cursor = st.cursor;
    let mut merges_due = st.merges_due;
    let mut merges_done = st.merges_done;
    let mut rollout = st.rollout;
    let mut calls = st.calls;
    let mut iterations = st.iterations;

    // The budget is checked at the top of an iteration, as DSPy does: an
    // iteration that starts is allowed to finish, so an accepted child is
    // always scored on the valset (the last evaluation may overshoot the
    // budget by at most one iteration's calls) and no call is spent on a
    // child that could not be kept.
    loop {
        // A checkpoint between iterations (never after one cut short: a
        // stopped engine takes none).
        if eval.checkpointing() && !eval.exhausted() {
            let snapshot = GepaState {
                pool: pool.clone(),
                baseline_score,
                history: history.records.clone(),
                rng_pos: crate::optimize::checkpoint::rng_pos(&rng),
                train_order: train_order.clone(),
                cursor,
                merges_due,
                merges_done,
                rollout,
                calls,
                iterations,
            };
            if let Ok(v) = serde_json::to_value(&snapshot) {
                // The number of iterations is not known ahead (0: unknown).
                eval.checkpoint("iteration", iterations, 0, v);
            }
        }
        if calls >= budget || eval.exhausted() {
            break;
        }
        iterations += 1;
        // Nothing can beat a candidate perfect on every validation example
        // (ties go to the earlier): any further call would be wasted.
        if pool
            .iter()
            .any(|c| c.val.iter().all(|&x| x >= cfg.perfect_score))
        {
            break;
        }
        // System-aware merge, scheduled after each accepted mutation.
        if cfg.use_merge
            && merges_due > 0
            && merges_done < cfg.max_merge_invocations
            && pool.len() >= 3
        {
            merges_due -= 1;
            merges_done += 1;
            if let Some(c) =
                try_merge(program, &mut pool, eval, &mut rng, &mut calls, &mut history).await?
            {
                let _ = c;
                continue;
            }
        }
        // Parent from the Pareto frontier, weighted by coverage.
        let scores: Vec<Vec<f64>> = pool.iter().map(|c| c.val.clone()).collect();
        let front = frontier(&scores);
        let total: usize = front.iter().map(|(_, w)| w).sum();
        let mut pick = rng.gen_range(0..total.max(1));
        let mut parent = front.first().map_or(0, |f| f.0);
        for (c, w) in &front {
            if pick < *w {
                parent = *c;
                break;
            }
            pick -= w;
        }
        let pi = pool[parent].next_pred % preds.len();
        pool[parent].next_pred = (pi + 1) % preds.len();
        let pred = &preds[pi];

        // Next training minibatch (epoch-shuffled, as GEPA does).
        let mut batch = Vec::with_capacity(b);
        for _ in 0..b {
            if cursor >= train_order.len() {
                train_order.shuffle(&mut rng);
                cursor = 0;
            }
            batch.push(train_order[cursor]);
            cursor += 1;
        }
        let parent_res = eval
            .evaluate(&pool[parent].overlay, Split::Train, &batch)
            .await?;
        calls += b;
        let parent_sum: f64 = parent_res.iter().map(|r| r.score).sum();
        if parent_res.iter().all(|r| r.score >= cfg.perfect_score) {
            continue; // nothing to learn from a perfect minibatch
        }
        let current = current_instruction(&pool[parent].overlay, pred);
        let text = reflective_examples(&pred.path, &parent_res);
        let proposal = proposer.reflect(&current, &text, rollout).await;
        rollout += 1;
        let Ok(new_instruction) = proposal else {
            continue;
        };
        if new_instruction == current {
            continue;
        }
        let child = with_instruction(&pool[parent].overlay, &pred.path, &new_instruction);
        let child_res = eval.evaluate(&child, Split::Train, &batch).await?;
        calls += b;
        let child_sum: f64 = child_res.iter().map(|r| r.score).sum();
        let accepted = child_sum > parent_sum;
        let mut rec = CandidateRecord {
            parents: vec![parent],
            predictor: Some(pred.path.clone()),
            instructions: instruction_diff(&child, program),
            minibatch_score: Some(child_sum / b as f64),
            accepted: Some(accepted),
            ..record("mutation")
        };
        if accepted {
            let val: Vec<f64> = eval
                .evaluate(&child, Split::Val, &all_val)
                .await?
                .iter()
                .map(|s| s.score)
                .collect();
            calls += v;
            if eval.exhausted() {
                // An LM budget or a stop cut the evaluation short: the
                // scores are partial and must not compete.
                rec.accepted = Some(false);
                history.push(rec);
                break;
            }
            let c = Cand {
                overlay: child,
                parents: vec![parent],
                val,
                next_pred: 0,
            };
            rec.full_score = Some(c.mean());
            pool.push(c);
            merges_due += 1;
        }
        history.push(rec);
    }
    let best_idx = (0..pool.len()).fold(0, |b, c| {
        if pool[c].mean() > pool[b].mean() {
            c
        } else {
            b
        }
    });
    Ok(SearchResult {
        best: pool[best_idx].overlay.clone(),
        best_score: pool[best_idx].mean(),
        baseline_score,
        history: history.records,
        plan: BTreeMap::from([("budget".into(), json!(budget))]),
    })
}

/// Merge two frontier candidates that share an ancestor: per predictor, take
/// the instruction from whichever side changed it (the better side when
/// both did). Accepted when it does at least as well as both parents on a
/// few validation examples, then scored in full.
async fn try_merge(
    program: &Program,
    pool: &mut Vec<Cand>,
    eval: &dyn Evaluator,
    rng: &mut ChaCha8Rng,
    calls: &mut usize,
    history: &mut History<'_>,
) -> Result<Option<usize>, SearchError> {
    let scores: Vec<Vec<f64>> = pool.iter().map(|c| c.val.clone()).collect();
    let front: Vec<usize> = frontier(&scores).into_iter().map(|(c, _)| c).collect();
    let mut pairs = Vec::new();
    for (x, &i) in front.iter().enumerate() {
        for &j in &front[x + 1..] {
            let (ai, aj) = (ancestors(pool, i), ancestors(pool, j));
            if ai.contains(&j) || aj.contains(&i) {
                continue;
            }
            if let Some(&a) = ai.intersection(&aj).max() {
                pairs.push((i, j, a));
            }
        }
    }
    let Some(&(i, j, a)) = pairs.choose(rng) else {
        return Ok(None);
    };
    let mut merged = pool[a].overlay.clone();
    for p in program.predictors() {
        let (ii, ij, ia) = (
            current_instruction(&pool[i].overlay, &p),
            current_instruction(&pool[j].overlay, &p),
            current_instruction(&pool[a].overlay, &p),
        );
        let take = if ii == ia {
            ij
        } else if ij == ia || pool[i].mean() >= pool[j].mean() {
            ii
        } else {
            ij
        };
        merged = with_instruction(&merged, &p.path, &take);
    }
    if merged == pool[i].overlay || merged == pool[j].overlay {
        return Ok(None);
    }
    let v = pool[i].val.len();
    let mut sub: Vec<usize> = (0..v).collect();
    sub.shuffle(rng);
    sub.truncate(5.min(v));
    let res = eval.evaluate(&merged, Split::Val, &sub).await?;
    *calls += sub.len();
    let merged_sum: f64 = res.iter().map(|r| r.score).sum();
    let side = |c: usize| sub.iter().map(|&k| pool[c].val[k]).sum::<f64>();
    let accepted = merged_sum >= side(i).max(side(j));
    let mut rec = CandidateRecord {
        parents: vec![i, j],
        instructions: instruction_diff(&merged, program),
        minibatch_score: Some(merged_sum / sub.len().max(1) as f64),
        accepted: Some(accepted),
        ..record("merge")
    };
    let mut added = None;
    if accepted {
        let all: Vec<usize> = (0..v).collect();
        let val: Vec<f64> = eval
            .evaluate(&merged, Split::Val, &all)
            .await?
            .iter()
            .map(|s| s.score)
            .collect();
        *calls += v;
        if eval.exhausted() {
            // Partial scores (budget or stop mid-evaluation) never compete.
            rec.accepted = Some(false);
            history.push(rec);
            return Ok(None);
        }
        let c = Cand {
            overlay: merged,
            parents: vec![i, j],
            val,
            next_pred: 0,
        };
        rec.full_score = Some(c.mean());
        pool.push(c);
        added = Some(pool.len() - 1);
    }
    history.push(rec);
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_keeps_per_instance_leaders_and_drops_dominated() {
        // c0 leads on instance 0, c1 on instance 1, c2 is dominated by c1.
        let scores = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 1.0],
            vec![0.0, 1.0, 0.0],
        ];
        let f = frontier(&scores);
        assert_eq!(f, vec![(0, 1), (1, 2)]);
    }

    #[test]
    fn auto_budget_matches_dspy_formula() {
        // 1 predictor, light (n=6), 100 val: trials = max(4*log2 6, 9) = 10.
        // total = 100 + 30 + 10*35 + ((11/5)+1)*100 = 100+30+350+300 = 780.
        assert_eq!(auto_budget(1, 6, 100), 780);
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;
    use crate::overlay::Overlay;
    use std::path::Path;

    /// Scores `both` on every example when both predictors carry their
    /// improved instruction, 0.5 when one does, 0 otherwise.
    struct Fake {
        both: f64,
    }

    #[async_trait::async_trait]
    impl Evaluator for Fake {
        async fn evaluate(
            &self,
            o: &Overlay,
            _split: Split,
            indices: &[usize],
        ) -> Result<Vec<ExampleScore>, SearchError> {
            let good = |p: &str, w: &str| {
                o.get(p)
                    .and_then(|s| s.instructions.clone())
                    .is_some_and(|i| i.contains(w))
            };
            let s = match (good("first", "FIX1"), good("second", "FIX2")) {
                (true, true) => self.both,
                (false, false) => 0.0,
                _ => 0.5,
            };
            Ok(indices
                .iter()
                .map(|_| ExampleScore {
                    score: s,
                    ..Default::default()
                })
                .collect())
        }
        fn len(&self, _split: Split) -> usize {
            6
        }
    }

    fn program() -> Program {
        let src = "name: two\nsignatures:\n  a: \"word -> mid\"\n  b: \"mid -> answer\"\ninputs:\n  word: str\nnodes:\n  first: {kind: predict, signature: a}\n  second: {kind: predict, signature: b}\noutputs:\n  answer: second.answer\n";
        crate::program::load_str(src, Path::new("two.yaml")).expect("valid program")
    }

    #[tokio::test]
    async fn merge_combines_lineages_that_changed_different_predictors() {
        let program = program();
        let base = Overlay::default();
        let i = with_instruction(&base, "first", "FIX1 the word");
        let j = with_instruction(&base, "second", "FIX2 the answer");
        // i leads on examples 0-2, j on 3-5: both are on the frontier.
        let mut pool = vec![
            Cand {
                overlay: base,
                parents: vec![],
                val: vec![0.0; 6],
                next_pred: 0,
            },
            Cand {
                overlay: i,
                parents: vec![0],
                val: vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
                next_pred: 0,
            },
            Cand {
                overlay: j,
                parents: vec![0],
                val: vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
                next_pred: 0,
            },
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let fake = Fake { both: 1.0 };
        let mut calls = 0usize;
        let mut history = History::new(&fake);
        let added = try_merge(
            &program,
            &mut pool,
            &fake,
            &mut rng,
            &mut calls,
            &mut history,
        )
        .await
        .expect("merge runs");
        assert_eq!(added, Some(3));
        let merged = &pool[3];
        assert_eq!(merged.parents, vec![1, 2]);
        assert!(merged
            .overlay
            .get("first")
            .and_then(|s| s.instructions.clone())
            .unwrap_or_default()
            .contains("FIX1"));
        assert!(merged
            .overlay
            .get("second")
            .and_then(|s| s.instructions.clone())
            .unwrap_or_default()
            .contains("FIX2"));
        assert_eq!(merged.mean(), 1.0);
        assert_eq!(history.last().map(|r| r.origin.as_str()), Some("merge"));
        assert_eq!(history.last().and_then(|r| r.accepted), Some(true));
        // A merge that scores worse than a parent on the subsample is rejected.
        let mut pool2 = pool[..3].to_vec();
        let _ = try_merge(
            &program,
            &mut pool2,
            &Fake { both: 0.0 },
            &mut rng,
            &mut calls,
            &mut history,
        )
        .await;
        assert_eq!(
            pool2.len(),
            3,
            "a merge that does worse than its parents is not added"
        );
        assert_eq!(history.last().and_then(|r| r.accepted), Some(false));
    }
}
