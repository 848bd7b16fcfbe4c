//! The engine every optimizer runs on: it runs the immutable program with
//! candidate overlays, scores them on the validation set and keeps the
//! books.
//!
//! Shared concerns live here once: the LM context (already wrapped by the
//! LM layer with the response cache and the budget), concurrency, a
//! candidate-score cache (the same overlay on the same valset is never
//! evaluated twice in one compile), progress through [`CompileReporter`],
//! the search history and usage tallies. Usage is counted from the traces
//! (every request, cache hits included), so the lineage figures are the
//! same when a compile is resumed from the cache. A spent budget never
//! aborts: the engine marks itself exhausted, strategies stop proposing and
//! the best candidate scored so far wins.

use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::artifact::{overlay_hash, CandidateRecord};
use crate::data::Example;
use crate::eval::{EvalError, EvalOptions, EvalReporter, ExampleResult, RunningStats};
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

/// A candidate's score on the valset.
#[derive(Debug, Clone, Copy, PartialEq)]
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
    history: Mutex<Vec<CandidateRecord>>,
    tally: Mutex<Tally>,
    exhausted: AtomicBool,
    budget_message: Mutex<Option<String>>,
}

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
            history: Mutex::new(Vec::new()),
            tally: Mutex::new(Tally::default()),
            exhausted: AtomicBool::new(false),
            budget_message: Mutex::new(None),
        }
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
        if examples.is_empty() || self.exhausted() {
            return Vec::new();
        }
        let opts = EvalOptions {
            concurrency: concurrency.max(1),
            max_errors: None,
            keep_traces: true,
        };
        let ticks = Ticks(self.reporter);
        let results = match crate::eval::evaluate(
            ctx,
            self.program,
            overlay,
            examples,
            self.metric,
            &opts,
            &ticks,
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
    pub async fn score(&self, overlay: &Overlay, concurrency: usize) -> Option<Scored> {
        let key = overlay_hash(overlay);
        if let Some(s) = self.scores.lock().ok().and_then(|m| m.get(&key).cloned()) {
            if s.is_some() || self.exhausted() {
                return s;
            }
        }
        let results = self
            .run_examples(&self.ctx, overlay, self.valset, concurrency)
            .await;
        let scored = (results.len() == self.valset.len() && !results.is_empty()).then(|| {
            let scores: Vec<f64> = results.iter().map(|r| r.score).collect();
            let (lo, hi, _) = crate::eval::stats::ci95(&scores);
            Scored {
                mean: crate::eval::stats::mean(&scores),
                ci95: [lo, hi],
                n: scores.len(),
            }
        });
        if let Ok(mut m) = self.scores.lock() {
            m.insert(key, scored);
        }
        scored
    }

    /// Score one candidate in its own phase and record it in the history.
    pub async fn score_candidate(
        &self,
        overlay: &Overlay,
        origin: &str,
        seed: Option<i64>,
    ) -> Option<Scored> {
        self.reporter.phase("evaluating", self.valset.len());
        let s = self.score(overlay, self.concurrency).await;
        self.record(overlay, origin, seed, s.map(|s| s.mean));
        self.reporter.phase_done();
        s
    }

    /// Score several candidates, running as many at once as the
    /// concurrency allows when the valset is smaller than it. Results come
    /// back in candidate order and are recorded in that order; with
    /// `stop_at`, candidates after the first reaching it are not scored.
    pub async fn score_all(
        &self,
        candidates: &[(Overlay, String, Option<i64>)],
        stop_at: Option<f64>,
    ) -> Vec<Option<Scored>> {
        self.reporter
            .phase("evaluating", candidates.len() * self.valset.len());
        let per = self.concurrency.min(self.valset.len().max(1));
        let width = (self.concurrency / per).max(1);
        let mut out = Vec::with_capacity(candidates.len());
        let mut best = f64::NEG_INFINITY;
        let mut stream = futures::stream::iter(candidates.iter())
            .map(|(o, _, _)| self.score(o, per))
            .buffered(width);
        let mut i = 0;
        while let Some(s) = stream.next().await {
            let (o, origin, seed) = &candidates[i];
            i += 1;
            self.record(o, origin, *seed, s.map(|s| s.mean));
            if let Some(s) = s {
                if s.mean > best {
                    best = s.mean;
                }
                if let Some(r) = self.history().last() {
                    self.reporter.candidate(r, best);
                }
            }
            out.push(s);
            if stop_at.is_some_and(|t| s.is_some_and(|s| s.mean >= t)) || self.exhausted() {
                self.reporter.note(&format!(
                    "stopping after candidate {} of {}",
                    i,
                    candidates.len()
                ));
                break;
            }
        }
        drop(stream);
        self.reporter.phase_done();
        out
    }

    fn record(&self, overlay: &Overlay, origin: &str, seed: Option<i64>, score: Option<f64>) {
        let demos: BTreeMap<String, usize> = overlay
            .predictors
            .iter()
            .map(|(p, s)| (p.clone(), s.demos.len()))
            .collect();
        if let Ok(mut h) = self.history.lock() {
            let id = h.len();
            h.push(CandidateRecord {
                id,
                origin: origin.to_string(),
                seed,
                demos,
                score,
                overlay_hash: overlay_hash(overlay),
                extra: BTreeMap::new(),
            });
        }
    }
}
