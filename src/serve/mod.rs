//! `lmc serve`'s HTTP server: one program (or compiled artifact) behind
//! `POST /v1/run`, with `/v1/schema`, `/openapi.json`, `/healthz` and
//! `/metrics` beside it (axum on the command's tokio runtime).
//!
//! A request is checked (`input`), admitted or refused (`admit`), run on
//! its own task with the same `RunContext` an `lmc run` would build (the
//! LM stack, response cache, tools and sampling settings come from the
//! CLI), and answered with a status that says whose problem a failure is:
//! 400 the client's input, 422 the model's reply, 502/503 the LM service or
//! this server's capacity, 500 a program step. Runs are spawned so that a
//! client hanging up never cancels an LM call already paid for: its reply
//! still lands in the cache.
//!
//! The library prints nothing: the access log is a callback the CLI
//! supplies. Shutdown is driven by an [`Interrupt`]: once it fires the
//! listener closes, requests already received (running or queued) are
//! finished and answered, and [`serve`] returns; past the drain timeout it
//! returns anyway and says how many were abandoned.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::interrupt::Interrupt;
use crate::lm::LmError;
use crate::overlay::Overlay;
use crate::program::Program;
use crate::run::{RunContext, RunError, RunOutcome};

pub mod admit;
pub mod input;
pub mod metrics;
pub mod schema;

pub use admit::Limits;

/// Seconds a refused client is told to wait (`Retry-After`). Short: a slot
/// frees as soon as one LM call returns, and a load balancer will usually
/// have sent the retry to another replica anyway.
pub const RETRY_AFTER_SECS: u64 = 1;

/// One answered request, for the access log. Deliberately without the
/// query string, headers or body: inputs and credentials stay out of logs.
#[derive(Debug, Clone)]
pub struct AccessEntry<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub elapsed: Duration,
}

/// Where access entries go (the CLI writes them to stderr).
pub type AccessLog = Arc<dyn Fn(&AccessEntry) + Send + Sync>;

/// What the server serves and how.
pub struct Options {
    pub limits: Limits,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    pub access_log: Option<AccessLog>,
}

/// The shared state of every handler.
pub struct App {
    program: Program,
    overlay: Overlay,
    ctx: RunContext,
    compiled: bool,
    admission: admit::Admission,
    metrics: metrics::Metrics,
    access_log: Option<AccessLog>,
    max_body_bytes: usize,
}

impl App {
    /// `overlay` is the compiled state (empty for a plain program);
    /// `compiled` says which it is, for the schema documents.
    pub fn new(
        program: Program,
        overlay: Overlay,
        compiled: bool,
        ctx: RunContext,
        opts: Options,
    ) -> Arc<App> {
        Arc::new(App {
            program,
            overlay,
            ctx,
            compiled,
            admission: admit::Admission::new(opts.limits),
            metrics: metrics::Metrics::new(),
            access_log: opts.access_log,
            max_body_bytes: opts.max_body_bytes,
        })
    }

    /// Runs in flight plus requests queued for a slot.
    pub fn pending(&self) -> usize {
        self.admission.in_flight() + self.admission.queued()
    }
}

/// The routes, with the access log and request metrics around them.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/run", post(run))
        .route("/v1/schema", get(describe))
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(app.max_body_bytes))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// How a [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Stopped and every request received was answered.
    Drained,
    /// The drain timeout passed with this many requests unanswered.
    Abandoned(usize),
}

/// Serve on `listener` until `stop` fires, then drain for at most `drain`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    stop: Interrupt,
    drain: Duration,
) -> std::io::Result<Ended> {
    use axum::serve::ListenerExt;
    // Small JSON replies must not wait for Nagle's algorithm (a 40 ms stall
    // per response with delayed ACKs).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let signal = stop.clone();
    let server = axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(async move { signal.requested().await })
        .into_future();
    tokio::select! {
        r = server => r.map(|()| Ended::Drained),
        _ = async {
            stop.requested().await;
            tokio::time::sleep(drain).await
        } => Ok(Ended::Abandoned(app.pending())),
    }
}

/// Access log and per-route metrics for every request, whatever answered it.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(req.extensions().get::<MatchedPath>());
    let method = req.method().clone();
    // The path only, never the query string.
    let path: String = req.uri().path().chars().take(200).collect();
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    app.metrics.request(route, status, elapsed.as_secs_f64());
    if let Some(log) = &app.access_log {
        log(&AccessEntry {
            method: method.as_str(),
            path: &path,
            status,
            elapsed,
        });
    }
    resp
}

/// A fixed label per route, `other` for anything unrouted: a client
/// sending random paths must not create unbounded metric series.
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    match matched.map(MatchedPath::as_str) {
        Some("/v1/run") => "/v1/run",
        Some("/v1/schema") => "/v1/schema",
        Some("/openapi.json") => "/openapi.json",
        Some("/healthz") => "/healthz",
        Some("/metrics") => "/metrics",
        _ => "other",
    }
}

/// `{"error": {"kind", "message", ...extra}}`.
fn error_body(kind: &str, message: String, extra: Value) -> Value {
    let mut e = json!({"kind": kind, "message": message});
    if let (Value::Object(m), Value::Object(x)) = (&mut e, extra) {
        m.extend(x.into_iter().filter(|(_, v)| !v.is_null()));
    }
    json!({ "error": e })
}

/// An error response with `status`.
fn error(status: StatusCode, kind: &str, message: String, extra: Value) -> Response {
    (status, Json(error_body(kind, message, extra))).into_response()
}

async fn run(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => {
            let kind = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "bad_body"
            };
            return error(r.status(), kind, r.body_text(), json!({}));
        }
    };
    let trace_query = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, "1"))))
        .any(|(k, v)| k == input::TRACE_KEY && input::query_flag(v));
    let req = match input::parse(&app.program, &body, trace_query) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                e.kind,
                e.message,
                json!({ "field": e.field }),
            )
        }
    };
    let slot = match app.admission.admit().await {
        Ok(s) => s,
        Err(r) => {
            app.metrics.rejected(r.reason());
            let limits = app.admission.limits();
            let mut resp = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "the server is full ({} runs in flight, {} queued at most): retry after {RETRY_AFTER_SECS} s",
                    limits.max_in_flight, limits.queue
                ),
                json!({ "reason": r.reason() }),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            return resp;
        }
    };
    let task_app = app.clone();
    let inputs = req.inputs;
    let task = tokio::spawn(async move {
        let _slot = slot;
        let app = task_app;
        let outcome = crate::run::run_program(&app.ctx, &app.program, &app.overlay, inputs).await;
        // Counted here, not in the handler: a client that hangs up drops
        // the handler, but the run (and what it spent) still happened.
        app.metrics.lm(&outcome.trace);
        if let Err(e) = &outcome.outputs {
            app.metrics.run_error(failure(e).metric);
        }
        outcome
    });
    match task.await {
        Ok(outcome) => answer(outcome, req.trace),
        Err(e) => {
            app.metrics.run_error("node");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "run_failed",
                format!("the run stopped unexpectedly: {e}"),
                json!({}),
            )
        }
    }
}

/// How a run error is answered and counted.
struct Failure {
    status: StatusCode,
    kind: &'static str,
    /// The `kind` label of `lmc_run_errors_total`.
    metric: &'static str,
    extra: Value,
}

fn failure(e: &RunError) -> Failure {
    let f = |status, kind, metric, extra| Failure {
        status,
        kind,
        metric,
        extra,
    };
    match e {
        RunError::Parse(pe) => f(
            StatusCode::UNPROCESSABLE_ENTITY,
            "parse_failure",
            "parse",
            json!({"field": pe.field, "raw_reply": pe.raw}),
        ),
        RunError::Lm(LmError::Budget(_)) => f(
            StatusCode::SERVICE_UNAVAILABLE,
            "budget_exhausted",
            "budget",
            json!({}),
        ),
        RunError::Lm(LmError::CacheMiss { .. }) => f(
            StatusCode::SERVICE_UNAVAILABLE,
            "offline_cache_miss",
            "offline",
            json!({}),
        ),
        RunError::Lm(_) => f(StatusCode::BAD_GATEWAY, "lm_failed", "lm", json!({})),
        RunError::MissingInput(name) => f(
            StatusCode::BAD_REQUEST,
            "missing_input",
            "input",
            json!({ "field": name }),
        ),
        RunError::Node { node, .. } => f(
            StatusCode::INTERNAL_SERVER_ERROR,
            "run_failed",
            "node",
            json!({ "node": node }),
        ),
    }
}

/// The response for a finished run.
fn answer(outcome: RunOutcome, with_trace: bool) -> Response {
    let trace = with_trace.then(|| json!(outcome.trace.steps));
    let err = match outcome.outputs {
        Ok(outputs) => {
            let mut body = json!({"outputs": outputs, "usage": usage(&outcome.trace)});
            if let Some(t) = trace {
                body["trace"] = t;
            }
            return (StatusCode::OK, Json(body)).into_response();
        }
        Err(e) => e,
    };
    let f = failure(&err);
    // The trace rides with the error when asked for: a client debugging a
    // failure needs the messages and the raw reply together.
    let mut body = error_body(f.kind, err.to_string(), f.extra);
    if let Some(t) = trace {
        body["trace"] = t;
    }
    (f.status, Json(body)).into_response()
}

/// What one run cost, from its trace.
fn usage(trace: &crate::trace::Trace) -> Value {
    let backend = trace
        .steps
        .iter()
        .filter_map(|s| s.lm.as_ref())
        .filter(|l| !l.cache_hit && l.error.is_none());
    let (mut calls, mut prompt, mut completion, mut cost) = (0u64, 0u64, 0u64, 0f64);
    for l in backend {
        calls += 1;
        prompt += l.usage.prompt_tokens;
        completion += l.usage.completion_tokens;
        cost += l.cost;
    }
    json!({
        "lm_calls": calls,
        "cache_hits": trace.cache_hits(),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": cost,
    })
}

async fn describe(State(app): State<Arc<App>>) -> Json<Value> {
    Json(schema::describe(&app.program, app.compiled))
}

async fn openapi(State(app): State<Arc<App>>) -> Json<Value> {
    Json(schema::openapi(&app.program, app.compiled))
}

async fn healthz(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "program": app.program.name,
        "in_flight": app.admission.in_flight(),
        "queued": app.admission.queued(),
    }))
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    let text = app
        .metrics
        .render(app.admission.in_flight(), app.admission.queued());
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {}; the routes are POST /v1/run, GET /v1/schema, GET /openapi.json, GET /healthz, GET /metrics",
            req.uri().path()
        ),
        json!({}),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
        json!({}),
    )
}
