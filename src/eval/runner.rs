//! The eval runner: run every example through the program with bounded
//! concurrency, score it, and return results in input order.
//!
//! A failed example (LM error, unparseable reply, metric error) becomes a
//! result scored 0 carrying the error and the raw reply, because one bad
//! reply in a thousand must not cost the other 999 (DSPy's Evaluate does
//! the same). The run stops early when `max_errors` is exceeded, an LM
//! budget runs out, or an [`Interrupt`] fires (no new example starts, those
//! in flight get the interrupt's grace period); all three return the
//! finished results marked incomplete, and since every LM reply is cached
//! as it arrives, re-running resumes where it stopped.

use futures::stream::{FuturesUnordered, StreamExt};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

use super::{
    DatasetInfo, EvalError, EvalOptions, EvalReport, EvalReporter, ExampleResult, LabelField,
    RunStatus, RunningStats, Summary, REPORT_FORMAT,
};
use crate::data::Example;
use crate::interrupt::Interrupt;
use crate::lm::LmError;
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
    evaluate_until(ctx, program, overlay, examples, metric, opts, reporter, &never).await
}

/// [`evaluate`] that stops when `interrupt` fires: no new example starts,
/// the examples in flight get `interrupt.grace()` to finish and are then
/// abandoned (their LM calls that completed are already cached).
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
    let mcx = MetricContext::new(ctx);
    // A hand-fed FuturesUnordered rather than `stream::iter(..).map(..)
    // .buffer_unordered(..)`: a closure borrowing the examples trips rustc's
    // higher-ranked `Send` inference when callers box this future as Send.
    let concurrency = opts.concurrency.max(1);
    let mut pending = FuturesUnordered::new();
    let mut next = 0usize;
    while next < total && pending.len() < concurrency && !interrupt.is_requested() {
        pending.push(run_one(
            ctx,
            program,
            overlay,
            metric,
            &mcx,
            opts,
            next,
            &examples[next],
        ));
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
            o = pending.next() => match o {
                Some(o) => o,
                None => break,
            },
            _ = tokio::time::sleep_until(grace_until.unwrap_or_else(far_future)),
                if grace_until.is_some() => break,
        };
        if stop.is_none() && next < total && !interrupt.is_requested() {
            pending.push(run_one(
                ctx,
                program,
                overlay,
                metric,
                &mcx,
                opts,
                next,
                &examples[next],
            ));
            next += 1;
        }
        let r = match outcome {
            Outcome::Done(r) => r,
            Outcome::Budget(message) => {
                stop = Some(StopReason::Budget(message));
                break;
            }
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
    }
    // Dropping the set cancels examples still in flight; their finished
    // LM calls are already in the cache.
    drop(pending);
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

#[allow(clippy::too_many_arguments)]
async fn run_one(
    ctx: &RunContext,
    program: &Program,
    overlay: &Overlay,
    metric: &Metric,
    mcx: &MetricContext,
    opts: &EvalOptions,
    index: usize,
    ex: &Example,
) -> Outcome {
    let started = Instant::now();
    let outcome = run_program(ctx, program, overlay, ex.inputs.clone()).await;
    let trace = outcome.trace;
    let mut result = ExampleResult {
        index,
        row: ex.row,
        inputs: ex.inputs.clone(),
        expected: ex.expected.clone(),
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
        Ok(outputs) => match metric.score(ex, &outputs, mcx).await {
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
    if opts.keep_traces {
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
