//! The engine every optimizer runs on: it runs the immutable program with
//! candidate overlays, scores them on the validation set and keeps the
//! books.
//!
//! Shared concerns live here once: the LM context (already wrapped by the
//! LM layer with the response cache and the budget), concurrency, a
//! candidate-score cache (the same overlay on the same valset is never
//! evaluated twice in one compile), progress through [`CompileReporter`],
//! the search history (with the best score so far, which the progress bars
//! show), usage tallies, the prompt LM instruction searches ask for text
//! (`--prompt-lm`, else the task LM), and the stop check every strategy
//! consults before issuing new work ([`Engine::should_stop`]): a spent
//! budget, a stop hook, or an [`Interrupt`] (SIGINT/SIGTERM from the CLI).
//! An interrupt also reaches the example runs in flight, which get the
//! interrupt's grace period to finish; the engine keeps the best candidate
//! scored on the whole valset so far, so a caller that stops waiting for
//! the search can still keep it ([`Engine::best_scored`]). Usage is counted from the traces
//! (every request, cache hits included), so the lineage figures are the
//! same when a compile is resumed from the cache (or from a checkpoint,
//! which carries the tallies: [`super::checkpoint`], taken by resumable
//! searches through [`Engine::save_checkpoint`]). A spent budget never
//! aborts: the engine marks itself exhausted, strategies stop proposing and
//! the best candidate scored so far wins.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::artifact::{overlay_hash, CandidateRecord};
use crate::data::Example;
use crate::eval::{EvalError, EvalOptions, EvalReporter, ExampleResult, RunningStats};
use crate::interrupt::Interrupt;
use crate::lm::Usage;
use crate::metric::Metric;
use crate::overlay::Overlay;
use crate::program::Program;
use crate::run::RunContext;

/// Progress of a compile, implemented by the CLI (bars on stderr). Called
/// from the compiling task; phases do not overlap.
pub trait CompileReporter: Send + Sync {
    /// A phase begins (`bootstrapping`, `candidates`) with `total` example runs.
    fn phase(&self, _name: &str, _total: usize) {}
    /// One example run of the current phase finished.
    fn tick(&self) {}
    /// A candidate was scored; `best` is the best valset score so far.
    fn candidate(&self, _record: &CandidateRecord, _best: f64) {}
    fn phase_done(&self) {}
    /// Something the user should know (budget exhausted, early stop).
    fn note(&self, _message: &str) {}
}

/// Reports nothing (library callers, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopCompileReporter;
impl CompileReporter for NoopCompileReporter {}

/// Which dataset an evaluation runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
}

/// A candidate's score on the valset.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scored {
    pub mean: f64,
    pub ci95: [f64; 2],
    pub n: usize,
}

/// Adapts per-example eval callbacks to compile-phase ticks.
struct Ticks<'a>(&'a dyn CompileReporter);
impl EvalReporter for Ticks<'_> {
    fn example_done(&self, _r: &ExampleResult, _s: &RunningStats) {
        self.0.tick();
    }
}

#[derive(Default)]
struct Tally {
    requests: u64,
    usage: Usage,
}

/// See the module docs.
pub struct Engine<'a> {
    pub program: &'a Program,
    pub metric: &'a Metric,
    pub trainset: &'a [Example],
    /// The examples candidates are scored on (the trainset when no valset is given).
    pub valset: &'a [Example],
    pub ctx: RunContext,
    pub concurrency: usize,
    pub seed: u64,
    pub reporter: &'a dyn CompileReporter,
    scores: Mutex<HashMap<String, Option<Scored>>>,
    /// Complete runs of a candidate on a list of examples, so no candidate
    /// runs twice on the same examples in one compile.
    results: Mutex<HashMap<String, Vec<ExampleResult>>>,
    history: Mutex<Vec<CandidateRecord>>,
    tally: Mutex<Tally>,
    /// Every candidate run on the whole valset, in order, with its
    /// per-example scores and cost: what `--objective` chooses among.
    measured: Mutex<Vec<super::objective::Measured>>,
    objective: super::objective::Objective,
    /// USD per million prompt and completion tokens, when configured.
    prices: Option<(f64, f64)>,
    tradeoff: Mutex<Option<crate::artifact::Tradeoff>>,
    exhausted: AtomicBool,
    budget_message: Mutex<Option<String>>,
    best: Mutex<Option<f64>>,
    prompt: Option<RunContext>,
    /// The context bootstrapping's teacher runs in (`compile.teacher_lm`).
    teacher: Option<RunContext>,
    stop: Option<StopHook>,
    /// Fired by the CLI's signal handlers; never fires when none was given.
    interrupt: Interrupt,
    /// The best candidate scored on the whole valset so far (the earlier
    /// one on ties, as the searches choose).
    best_scored: Mutex<Option<(Overlay, Scored)>>,
    /// The overlay compiled from (an artifact) and what the optimizer
    /// searches: candidates run layered over it ([`super::compose`]).
    base: Option<(Overlay, super::Searches)>,
    /// Where a resumable search's state goes, and the state it resumes
    /// from ([`super::checkpoint`]).
    checkpoint: Option<super::checkpoint::Hook>,
    resume: Mutex<Option<serde_json::Value>>,
}

/// An outside reason to stop issuing new candidates and calls (e.g. an
/// interruption token), checked by [`Engine::should_stop`].
pub type StopHook = Box<dyn Fn() -> bool + Send + Sync>;

impl<'a> Engine<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        program: &'a Program,
        metric: &'a Metric,
        trainset: &'a [Example],
        valset: &'a [Example],
        ctx: RunContext,
        concurrency: usize,
        seed: u64,
        reporter: &'a dyn CompileReporter,
    ) -> Self {
        Engine {
            program,
            metric,
            trainset,
            valset,
            ctx,
            concurrency: concurrency.max(1),
            seed,
            reporter,
            scores: Mutex::new(HashMap::new()),
            results: Mutex::new(HashMap::new()),
            history: Mutex::new(Vec::new()),
            tally: Mutex::new(Tally::default()),
            measured: Mutex::new(Vec::new()),
            objective: Default::default(),
            prices: None,
            tradeoff: Mutex::new(None),
            exhausted: AtomicBool::new(false),
            budget_message: Mutex::new(None),
            best: Mutex::new(None),
            prompt: None,
            teacher: None,
            stop: None,
            interrupt: Interrupt::new(),
            best_scored: Mutex::new(None),
            base: None,
            checkpoint: None,
            resume: Mutex::new(None),
        }
    }

    /// Choose the winner by `objective` among the candidates scored on
    /// the whole valset ([`super::objective`]); prices (USD per million
    /// prompt and completion tokens) give the trade-off report a cost.
    pub fn with_objective(
        mut self,
        objective: super::objective::Objective,
        prices: Option<(f64, f64)>,
    ) -> Self {
        self.objective = objective;
        self.prices = prices;
        self
    }

    pub fn objective(&self) -> &super::objective::Objective {
        &self.objective
    }

    /// The candidates run on the whole valset so far, in order.
    pub fn measured(&self) -> Vec<super::objective::Measured> {
        self.measured.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The trade-off report, once `optimize::compile` chose a winner.
    pub fn tradeoff(&self) -> Option<crate::artifact::Tradeoff> {
        self.tradeoff.lock().ok().and_then(|t| t.clone())
    }

    pub(super) fn set_tradeoff(&self, t: crate::artifact::Tradeoff) {
        if let Ok(mut m) = self.tradeoff.lock() {
            *m = Some(t);
        }
    }

    /// Start from `base` (an artifact's overlay): every candidate runs, and
    /// the winner is written, layered over it; `searches` says which parts
    /// the candidates own.
    pub fn with_base(mut self, base: Overlay, searches: super::Searches) -> Self {
        self.base = Some((base, searches));
        self
    }

    /// The overlay the search starts from (empty without a base).
    pub fn start(&self) -> Overlay {
        self.base
            .as_ref()
            .map(|(b, _)| b.clone())
            .unwrap_or_default()
    }

    /// `candidate` as it runs: layered over the base, if any.
    pub fn layered(&self, candidate: &Overlay) -> Overlay {
        match &self.base {
            Some((base, searches)) => super::compose::layer(base, candidate, *searches),
            None => candidate.clone(),
        }
    }

    /// Stop issuing candidates and LM calls once `interrupt` fires; example
    /// runs in flight get its grace period to finish.
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Why the search was interrupted (`SIGINT`, `SIGTERM`), once it was.
    pub fn interrupted(&self) -> Option<String> {
        self.interrupt.is_requested().then(|| {
            self.interrupt
                .reason()
                .unwrap_or("stop requested")
                .to_string()
        })
    }

    /// The best candidate scored on every valset example so far, with its
    /// score: what an interrupted compile keeps when the search itself
    /// could not hand back its choice. Layered over the base (as it was
    /// scored, and as `optimize::compile` writes a winner).
    pub fn best_scored(&self) -> Option<(Overlay, Scored)> {
        self.best_scored.lock().ok().and_then(|b| b.clone())
    }

    /// Hand every checkpoint a resumable search takes to `hook`; `resume`
    /// is a checkpoint of this stage to continue from: its books are
    /// restored now, its search state when the search asks
    /// ([`Engine::resume_state`]).
    pub fn with_checkpoints(
        mut self,
        hook: super::checkpoint::Hook,
        resume: Option<super::checkpoint::SearchState>,
    ) -> Self {
        self.checkpoint = Some(hook);
        if let Some(r) = resume {
            self.restore_books(r.books);
            self.resume = Mutex::new(Some(r.state));
        }
        self
    }

    /// The search state a resumed compile continues from, once (a search
    /// asks at its start). An error when it is not this search's state.
    pub fn resume_state<T: serde::de::DeserializeOwned>(
        &self,
        optimizer: &str,
    ) -> Result<Option<T>, super::OptimizeError> {
        let Some(v) = self.resume.lock().ok().and_then(|mut r| r.take()) else {
            return Ok(None);
        };
        serde_json::from_value(v)
            .map(Some)
            .map_err(|e| super::OptimizeError::Search {
                optimizer: optimizer.to_string(),
                message: format!("the checkpoint's search state does not fit: {e}"),
            })
    }

    /// Whether checkpoints are being taken (a search skips building its
    /// state otherwise).
    pub fn checkpointing(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// Take a checkpoint: the search's `state` after `done` of `total`
    /// steps (`unit`: trial, iteration), with the engine's books. Only
    /// between steps, never with a step cut short: a stopped engine takes
    /// none (the last one stands).
    pub fn save_checkpoint(&self, unit: &str, done: usize, total: usize, state: serde_json::Value) {
        let Some(hook) = &self.checkpoint else {
            return;
        };
        if self.should_stop() {
            return;
        }
        hook(super::checkpoint::SearchState {
            unit: unit.to_string(),
            done,
            total,
            state,
            books: self.books(),
        });
    }

    /// What the engine has counted and kept, for a checkpoint.
    pub fn books(&self) -> super::checkpoint::Books {
        let (requests, usage) = self.usage();
        super::checkpoint::Books {
            requests,
            usage,
            history: self.history(),
            scores: self
                .scores
                .lock()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.map(|s| (k.clone(), s)))
                        .collect()
                })
                .unwrap_or_default(),
            best_scored: self.best_scored(),
            best: self.best.lock().ok().and_then(|b| *b),
        }
    }

    /// Continue from a checkpoint's books: counts, history, full scores.
    pub fn restore_books(&self, b: super::checkpoint::Books) {
        if let Ok(mut t) = self.tally.lock() {
            t.requests = b.requests;
            t.usage = b.usage;
        }
        if let Ok(mut h) = self.history.lock() {
            *h = b.history;
        }
        if let Ok(mut m) = self.scores.lock() {
            m.extend(b.scores.into_iter().map(|(k, s)| (k, Some(s))));
        }
        if let Ok(mut x) = self.best_scored.lock() {
            *x = b.best_scored;
        }
        if let Ok(mut x) = self.best.lock() {
            *x = b.best;
        }
    }

    /// Run proposals and reflections on `ctx` instead of the task LM.
    pub fn with_prompt_lm(mut self, ctx: RunContext) -> Self {
        self.prompt = Some(ctx);
        self
    }

    /// Run bootstrapping's teacher on `ctx` instead of the task LM.
    pub fn with_teacher_lm(mut self, ctx: RunContext) -> Self {
        self.teacher = Some(ctx);
        self
    }

    /// The context the teacher program runs in: `compile.teacher_lm` when
    /// named (every predictor of the teacher on that LM, as DSPy's
    /// `teacher_settings=dict(lm=...)`), else the task's own.
    pub fn teacher_ctx(&self) -> RunContext {
        self.teacher.clone().unwrap_or_else(|| self.ctx.clone())
    }

    /// Consult `hook` in [`Engine::should_stop`] (a graceful interruption).
    pub fn with_stop_hook(mut self, hook: StopHook) -> Self {
        self.stop = Some(hook);
        self
    }

    /// The LM that writes instructions: `--prompt-lm` when given, else the
    /// task LM (as DSPy defaults `prompt_model` to the task model).
    pub fn prompt_ctx(&self) -> RunContext {
        self.prompt.clone().unwrap_or_else(|| self.ctx.clone())
    }

    /// Whether strategies must stop issuing new candidates and LM calls:
    /// the budget is spent or the stop hook (interruption) says so. The
    /// best candidate scored so far still wins.
    pub fn should_stop(&self) -> bool {
        self.exhausted() || self.interrupt.is_requested() || self.stop.as_ref().is_some_and(|f| f())
    }

    /// Whether an LM budget ran out; strategies stop proposing when it has.
    pub fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::SeqCst)
    }

    pub fn budget_message(&self) -> Option<String> {
        self.budget_message.lock().ok().and_then(|m| m.clone())
    }

    /// LM requests made so far (cache hits included) and their tokens.
    pub fn usage(&self) -> (u64, Usage) {
        self.tally
            .lock()
            .map(|t| (t.requests, t.usage))
            .unwrap_or_default()
    }

    pub fn history(&self) -> Vec<CandidateRecord> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn count(&self, results: &[ExampleResult]) {
        if let Ok(mut t) = self.tally.lock() {
            for r in results {
                t.requests += (r.lm_calls + r.cache_hits) as u64;
                t.usage += r.usage;
            }
        }
    }

    fn mark_exhausted(&self, message: String) {
        if !self.exhausted.swap(true, Ordering::SeqCst) {
            self.reporter.note(&format!(
                "{message}; keeping the best candidate so far (replies are cached: re-run with a larger budget to resume)"
            ));
            if let Ok(mut m) = self.budget_message.lock() {
                *m = Some(message);
            }
        }
    }

    /// Run `overlay` on `examples` with `ctx`, keeping traces, results in
    /// example order. When the budget runs out, returns what finished.
    pub async fn run_examples(
        &self,
        ctx: &RunContext,
        overlay: &Overlay,
        examples: &[Example],
        concurrency: usize,
    ) -> Vec<ExampleResult> {
        if examples.is_empty() || self.should_stop() {
            return Vec::new();
        }
        let opts = EvalOptions {
            concurrency: concurrency.max(1),
            max_errors: None,
            keep_traces: true,
        };
        let ticks = Ticks(self.reporter);
        // An interrupted evaluation is `Ok` with the examples that finished
        // (fewer than asked): callers treat it like a budget stop, and
        // `should_stop` is already true.
        let overlay = &self.layered(overlay);
        let results = match crate::eval::evaluate_until(
            ctx,
            self.program,
            overlay,
            examples,
            self.metric,
            &opts,
            &ticks,
            &self.interrupt,
        )
        .await
        {
            Ok(report) => report.results,
            Err(EvalError::Budget {
                message, partial, ..
            }) => {
                self.mark_exhausted(message);
                partial.results
            }
            Err(EvalError::TooManyErrors { partial, .. }) => partial.results,
            Err(EvalError::Empty) => Vec::new(),
        };
        self.count(&results);
        results
    }

    /// Score `overlay` on the valset (cached by overlay hash). `None` when
    /// the budget ran out before every example was scored: a partial mean
    /// must never compete with full ones.
    pub async fn score(&self, overlay: &Overlay) -> Option<Scored> {
        let key = overlay_hash(overlay);
        if let Some(s) = self.scores.lock().ok().and_then(|m| m.get(&key).cloned()) {
            if s.is_some() || self.should_stop() {
                return s;
            }
        }
        let all: Vec<usize> = (0..self.valset.len()).collect();
        let results = self.evaluate(overlay, Split::Val, &all).await;
        let scored = self.full_score(&results);
        if let Ok(mut m) = self.scores.lock() {
            m.insert(key, scored);
        }
        scored
    }

    /// The valset score of `results` when they cover every valset example.
    fn full_score(&self, results: &[ExampleResult]) -> Option<Scored> {
        (results.len() == self.valset.len() && !results.is_empty()).then(|| {
            let scores: Vec<f64> = results.iter().map(|r| r.score).collect();
            let (lo, hi, _) = crate::eval::stats::ci95(&scores);
            Scored {
                mean: crate::eval::stats::mean(&scores),
                ci95: [lo, hi],
                n: scores.len(),
            }
        })
    }

    /// Keep `overlay` as the best so far when `results` score it on the
    /// whole valset higher than every earlier candidate.
    fn consider_best(&self, overlay: &Overlay, results: &[ExampleResult]) {
        let Some(s) = self.full_score(results) else {
            return;
        };
        if let Ok(mut b) = self.best_scored.lock() {
            if b.as_ref().is_none_or(|(_, old)| s.mean > old.mean) {
                *b = Some((self.layered(overlay), s));
            }
        }
    }

    /// Keep what `overlay` scored and cost on the whole valset (once per
    /// overlay): every optimizer's candidates reach `--objective` this way.
    fn measure(&self, overlay: &Overlay, results: &[ExampleResult]) {
        let m = super::objective::Measured::of(overlay, results, self.prices);
        if let Ok(mut all) = self.measured.lock() {
            if !all.iter().any(|x| x.hash == m.hash) {
                all.push(m);
            }
        }
    }

    /// Run `overlay` on examples `indices` of `split` with the task LM,
    /// results in index order. A complete run is kept for the compile, so a
    /// candidate is never run twice on the same examples (instruction
    /// searches re-score parents and winners); a run cut short by the
    /// budget or a stop is not kept.
    pub async fn evaluate(
        &self,
        overlay: &Overlay,
        split: Split,
        indices: &[usize],
    ) -> Vec<ExampleResult> {
        let key = format!("{}:{split:?}:{indices:?}", overlay_hash(overlay));
        if let Some(r) = self.results.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return r;
        }
        let set = match split {
            Split::Train => self.trainset,
            Split::Val => self.valset,
        };
        let examples: Vec<Example> = indices
            .iter()
            .filter_map(|&i| set.get(i).cloned())
            .collect();
        let results = self
            .run_examples(&self.ctx, overlay, &examples, self.concurrency)
            .await;
        if results.len() == examples.len() {
            if split == Split::Val && indices.len() == self.valset.len() {
                self.measure(overlay, &results);
                self.consider_best(overlay, &results);
                // Kept as a score too: a checkpoint carries scores, not
                // runs, so a resumed search still finds it scored.
                if indices.iter().enumerate().all(|(i, &j)| i == j) {
                    if let Some(sc) = self.full_score(&results) {
                        if let Ok(mut m) = self.scores.lock() {
                            m.insert(overlay_hash(overlay), Some(sc));
                        }
                    }
                }
            }
            if let Ok(mut m) = self.results.lock() {
                m.insert(key, results.clone());
            }
        }
        results
    }

    /// Score one candidate in its own phase and record it in the history.
    pub async fn score_candidate(
        &self,
        overlay: &Overlay,
        origin: &str,
        seed: Option<i64>,
    ) -> Option<Scored> {
        self.reporter.phase("evaluating", self.valset.len());
        let s = self.score(overlay).await;
        self.record(overlay, origin, seed, s.map(|s| s.mean));
        self.reporter.phase_done();
        s
    }

    /// The outcome of a search that makes one candidate and only scores
    /// it (labeled, kNN few-shot): `best` scored on the valset, no baseline
    /// or teacher score, and `plan` for the lineage.
    pub async fn score_only(
        &self,
        best: Overlay,
        origin: &str,
        plan: BTreeMap<String, serde_json::Value>,
    ) -> super::Outcome {
        let best_score = self.score_candidate(&best, origin, None).await;
        super::Outcome {
            best,
            best_score,
            baseline_score: None,
            train_score: None,
            plan,
            history: self.history(),
        }
    }

    fn record(&self, overlay: &Overlay, origin: &str, seed: Option<i64>, score: Option<f64>) {
        let demos: BTreeMap<String, usize> = overlay
            .predictors
            .iter()
            .map(|(p, s)| (p.clone(), s.demos.len()))
            .collect();
        let rec = match self.history.lock() {
            Ok(mut h) => {
                let rec = CandidateRecord {
                    id: h.len(),
                    origin: origin.to_string(),
                    seed,
                    demos,
                    score,
                    overlay_hash: overlay_hash(overlay),
                    ..Default::default()
                };
                h.push(rec.clone());
                rec
            }
            Err(_) => return,
        };
        self.report_candidate(&rec);
    }

    /// Tell the reporter about a scored candidate with the best score so far.
    pub fn report_candidate(&self, rec: &CandidateRecord) {
        let Some(score) = rec.score else { return };
        let best = match self.best.lock() {
            Ok(mut b) => {
                let v = b.map_or(score, |x: f64| x.max(score));
                *b = Some(v);
                v
            }
            Err(_) => return,
        };
        self.reporter.candidate(rec, best);
    }

    /// Append a search's own records (instruction searches keep parents and
    /// ids of their own); their progress was reported as they were made.
    pub fn adopt_history(&self, records: Vec<CandidateRecord>) {
        if let Ok(mut h) = self.history.lock() {
            h.extend(records);
        }
    }
}
