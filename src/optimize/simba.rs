//! `simba`: stochastic introspective mini-batch ascent (DSPy's SIMBA).
//!
//! SIMBA grows a pool of programs by small edits learned from the
//! program's own variability. Each step takes the next mini-batch of
//! `bsize` training examples (a seeded shuffle, reshuffled when it runs
//! out) and runs it `num_candidates` times at different temperatures, each
//! run with a program drawn from the pool's best by a softmax over their
//! mini-batch means (`temperature_for_sampling`). Examples whose runs
//! disagree most (largest max − min score, then max score, then gap from
//! max to mean) are the hard ones: for each of them, in that order, a
//! source program is drawn the same way (`temperature_for_candidates`),
//! loses a few demos (Poisson-distributed, at least one when it holds
//! `max_demos`), and gets one edit: either a demo per predictor from the
//! example's best run, or a rule appended to each predictor's instruction,
//! written by the prompt LM from the contrast between the best and the worst
//! run (DSPy's `OfferFeedback`). Up to `num_candidates + 1` new programs are
//! scored on the same mini-batch at the task temperature and join the pool;
//! each step's best is a "winner". At the end up to `num_candidates + 1`
//! winners, evenly spaced over the steps and always including the starting
//! program, are scored on the validation set and the best wins (ties go to
//! the earlier one), so the result never scores below the start there.
//!
//! Departures from DSPy, all deliberate: the final choice is scored on the
//! valset (DSPy uses the trainset; without `--valset` they are the same);
//! a `bsize` larger than the trainset is clamped (DSPy refuses); the softmax
//! subtracts the best score first so that metric scales above 1 cannot
//! overflow it; the program's own description and module fields stand in
//! for DSPy's Python source in the feedback request.

use futures::StreamExt;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

use super::instruct::propose::{describe_module, describe_program};
use super::instruct::{current_instruction, instruction_diff, with_instruction, Split};
use super::{Engine, Estimate, OptimizeError, Optimizer, Outcome, Shape};
use crate::artifact::{overlay_hash, CandidateRecord};
use crate::eval::ExampleResult;
use crate::overlay::{Demo, Overlay};
use crate::run::call_predictor;
use crate::signature::{Field, FieldType, Signature};
use crate::trace::Trace;

crate::optimizer_settings! {
    /// `simba`'s settings (DSPy's names and defaults).
    pub struct SimbaSettings {
        /// Training examples per mini-batch (clamped to the trainset size).
        bsize: usize = 32, min 1;
        /// Runs per example when sampling, and new programs per step (up to one more).
        num_candidates: usize = 6, min 1;
        /// Optimization steps (mini-batches).
        max_steps: usize = 8, min 1;
        /// Demos a predictor holds before some are dropped; 0 appends rules only.
        max_demos: usize = 4;
        /// Softmax temperature for drawing the program that runs each sample.
        temperature_for_sampling: f64 = 0.2, min 0.01, max 10;
        /// Softmax temperature for drawing the program a new candidate starts from.
        temperature_for_candidates: f64 = 0.2, min 0.01, max 10;
        /// Longest input field kept in an appended demo (longer text is cut).
        demo_input_field_maxlen: usize = 100_000, min 1;
    }
}

/// DSPy's SIMBA.
pub struct Simba;

#[async_trait::async_trait]
impl Optimizer for Simba {
    type Settings = SimbaSettings;
    const NAME: &'static str = "simba";
    const DSPY: &'static str = "SIMBA";
    const ABOUT: &'static str = "mini-batch ascent: demos and LM-written rules from hard examples";
    const PROMPT_LM: bool = true;

    fn project(&self, s: &SimbaSettings, shape: &Shape<'_>) -> Estimate {
        let b = s.bsize.min(shape.n_train) as u64;
        let (steps, k) = (s.max_steps as u64, s.num_candidates as u64);
        // The final round scores the start plus distinct winners.
        let finals = (k + 1).min(steps + 1);
        Estimate {
            phases: vec![
                ("sampling".into(), steps * k * b),
                ("minibatch".into(), steps * (k + 1) * b),
                ("evaluating".into(), finals * shape.n_val as u64),
            ],
            // At most one feedback request per new candidate.
            extra_calls: steps * (k + 1),
            exact: false,
        }
    }

    async fn compile(
        &self,
        s: &SimbaSettings,
        engine: &Engine<'_>,
    ) -> Result<Outcome, OptimizeError> {
        Search::new(s, engine).run().await
    }
}

/// The temperatures of one sampling round: DSPy's `start + 0.5 + i * 0.5 / n`.
pub fn sampling_temperatures(start: f32, n: usize) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::new();
    for i in 0..n {
        let t = start + 0.5 + i as f32 * (0.5 / n as f32);
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// numpy's default (linear) percentile of `values`, `p` in [0, 100].
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let pos = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// A Poisson draw (Knuth's method; `lambda` here is a small demo ratio).
/// Written out because the statistics crate in the tree uses another
/// major version of `rand` than the seeded generator.
fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> usize {
    let limit = (-lambda).exp();
    let (mut k, mut p) = (0usize, 1.0f64);
    loop {
        p *= rng.gen::<f64>();
        if p <= limit || k > 1000 {
            return k;
        }
        k += 1;
    }
}

/// The program pool: overlays by SIMBA index with their mini-batch scores.
struct Pool {
    programs: Vec<Overlay>,
    scores: Vec<Vec<f64>>,
}

impl Pool {
    fn average(&self, i: usize) -> f64 {
        let s = &self.scores[i];
        if s.is_empty() {
            0.0
        } else {
            s.iter().sum::<f64>() / s.len() as f64
        }
    }

    /// The `k` best by mean (ties: older first), the start always included.
    fn top_k_plus_baseline(&self, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.programs.len()).collect();
        idx.sort_by(|&a, &b| self.average(b).total_cmp(&self.average(a)));
        idx.truncate(k.max(1));
        if !idx.contains(&0) {
            if let Some(last) = idx.last_mut() {
                *last = 0;
            }
        }
        let mut seen = BTreeSet::new();
        idx.retain(|i| seen.insert(*i));
        idx
    }

    /// One of `idxs`, drawn with probability ∝ exp(mean / temperature).
    fn softmax_sample(&self, rng: &mut ChaCha8Rng, idxs: &[usize], temperature: f64) -> usize {
        let means: Vec<f64> = idxs.iter().map(|&i| self.average(i)).collect();
        let top = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = means
            .iter()
            .map(|m| ((m - top) / temperature).exp())
            .collect();
        match rand::distributions::WeightedIndex::new(&weights) {
            Ok(w) => idxs[rng.sample(w)],
            Err(_) => *idxs.choose(rng).unwrap_or(&0),
        }
    }
}

/// One sampled run and the example it ran on.
struct Sample {
    example: usize,
    result: ExampleResult,
}

/// The edit a new candidate received.
#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    Demo,
    Rule,
}

struct Search<'s, 'e, 'a> {
    s: &'s SimbaSettings,
    engine: &'e Engine<'a>,
    rng: ChaCha8Rng,
    pool: Pool,
    records: Vec<CandidateRecord>,
    demos_appended: usize,
    rules_appended: usize,
}

impl<'s, 'e, 'a> Search<'s, 'e, 'a> {
    fn new(s: &'s SimbaSettings, engine: &'e Engine<'a>) -> Self {
        Search {
            s,
            engine,
            rng: ChaCha8Rng::seed_from_u64(engine.seed),
            // Compiling from an artifact, the pool starts from its overlay.
            pool: Pool {
                programs: vec![engine.start()],
                scores: vec![Vec::new()],
            },
            // History ids are pool indices: the start is record 0.
            records: vec![CandidateRecord {
                origin: "baseline".into(),
                overlay_hash: overlay_hash(&engine.start()),
                ..Default::default()
            }],
            demos_appended: 0,
            rules_appended: 0,
        }
    }

    async fn run(mut self) -> Result<Outcome, OptimizeError> {
        let engine = self.engine;
        let n = engine.trainset.len();
        let bsize = self.s.bsize.min(n);
        if bsize < self.s.bsize {
            engine.reporter.note(&format!(
                "simba: bsize {} exceeds the {n} training examples; using {bsize}",
                self.s.bsize
            ));
        }
        // The start first: its score is the baseline and, should a budget
        // run out, the result (DSPy scores it with the finalists; the score
        // cache makes the final round reuse this one).
        self.score(0).await;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        let mut at = 0usize;
        let mut winners: Vec<usize> = vec![0];
        let mut steps_run = 0usize;
        for step in 0..self.s.max_steps {
            if engine.should_stop() {
                break;
            }
            if at + bsize > n {
                order.shuffle(&mut self.rng);
                at = 0;
            }
            let batch = order[at..at + bsize].to_vec();
            at += bsize;
            let Some(samples) = self.sample(&batch).await else {
                break;
            };
            let Some(winner) = self.step(step, &batch, samples).await else {
                break;
            };
            winners.extend(winner);
            steps_run += 1;
        }
        self.finish(winners, bsize, steps_run).await
    }

    /// Run the batch `num_candidates` times at rising temperatures, each run
    /// with a pool program drawn by softmax. `None` when the search must stop.
    async fn sample(&mut self, batch: &[usize]) -> Option<Vec<Sample>> {
        let engine = self.engine;
        let top = self.pool.top_k_plus_baseline(self.s.num_candidates);
        let temps = sampling_temperatures(engine.ctx.temperature, self.s.num_candidates);
        let mut plan = Vec::new();
        for &t in &temps {
            for &i in batch {
                let p =
                    self.pool
                        .softmax_sample(&mut self.rng, &top, self.s.temperature_for_sampling);
                plan.push((t, i, p));
            }
        }
        engine.reporter.phase("sampling", plan.len());
        let runs: Vec<_> = plan
            .iter()
            .map(|&(t, i, p)| {
                let mut ctx = engine.ctx.clone();
                ctx.temperature = t;
                let overlay = &self.pool.programs[p];
                let ex = &engine.trainset[i];
                async move {
                    let r = engine
                        .run_examples(&ctx, overlay, std::slice::from_ref(ex), 1)
                        .await;
                    (i, r.into_iter().next())
                }
            })
            .collect();
        let done: Vec<_> = futures::stream::iter(runs)
            .buffered(engine.concurrency)
            .collect()
            .await;
        engine.reporter.phase_done();
        let samples: Vec<Sample> = done
            .into_iter()
            .filter_map(|(example, r)| r.map(|result| Sample { example, result }))
            .collect();
        (samples.len() == plan.len()).then_some(samples)
    }

    /// Build, score and register one step's candidates; the index of its
    /// best (none when every request failed). `None` when the search must stop.
    async fn step(
        &mut self,
        step: usize,
        batch: &[usize],
        samples: Vec<Sample>,
    ) -> Option<Option<usize>> {
        let engine = self.engine;
        let all: Vec<f64> = samples.iter().map(|x| x.result.score).collect();
        let (p10, p90) = (percentile(&all, 10.0), percentile(&all, 90.0));
        // Buckets: every run of one example, best first, hardest bucket first.
        let mut buckets: Vec<(Vec<&Sample>, [f64; 3])> = batch
            .iter()
            .map(|&i| {
                let mut b: Vec<&Sample> = samples.iter().filter(|x| x.example == i).collect();
                b.sort_by(|x, y| y.result.score.total_cmp(&x.result.score));
                let max = b.first().map_or(0.0, |x| x.result.score);
                let min = b.last().map_or(0.0, |x| x.result.score);
                let avg = b.iter().map(|x| x.result.score).sum::<f64>() / b.len().max(1) as f64;
                (b, [max - min, max, max - avg])
            })
            .collect();
        buckets.sort_by(|a, b| {
            b.1.iter()
                .zip(a.1.iter())
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });

        let mut candidates: Vec<(Overlay, &'static str, usize)> = Vec::new();
        for (b, (bucket, _)) in buckets.iter().enumerate() {
            if engine.should_stop() {
                return None;
            }
            let top = self.pool.top_k_plus_baseline(self.s.num_candidates);
            let src =
                self.pool
                    .softmax_sample(&mut self.rng, &top, self.s.temperature_for_candidates);
            let mut cand = self.pool.programs[src].clone();
            let dropped = self.drop_demos(&mut cand);
            let strategy = if self.s.max_demos > 0 && self.rng.gen_bool(0.5) {
                Strategy::Demo
            } else {
                Strategy::Rule
            };
            // As in DSPy, a strategy that declines (its contrast is too
            // weak) still leaves a candidate; only a failed request drops it.
            let applied = match strategy {
                Strategy::Demo => self.append_demo(bucket, &mut cand, p10),
                Strategy::Rule => {
                    match self.append_rule(bucket, &mut cand, p10, p90, step, b).await {
                        Ok(applied) => applied,
                        Err(e) => {
                            engine
                                .reporter
                                .note(&format!("simba: no rule this time: {e}"));
                            continue;
                        }
                    }
                }
            };
            let origin = match (strategy, applied) {
                (Strategy::Demo, true) => "append_demo",
                (Strategy::Rule, true) => "append_rule",
                _ if dropped > 0 => "drop_demos",
                _ => "copy",
            };
            candidates.push((cand, origin, src));
            if candidates.len() > self.s.num_candidates {
                break;
            }
        }

        // Score the new programs on the same mini-batch at the task temperature.
        let mut best: Option<(usize, f64)> = None;
        for (cand, origin, src) in candidates {
            engine.reporter.phase("minibatch", batch.len());
            let results = engine.evaluate(&cand, Split::Train, batch).await;
            engine.reporter.phase_done();
            if results.len() != batch.len() {
                return None;
            }
            let scores: Vec<f64> = results.iter().map(|r| r.score).collect();
            let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
            let idx = self.pool.programs.len();
            self.records.push(CandidateRecord {
                id: idx,
                origin: origin.into(),
                demos: demo_counts(&cand),
                overlay_hash: overlay_hash(&cand),
                parents: vec![src],
                instructions: instruction_diff(&cand, engine.program),
                minibatch_score: Some(mean),
                ..Default::default()
            });
            if best.is_none_or(|(_, m)| mean > m) {
                best = Some((idx, mean));
            }
            self.pool.programs.push(cand);
            self.pool.scores.push(scores);
        }
        Some(best.map(|(i, _)| i))
    }

    /// Drop a Poisson number of demo positions from every predictor (at
    /// least one once a predictor holds `max_demos`), making room to grow.
    /// Returns how many positions were drawn.
    fn drop_demos(&mut self, cand: &mut Overlay) -> usize {
        let cap = if self.s.max_demos > 0 {
            self.s.max_demos
        } else {
            3
        };
        let held = cand
            .predictors
            .values()
            .map(|s| s.demos.len())
            .max()
            .unwrap_or(0);
        let n = poisson(&mut self.rng, held as f64 / cap as f64)
            .max(usize::from(held >= cap))
            .min(held);
        let gone: BTreeSet<usize> = (0..n).map(|_| self.rng.gen_range(0..held)).collect();
        for st in cand.predictors.values_mut() {
            let mut i = 0;
            st.demos.retain(|_| {
                i += 1;
                !gone.contains(&(i - 1))
            });
        }
        n
    }

    /// Append, to every predictor that ran, the last demo its best run made.
    fn append_demo(&mut self, bucket: &[&Sample], cand: &mut Overlay, p10: f64) -> bool {
        let Some(good) = bucket.first() else {
            return false;
        };
        if good.result.score < p10 {
            return false;
        }
        let max = self.s.demo_input_field_maxlen;
        let mut by_path: BTreeMap<String, Demo> = BTreeMap::new();
        for step in good.result.trace.iter().flat_map(|t| &t.steps) {
            let (Some(path), Some(outputs)) = (&step.predictor, &step.outputs) else {
                continue;
            };
            let mut fields: Map<String, Value> = step
                .inputs
                .iter()
                .map(|(k, v)| (k.clone(), truncate(v, max)))
                .collect();
            fields.extend(outputs.iter().map(|(k, v)| (k.clone(), v.clone())));
            by_path.insert(
                path.clone(),
                Demo {
                    fields,
                    augmented: true,
                },
            );
        }
        let applied = !by_path.is_empty();
        for (path, demo) in by_path {
            cand.predictors.entry(path).or_default().demos.push(demo);
        }
        self.demos_appended += usize::from(applied);
        applied
    }

    /// Ask the prompt LM for advice from the contrast between the bucket's
    /// best and worst runs and append it to each advised predictor's
    /// instruction. `Ok(false)` when the contrast is too weak to ask.
    async fn append_rule(
        &mut self,
        bucket: &[&Sample],
        cand: &mut Overlay,
        p10: f64,
        p90: f64,
        step: usize,
        b: usize,
    ) -> Result<bool, String> {
        let engine = self.engine;
        let (Some(good), Some(bad)) = (bucket.first(), bucket.last()) else {
            return Ok(false);
        };
        if good.result.score < p10 || bad.result.score > p90 {
            return Ok(false);
        }
        // Without a real contrast DSPy shows one side as unavailable.
        let (mut show_good, mut show_bad) = (true, true);
        if good.result.score <= bad.result.score {
            if good.result.score > p90 {
                show_bad = false;
            } else {
                show_good = false;
            }
        }
        let modules: Vec<String> = engine
            .program
            .predictors()
            .iter()
            .map(|p| {
                format!(
                    "{}\n  instructions: {}",
                    describe_module(p),
                    current_instruction(cand, p)
                )
            })
            .collect();
        let names: Vec<String> = engine
            .program
            .predictors()
            .iter()
            .map(|p| p.path.clone())
            .collect();
        let r = &good.result;
        let mut inputs = Map::new();
        inputs.insert(
            "program_description".into(),
            json!(describe_program(engine.program)),
        );
        inputs.insert("modules_defn".into(), json!(modules.join("\n")));
        inputs.insert(
            "program_inputs".into(),
            json!(pretty(&Value::Object(r.inputs.clone()))),
        );
        inputs.insert(
            "oracle_metadata".into(),
            json!(pretty(&Value::Object(r.expected.clone()))),
        );
        for (side, x, shown) in [("worse", bad, show_bad), ("better", good, show_good)] {
            let (traj, outs, reward, info) = if shown {
                (
                    trajectory(x.result.trace.as_ref()),
                    pretty(
                        &x.result
                            .outputs
                            .clone()
                            .map(Value::Object)
                            .unwrap_or(json!({})),
                    ),
                    format!("{}", x.result.score),
                    x.result
                        .feedback
                        .clone()
                        .or_else(|| x.result.error.clone())
                        .unwrap_or_default(),
                )
            } else {
                (
                    "[]".into(),
                    "{\"N/A\": \"Prediction not available\"}".into(),
                    "N/A".into(),
                    String::new(),
                )
            };
            inputs.insert(format!("{side}_program_trajectory"), json!(traj));
            inputs.insert(format!("{side}_program_outputs"), json!(outs));
            inputs.insert(format!("{side}_reward_value"), json!(reward));
            inputs.insert(format!("{side}_reward_info"), json!(info));
        }
        inputs.insert("module_names".into(), json!(names));
        let mut trace = Trace::default();
        let out = call_predictor(
            &engine.prompt_ctx(),
            &Overlay::default(),
            "simba",
            "simba.offer_feedback",
            &offer_feedback(),
            &inputs,
            Some((step * 1000 + b) as u64),
            &mut trace,
        )
        .await
        .map_err(|e| e.to_string())?;
        let advice = out
            .get("module_advice")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut applied = false;
        for p in engine.program.predictors() {
            let Some(text) = advice.get(&p.path).and_then(Value::as_str).map(str::trim) else {
                continue;
            };
            if text.is_empty() {
                continue;
            }
            let next = format!("{}\n\n{text}", current_instruction(cand, &p));
            *cand = with_instruction(cand, &p.path, &next);
            applied = true;
        }
        self.rules_appended += usize::from(applied);
        Ok(applied)
    }

    /// Score pool program `idx` on the valset (the engine caches scores)
    /// and note it in its history record.
    async fn score(&mut self, idx: usize) -> Option<super::Scored> {
        let engine = self.engine;
        engine.reporter.phase("evaluating", engine.valset.len());
        let scored = engine.score(&self.pool.programs[idx]).await;
        engine.reporter.phase_done();
        let rec = &mut self.records[idx];
        rec.score = scored.map(|s| s.mean);
        rec.full_score = rec.score;
        engine.report_candidate(rec);
        scored
    }

    /// Score the start and evenly spaced step winners on the valset; keep the best.
    async fn finish(
        mut self,
        winners: Vec<usize>,
        bsize: usize,
        steps_run: usize,
    ) -> Result<Outcome, OptimizeError> {
        let engine = self.engine;
        let m = winners.len() - 1;
        let n = self.s.num_candidates + 1;
        let mut picks: Vec<usize> = if m < 1 {
            vec![0]
        } else {
            (0..n)
                .map(|i| ((i * m) as f64 / (n - 1) as f64).round() as usize)
                .collect()
        };
        let mut seen = BTreeSet::new();
        picks.retain(|i| seen.insert(*i));
        let mut best: Option<(usize, super::Scored)> = None;
        for w in &picks {
            let idx = winners[*w];
            let scored = self.score(idx).await;
            if let Some(s) = scored {
                if best.as_ref().is_none_or(|(_, b)| s.mean > b.mean) {
                    best = Some((idx, s));
                }
            }
            if engine.should_stop() && best.is_some() {
                break;
            }
        }
        let baseline = self.records[0].score;
        if let Some((idx, _)) = best {
            self.records[idx].accepted = Some(true);
        }
        engine.adopt_history(std::mem::take(&mut self.records));
        let Some((best, score)) = best else {
            return Err(OptimizeError::Budget(
                engine.budget_message().unwrap_or_else(|| {
                    "no candidate was scored on the whole validation set".into()
                }),
            ));
        };
        let mut plan = BTreeMap::new();
        plan.insert("bsize".into(), json!(bsize));
        plan.insert("steps".into(), json!(steps_run));
        plan.insert("programs".into(), json!(self.pool.programs.len()));
        plan.insert("demos_appended".into(), json!(self.demos_appended));
        plan.insert("rules_appended".into(), json!(self.rules_appended));
        plan.insert("final_candidates".into(), json!(picks.len()));
        Ok(Outcome {
            best: self.pool.programs[best].clone(),
            best_score: Some(score),
            baseline_score: baseline,
            train_score: None,
            plan,
            history: engine.history(),
        })
    }
}

fn demo_counts(o: &Overlay) -> BTreeMap<String, usize> {
    o.predictors
        .iter()
        .filter(|(_, s)| !s.demos.is_empty())
        .map(|(p, s)| (p.clone(), s.demos.len()))
        .collect()
}

/// A string value cut at `max` characters, marked as cut.
fn truncate(v: &Value, max: usize) -> Value {
    match v.as_str() {
        Some(s) if s.chars().count() > max => {
            let cut: String = s.chars().take(max).collect();
            json!(format!("{cut}\n\t\t... <TRUNCATED FOR BREVITY>"))
        }
        _ => v.clone(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Each predictor call of a run as `{module_name, inputs, outputs}`.
fn trajectory(trace: Option<&Trace>) -> String {
    let steps: Vec<Value> = trace
        .iter()
        .flat_map(|t| &t.steps)
        .filter_map(|s| {
            Some(json!({
                "module_name": s.predictor.as_ref()?,
                "inputs": s.inputs,
                "outputs": s.outputs.clone().unwrap_or_default(),
            }))
        })
        .collect();
    pretty(&Value::Array(steps))
}

fn field(name: &str, ty: FieldType, desc: &str) -> Field {
    let mut f = Field::new(name, ty);
    f.description = Some(desc.to_string());
    f
}

/// The feedback request (DSPy's `OfferFeedback`, in our own words).
fn offer_feedback() -> Signature {
    let s = || FieldType::String;
    Signature {
        instructions: Some(
            "You are shown two runs of a program built from LM-calling modules on the same input: a worse run and a \
             better run, each with every module's inputs and outputs and the reward the outputs received. Help each \
             module earn a higher reward on similar inputs in the future. A module will not see these runs, only your \
             advice, so make the advice concrete enough to change its behaviour and general enough to apply to other \
             inputs. Contrast the worse run with the better one, keep each piece of advice specific to that module's \
             own sub-task, avoid boilerplate, and give advice for every listed module exactly once."
                .into(),
        ),
        inputs: vec![
            field("program_description", s(), "the program and its steps"),
            field("modules_defn", s(), "each module's input and output fields and its current instructions"),
            field("program_inputs", s(), "the program's inputs in these runs"),
            field("oracle_metadata", s(), "the expected outputs (hidden from the program)"),
            field("worse_program_trajectory", s(), "each module's inputs and outputs in the worse run"),
            field("worse_program_outputs", s(), "the worse run's outputs"),
            field("worse_reward_value", s(), "the reward of the worse run"),
            field("worse_reward_info", s(), "the metric's feedback on the worse run, if any"),
            field("better_program_trajectory", s(), "each module's inputs and outputs in the better run"),
            field("better_program_outputs", s(), "the better run's outputs"),
            field("better_reward_value", s(), "the reward of the better run"),
            field("better_reward_info", s(), "the metric's feedback on the better run, if any"),
            field(
                "module_names",
                FieldType::List { item: Box::new(FieldType::String) },
                "the modules to advise",
            ),
        ],
        outputs: vec![
            field("discussion", s(), "where each module went wrong, if it did"),
            field(
                "module_advice",
                FieldType::Json { schema: None },
                "an object from each module name to advice of the form: if the module receives <a description of \
                 the input or its patterns>, then it should <behaviour or strategy to adopt, or to avoid>; such that \
                 a module following it acts like the better run rather than the worse one",
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear_interpolation() {
        let v = [0.0, 1.0, 0.0, 1.0, 1.0];
        assert!((percentile(&v, 10.0) - 0.0).abs() < 1e-12);
        assert!((percentile(&v, 90.0) - 1.0).abs() < 1e-12);
        assert!((percentile(&[1.0, 2.0, 3.0, 4.0], 10.0) - 1.3).abs() < 1e-12);
    }

    #[test]
    fn sampling_temperatures_follow_dspy() {
        let t = sampling_temperatures(0.0, 4);
        assert_eq!(t, vec![0.5, 0.625, 0.75, 0.875]);
    }

    #[test]
    fn the_pool_keeps_the_start_and_samples_by_softmax() {
        let pool = Pool {
            programs: vec![Overlay::default(); 4],
            scores: vec![vec![0.0], vec![1.0], vec![0.9], vec![0.8]],
        };
        assert_eq!(pool.top_k_plus_baseline(2), vec![1, 0]);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let draws: Vec<usize> = (0..200)
            .map(|_| pool.softmax_sample(&mut rng, &[0, 1], 0.2))
            .collect();
        let ones = draws.iter().filter(|&&i| i == 1).count();
        // exp(5) : 1 — the better program is drawn about 99% of the time.
        assert!(ones > 180, "drew the better program {ones} of 200 times");
        // Scores far above 1 do not overflow the softmax.
        let big = Pool {
            programs: vec![Overlay::default(); 2],
            scores: vec![vec![1e6], vec![1e6 - 1.0]],
        };
        assert_eq!(big.softmax_sample(&mut rng, &[0, 1], 0.01), 0);
    }

    #[test]
    fn poisson_draws_have_the_requested_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 4000;
        let mean = (0..n).map(|_| poisson(&mut rng, 1.5)).sum::<usize>() as f64 / n as f64;
        assert!((mean - 1.5).abs() < 0.1, "mean {mean}");
        assert_eq!(poisson(&mut rng, 0.0), 0);
    }
}
