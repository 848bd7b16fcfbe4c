//! The eval runner: run every example through the program with bounded
//! concurrency, score it, and return results in input order.
//!
//! A failed example (LM error, unparseable reply, metric error) becomes a
//! result scored 0 carrying the error and the raw reply, because one bad
//! reply in a thousand must not cost the other 999 (DSPy's Evaluate does
//! the same). The run stops early when `max_errors` is exceeded, an LM
//! budget runs out, or an [`Interrupt`] fires; all three return the
//! finished results marked incomplete, and since every LM reply is cached
//! as it arrives, re-running resumes where it stopped. After an interrupt
//! no new LM call starts at all: examples whose calls are all in flight
//! may finish within the grace period, and an example that would need
//! another call (a second module, a retry of refine) is abandoned unscored
//! rather than recorded as a failure.
//!
//! Each example runs as its own tokio task so that program work (prompt
//! rendering, HTTP exchanges, parsing, scoring) spreads over the runtime's
//! worker threads; the calling task only starts examples and folds their
//! results. With one future set polled by the caller, every example ran on
//! the one thread that called `block_on` (64% of the CPU samples at
//! concurrency 1,024, docs/lm.md). Every task is aborted and awaited before
//! the evaluation returns, so a stopped run leaves nothing running behind it.

use serde_json::Map;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

use super::{
    DatasetInfo, EvalError, EvalOptions, EvalReport, EvalReporter, ExampleResult, LabelField,
    RunStatus, RunningStats, Summary, REPORT_FORMAT,
};
use crate::data::Example;
use crate::interrupt::Interrupt;
use crate::lm::{Lm, LmError, LmRequest, LmResponse};
use crate::metric::{Metric, MetricContext};
use crate::overlay::Overlay;
use crate::program::Program;
use crate::run::{run_program, RunContext, RunError};
use crate::signature::FieldType;

/// What happened to one example, before it is folded into the totals.
enum Outcome {
    Done(Box<ExampleResult>),
    /// The LM budget ran out during this example: stop, do not record it.
    Budget(String),
    /// Interrupted before it could finish: do not record it.
    Abandoned,
}

/// The example's LM, refusing new calls once the interrupt fired and
/// remembering that it did, so the runner can tell an example cut short by
/// the interrupt from one that failed on its own. One per example.
struct StopGuard {
    inner: crate::lm::SharedLm,
    interrupt: Interrupt,
    /// Shared by the guards of every LM of one example's run.
    refused: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Lm for StopGuard {
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
        if self.interrupt.is_requested() {
            self.refused.store(true, Ordering::SeqCst);
            return Err(LmError::Fatal(
                "interrupted: no new LM calls are started".into(),
            ));
        }
        self.inner.complete(req).await
    }
    fn model(&self) -> String {
        self.inner.model()
    }
    fn supports_grammar(&self) -> bool {
        self.inner.supports_grammar()
    }
    // A wrapper must pass this down, or an unparseable reply is replayed
    // from the cache as final (regression: harden::unparseable_replies_…).
    fn mark_unusable(&self, req: &LmRequest) {
        self.inner.mark_unusable(req)
    }
}

/// Evaluate `program` + `overlay` on `examples` under `metric`.
///
/// Results come back in the order of `examples` whatever the concurrency.
/// The report's `dataset` holds only the example count: callers that loaded
/// a dataset file fill in its path, hash and bad rows.
pub async fn evaluate(
    ctx: &RunContext,
    program: &Program,
    overlay: &Overlay,
    examples: &[Example],
    metric: &Metric,
    opts: &EvalOptions,
    reporter: &dyn EvalReporter,
) -> Result<EvalReport, EvalError> {
    let never = Interrupt::new();
    evaluate_until(
        ctx, program, overlay, examples, metric, opts, reporter, &never,
    )
    .await
}

/// [`evaluate`] that stops when `interrupt` fires: no new example and no
/// new LM call starts; examples whose calls are in flight get
/// `interrupt.grace()` to finish and are then abandoned, as is an example
/// that needed another call (their completed LM calls are already cached).
///
/// An interrupted evaluation is `Ok`, with `report.status.interrupted` set
/// and `complete` false when examples are missing: check the status before
/// trusting the scores (a partial mean must never pass a gate or compete
/// with full ones).
#[allow(clippy::too_many_arguments)]
pub async fn evaluate_until(
    ctx: &RunContext,
    program: &Program,
    overlay: &Overlay,
    examples: &[Example],
    metric: &Metric,
    opts: &EvalOptions,
    reporter: &dyn EvalReporter,
    interrupt: &Interrupt,
) -> Result<EvalReport, EvalError> {
    if examples.is_empty() {
        return Err(EvalError::Empty);
    }
    let started = Instant::now();
    let total = examples.len();
    reporter.start(total);
    // Owned copies, made once per evaluation, so that every example can be
    // a `'static` task on any worker thread.
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        program: program.clone(),
        overlay: overlay.clone(),
        metric: metric.clone(),
        mcx: MetricContext::new(ctx),
        keep_traces: opts.keep_traces,
        interrupt: interrupt.clone(),
    });
    // Hand-fed rather than a semaphore: at most `concurrency` tasks exist
    // at once, and none is started after a stop or an interrupt.
    let concurrency = opts.concurrency.max(1);
    let mut pending: JoinSet<Outcome> = JoinSet::new();
    let mut next = 0usize;
    while next < total && pending.len() < concurrency && !interrupt.is_requested() {
        start(&mut pending, &shared, &examples[next], next);
        next += 1;
    }

    let mut results: Vec<ExampleResult> = Vec::with_capacity(total);
    let mut running = RunningStats {
        total,
        ..RunningStats::default()
    };
    let mut score_sum = 0.0;
    let mut stop: Option<StopReason> = None;
    // Set when the interrupt fires: in-flight examples may finish until then.
    let mut grace_until: Option<tokio::time::Instant> = None;
    loop {
        // `biased`: notice an interrupt even when cached examples finish
        // back to back, and keep results that arrive with the deadline.
        let outcome = tokio::select! {
            biased;
            _ = interrupt.requested(), if grace_until.is_none() => {
                grace_until = Some(tokio::time::Instant::now() + interrupt.grace());
                let reason = interrupt.reason().unwrap_or("stop requested");
                reporter.interrupted(reason, pending.len(), interrupt.grace());
                continue;
            }
            o = pending.join_next() => match o {
                Some(Ok(o)) => o,
                // A panicking example is a bug: surface it as before,
                // when the example ran inside this future.
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled: only this function aborts its tasks.
                Some(Err(_)) => continue,
                None => break,
            },
            _ = tokio::time::sleep_until(grace_until.unwrap_or_else(far_future)),
                if grace_until.is_some() => break,
        };
        let r = match outcome {
            Outcome::Done(r) => Some(r),
            Outcome::Budget(message) => {
                stop = Some(StopReason::Budget(message));
                break;
            }
            Outcome::Abandoned => None,
        };
        // The next example starts only after this outcome is counted, so a
        // stop (too many errors) sends no request past the one that
        // tripped it: at concurrency 1, `--max-errors 3` costs 4 calls.
        let Some(r) = r else {
            start_next(&mut pending, &shared, examples, &mut next, interrupt);
            continue;
        };
        running.done += 1;
        score_sum += r.score;
        running.mean = score_sum / running.done as f64;
        running.errors += r.failed() as usize;
        running.parse_failures += r.parse_failure as usize;
        running.lm_calls += r.lm_calls;
        running.cache_hits += r.cache_hits;
        running.prompt_tokens += r.usage.prompt_tokens;
        running.completion_tokens += r.usage.completion_tokens;
        running.cost += r.cost;
        running.elapsed_s = started.elapsed().as_secs_f64();
        reporter.example_done(&r, &running);
        let last_error = r.error.clone();
        results.push(*r);
        if let (Some(max), Some(err)) = (opts.max_errors, last_error) {
            if running.errors > max {
                stop = Some(StopReason::TooManyErrors(max, err));
                break;
            }
        }
        start_next(&mut pending, &shared, examples, &mut next, interrupt);
    }
    // Cancel the examples still in flight and wait until they are gone, so
    // that none sends a request or writes the cache after this returns
    // (their finished LM calls are already in the cache).
    pending.shutdown().await;
    reporter.finish();
    results.sort_by_key(|r| r.index);
    let wall_s = started.elapsed().as_secs_f64();
    let done = results.len();
    let mut status = RunStatus {
        complete: done == total,
        interrupted: false,
        examples_done: done,
        examples_total: total,
        stop_reason: None,
    };
    match &stop {
        Some(StopReason::TooManyErrors(max, _)) => {
            status.complete = false;
            status.stop_reason = Some(format!("stopped: more than {max} failed examples"));
        }
        Some(StopReason::Budget(message)) => {
            status.complete = false;
            status.stop_reason = Some(message.clone());
        }
        None if interrupt.is_requested() && done < total => {
            status.interrupted = true;
            status.stop_reason = Some(format!(
                "interrupted ({})",
                interrupt.reason().unwrap_or("stop requested")
            ));
        }
        None => {}
    }
    let report = build_report(ctx, program, overlay, metric, results, status, wall_s);
    match stop {
        None => Ok(report),
        Some(StopReason::TooManyErrors(max_errors, last_error)) => Err(EvalError::TooManyErrors {
            errors: running.errors,
            max_errors,
            last_error,
            partial: Box::new(report),
        }),
        Some(StopReason::Budget(message)) => Err(EvalError::Budget {
            message,
            done: running.done,
            total,
            partial: Box::new(report),
        }),
    }
}

/// A deadline that never comes, for the disabled grace branch (select!
/// evaluates every branch's future even when its condition is false).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

enum StopReason {
    TooManyErrors(usize, String),
    Budget(String),
}

/// What every example's task needs besides its example, shared by all.
struct Shared {
    ctx: RunContext,
    program: Program,
    overlay: Overlay,
    metric: Metric,
    mcx: MetricContext,
    keep_traces: bool,
    interrupt: Interrupt,
}

/// Start the next unstarted example, if any is left and no interrupt has
/// been requested.
fn start_next(
    set: &mut JoinSet<Outcome>,
    shared: &Arc<Shared>,
    examples: &[Example],
    next: &mut usize,
    interrupt: &Interrupt,
) {
    if *next < examples.len() && !interrupt.is_requested() {
        start(set, shared, &examples[*next], *next);
        *next += 1;
    }
}

/// Spawn example `index` as a task of `set`.
fn start(set: &mut JoinSet<Outcome>, shared: &Arc<Shared>, ex: &Example, index: usize) {
    let shared = shared.clone();
    let ex = ex.clone();
    set.spawn(async move { run_one(&shared, index, ex).await });
}

async fn run_one(sh: &Shared, index: usize, ex: Example) -> Outcome {
    let started = Instant::now();
    let refused = Arc::new(AtomicBool::new(false));
    // Every LM of the run is guarded, named ones too.
    let guarded = sh.ctx.map_lms(|inner| {
        Arc::new(StopGuard {
            inner,
            interrupt: sh.interrupt.clone(),
            refused: refused.clone(),
        })
    });
    let outcome = run_program(&guarded, &sh.program, &sh.overlay, ex.inputs.clone()).await;
    if refused.load(Ordering::SeqCst) {
        return Outcome::Abandoned;
    }
    let trace = outcome.trace;
    let mut result = ExampleResult {
        index,
        row: ex.row,
        // Moved in from `ex` once the metric no longer needs it.
        inputs: Map::new(),
        expected: Map::new(),
        outputs: None,
        score: 0.0,
        feedback: None,
        error: None,
        parse_failure: false,
        raw_reply: None,
        latency_s: 0.0,
        usage: trace.usage(),
        cost: trace.cost(),
        cache_hit: false,
        lm_calls: trace.lm_calls(),
        cache_hits: trace.cache_hits(),
        trace: None,
    };
    result.cache_hit = result.lm_calls == 0 && result.cache_hits > 0;
    match outcome.outputs {
        Ok(outputs) => match sh.metric.score(&ex, &outputs, &sh.mcx).await {
            Ok(score) => {
                result.score = score.score;
                result.feedback = score.feedback;
                result.outputs = Some(outputs);
            }
            Err(e) => {
                result.outputs = Some(outputs);
                result.error = Some(format!("metric: {e}"));
            }
        },
        Err(RunError::Lm(LmError::Budget(message))) => {
            return Outcome::Budget(format!("LM budget exhausted: {message}"));
        }
        Err(e) => {
            result.parse_failure = e.is_parse();
            result.raw_reply = trace.parse_error().map(|p| p.raw.clone());
            result.error = Some(e.to_string());
        }
    }
    result.latency_s = started.elapsed().as_secs_f64();
    result.inputs = ex.inputs;
    result.expected = ex.expected;
    if sh.keep_traces {
        result.trace = Some(trace);
    }
    Outcome::Done(Box::new(result))
}

fn build_report(
    ctx: &RunContext,
    program: &Program,
    overlay: &Overlay,
    metric: &Metric,
    results: Vec<ExampleResult>,
    status: RunStatus,
    wall_s: f64,
) -> EvalReport {
    let total = status.examples_total;
    let summary = Summary::from_results(&results, wall_s);
    EvalReport {
        format: REPORT_FORMAT.to_string(),
        program: program.name.clone(),
        program_hash: program.content_hash.clone(),
        overlay_hash: overlay_hash(overlay),
        metric: metric.name(),
        model: ctx.lm.model(),
        dataset: DatasetInfo {
            n: total,
            ..DatasetInfo::default()
        },
        label_fields: label_fields(program),
        summary,
        status,
        results,
        gates: None,
        lms: Vec::new(),
        lmc_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// sha256 of the overlay's canonical JSON (empty overlay included).
pub fn overlay_hash(overlay: &Overlay) -> String {
    let bytes = serde_json::to_vec(overlay).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Program outputs with a closed value set: enums and bools.
pub fn label_fields(program: &Program) -> Vec<LabelField> {
    program
        .output_fields
        .iter()
        .filter_map(|f| {
            let values = match &f.ty {
                FieldType::Enum { values } => values.clone(),
                FieldType::Bool => vec!["true".into(), "false".into()],
                _ => return None,
            };
            Some(LabelField {
                name: f.name.clone(),
                values,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::{Lm, LmRequest, LmResponse, Usage};
    use serde_json::{json, Map};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const PROGRAM: &str = "name: t
signatures:
  s:
    inputs:
      q: {type: str}
    outputs:
      answer: {type: str}
inputs:
  q: str
nodes:
  n:
    kind: predict
    signature: s
outputs:
  answer: n.answer
";

    /// A program that needs two LM calls per example, one after the other.
    const TWO_STEPS: &str = "name: t2
signatures:
  s:
    inputs:
      q: {type: str}
    outputs:
      answer: {type: str}
inputs:
  q: str
nodes:
  a:
    kind: predict
    signature: s
  b:
    kind: predict
    signature: s
    inputs:
      q: a.answer
outputs:
  answer: b.answer
";

    /// Answers `yes`. Fires `interrupt` as its `fire_at`-th call starts;
    /// with `hold`, every call but the first waits for the interrupt, so
    /// which calls are in flight when it fires does not depend on timing.
    /// After the interrupt, each call takes `delay` more.
    struct Slow {
        calls: AtomicUsize,
        fire_at: usize,
        hold: bool,
        interrupt: Interrupt,
        delay: Duration,
    }

    #[async_trait::async_trait]
    impl Lm for Slow {
        // Nothing recorded here, so nothing to flag (the trait makes
        // every implementation say so: a wrapper must pass it down).
        fn mark_unusable(&self, _req: &crate::lm::LmRequest) {}
        async fn complete(&self, _req: &LmRequest) -> Result<LmResponse, crate::lm::LmError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.fire_at {
                self.interrupt.request("test");
            } else if n > 1 && self.hold {
                self.interrupt.requested().await;
            }
            tokio::time::sleep(self.delay).await;
            Ok(LmResponse {
                text: "[[ ## answer ## ]]\nyes\n\n[[ ## completed ## ]]".into(),
                usage: Usage::default(),
                cache_hit: false,
                latency: self.delay,
                retries: 0,
                cost: 0.0,
                choices: Vec::new(),
            })
        }
        fn model(&self) -> String {
            "slow".into()
        }
    }

    /// Run 20 examples of `source`, `concurrency` at a time, with the
    /// interrupt fired by the `fire_at`-th LM call.
    fn run_with(
        source: &str,
        concurrency: usize,
        lm: Slow,
        grace: Duration,
    ) -> (EvalReport, usize) {
        let program =
            crate::program::load::load_str(source, std::path::Path::new("t.yaml")).unwrap();
        let interrupt = lm.interrupt.clone().with_grace(grace);
        let lm = Arc::new(lm);
        let ctx = RunContext::new(lm.clone());
        let examples: Vec<Example> = (0..20)
            .map(|i| {
                let mut inputs = Map::new();
                inputs.insert("q".into(), json!(format!("question {i}")));
                let mut expected = Map::new();
                expected.insert("answer".into(), json!("yes"));
                Example {
                    index: i,
                    row: i + 1,
                    inputs,
                    expected,
                    extra: Map::new(),
                }
            })
            .collect();
        let metric = Metric::default_for(&program);
        let opts = EvalOptions {
            concurrency,
            ..EvalOptions::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let report = rt
            .block_on(evaluate_until(
                &ctx,
                &program,
                &Overlay::default(),
                &examples,
                &metric,
                &opts,
                &crate::eval::NoopReporter,
                &interrupt,
            ))
            .expect("an interrupted evaluation is Ok");
        (report, lm.calls.load(Ordering::SeqCst))
    }

    /// The one-step program, 2 at a time, calls held until the interrupt.
    fn run(fire_at: usize, grace: Duration, delay: Duration) -> (EvalReport, usize) {
        let lm = Slow {
            calls: AtomicUsize::new(0),
            fire_at,
            hold: fire_at != usize::MAX,
            interrupt: Interrupt::new(),
            delay,
        };
        run_with(PROGRAM, 2, lm, grace)
    }

    #[test]
    fn interrupt_lets_in_flight_examples_finish_and_starts_no_more() {
        // Calls 1 and 2 start; call 1 ends, call 3 starts and fires while
        // call 2 waits: 2 and 3 are in flight and finish inside the grace.
        let (report, calls) = run(3, Duration::from_secs(30), Duration::from_millis(20));
        assert_eq!(calls, 3);
        let st = &report.status;
        assert!(st.interrupted && !st.complete, "{st:?}");
        assert_eq!((st.examples_done, st.examples_total), (3, 20));
        assert_eq!(report.results.len(), 3);
        assert_eq!(st.stop_reason.as_deref(), Some("interrupted (test)"));
        assert!(report.results.iter().all(|r| r.score == 1.0));
    }

    #[test]
    fn in_flight_examples_are_abandoned_after_the_grace_period() {
        // Both first calls start (the second fires); each takes an hour:
        // none finishes within the grace period.
        let (report, calls) = run(2, Duration::from_millis(50), Duration::from_secs(3600));
        assert_eq!(calls, 2);
        assert_eq!(report.status.examples_done, 0);
        assert!(report.status.interrupted && report.results.is_empty());
    }

    #[test]
    fn an_example_needing_a_new_call_after_the_interrupt_is_abandoned() {
        // One at a time, two calls each: example 1 makes calls 1 and 2;
        // example 2's first call (3) fires, so its second is never made and
        // the example is left out rather than scored as a failure.
        let lm = Slow {
            calls: AtomicUsize::new(0),
            fire_at: 3,
            hold: false,
            interrupt: Interrupt::new(),
            delay: Duration::ZERO,
        };
        let (report, calls) = run_with(TWO_STEPS, 1, lm, Duration::from_secs(30));
        assert_eq!(calls, 3, "no LM call starts after the interrupt");
        assert_eq!(report.status.examples_done, 1);
        assert_eq!(report.results.len(), 1);
        assert_eq!(report.summary.errors, 0, "abandoned is not failed");
        assert!(report.status.interrupted);
    }

    #[test]
    fn an_interrupt_that_never_fires_changes_nothing() {
        let (report, calls) = run(usize::MAX, Duration::ZERO, Duration::ZERO);
        assert_eq!(calls, 20);
        assert!(report.status.complete && !report.status.interrupted);
        assert_eq!(report.status.stop_reason, None);
        assert_eq!(report.status.examples_done, 20);
    }

    /// Records the thread of every call and how many calls are alive now
    /// (a call that never ends unless dropped with `forever`).
    struct Where {
        threads: std::sync::Mutex<Vec<std::thread::ThreadId>>,
        live: Arc<AtomicUsize>,
        forever: bool,
    }

    struct Live(Arc<AtomicUsize>);
    impl Drop for Live {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[async_trait::async_trait]
    impl Lm for Where {
        fn mark_unusable(&self, _req: &crate::lm::LmRequest) {}
        async fn complete(&self, _req: &LmRequest) -> Result<LmResponse, crate::lm::LmError> {
            self.threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            self.live.fetch_add(1, Ordering::SeqCst);
            let _live = Live(self.live.clone());
            tokio::time::sleep(if self.forever {
                Duration::from_secs(3600)
            } else {
                Duration::from_millis(1)
            })
            .await;
            Ok(LmResponse {
                text: "[[ ## answer ## ]]\nyes\n\n[[ ## completed ## ]]".into(),
                usage: Usage::default(),
                cache_hit: false,
                latency: Duration::ZERO,
                retries: 0,
                cost: 0.0,
                choices: Vec::new(),
            })
        }
        fn model(&self) -> String {
            "where".into()
        }
    }

    /// 20 one-call examples, 8 at a time, on a 2-worker runtime. Also
    /// gives the calling thread and the calls alive when the eval returned
    /// (counted before the runtime is dropped, which would drop any task).
    fn run_where(
        lm: Arc<Where>,
        interrupt: &Interrupt,
    ) -> (EvalReport, std::thread::ThreadId, usize) {
        let program =
            crate::program::load::load_str(PROGRAM, std::path::Path::new("t.yaml")).unwrap();
        let live = lm.live.clone();
        let ctx = RunContext::new(lm);
        let examples: Vec<Example> = (0..20)
            .map(|i| {
                let mut inputs = Map::new();
                inputs.insert("q".into(), json!(format!("question {i}")));
                Example {
                    index: i,
                    row: i + 1,
                    inputs,
                    expected: Map::new(),
                    extra: Map::new(),
                }
            })
            .collect();
        let metric = Metric::default_for(&program);
        let opts = EvalOptions {
            concurrency: 8,
            ..EvalOptions::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let report = rt
            .block_on(evaluate_until(
                &ctx,
                &program,
                &Overlay::default(),
                &examples,
                &metric,
                &opts,
                &crate::eval::NoopReporter,
                interrupt,
            ))
            .unwrap();
        let live = live.load(Ordering::SeqCst);
        drop(rt);
        (report, std::thread::current().id(), live)
    }

    #[test]
    fn examples_run_on_the_runtime_workers_not_the_calling_thread() {
        // Issue 18: polled by the caller, every example's work ran on the
        // one thread that called `block_on`.
        let lm = Arc::new(Where {
            threads: Default::default(),
            live: Default::default(),
            forever: false,
        });
        let (report, caller, _) = run_where(lm.clone(), &Interrupt::new());
        assert!(report.status.complete);
        let indices: Vec<usize> = report.results.iter().map(|r| r.index).collect();
        assert_eq!(indices, (0..20).collect::<Vec<_>>(), "input order");
        let threads = lm.threads.lock().unwrap();
        assert_eq!(threads.len(), 20);
        assert!(
            threads.iter().all(|t| *t != caller),
            "a call ran on the caller"
        );
    }

    #[test]
    fn no_example_is_still_running_when_an_interrupted_eval_returns() {
        let interrupt = Interrupt::new().with_grace(Duration::from_millis(20));
        let lm = Arc::new(Where {
            threads: Default::default(),
            live: Default::default(),
            forever: true,
        });
        let fire = interrupt.clone();
        let live = lm.live.clone();
        // Fire once all 8 first calls are in flight.
        std::thread::spawn(move || {
            while live.load(Ordering::SeqCst) < 8 {
                std::thread::sleep(Duration::from_millis(1));
            }
            fire.request("test");
        });
        let (report, _, live) = run_where(lm.clone(), &interrupt);
        assert!(report.status.interrupted && report.results.is_empty());
        assert_eq!(
            lm.threads.lock().unwrap().len(),
            8,
            "no call after the interrupt"
        );
        assert_eq!(live, 0, "a call outlived the eval");
    }
}
