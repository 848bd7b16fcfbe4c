//! The server's counters, exposed at `GET /metrics` in the OpenMetrics text
//! format (which Prometheus scrapes natively): HTTP requests by path and
//! status, a latency histogram per path, runs in flight and queued,
//! refusals, run errors by kind, and what the LM did for the runs (calls,
//! cache hits, errors, tokens, cost).
//!
//! The LM figures are summed from each finished run's trace rather than
//! read from the process-wide usage meter, so they count exactly the runs
//! the HTTP counters count. Kept in `prometheus-client` (the Prometheus
//! project's Rust client): the exposition format's escaping, `_total`
//! suffixes and histogram buckets are its job, not ours.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::trace::Trace;

/// The Content-Type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~65 s: a cache hit is a millisecond, a long chain of LM
    // calls tens of seconds.
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 65.0,
    ])
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<PathLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    queued: Gauge,
    rejected: Family<KindLabels, Counter>,
    run_errors: Family<KindLabels, Counter>,
    lm_calls: Counter,
    lm_cache_hits: Counter,
    lm_errors: Counter,
    tokens: Family<KindLabels, Counter>,
    cost: Counter<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lmc");
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            queued: Gauge::default(),
            rejected: Family::default(),
            run_errors: Family::default(),
            lm_calls: Counter::default(),
            lm_cache_hits: Counter::default(),
            lm_errors: Counter::default(),
            tokens: Family::default(),
            cost: Counter::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response, by route",
            m.latency.clone(),
        );
        registry.register(
            "runs_in_flight",
            "Program runs holding a run slot",
            m.in_flight.clone(),
        );
        registry.register(
            "runs_queued",
            "Requests waiting for a run slot",
            m.queued.clone(),
        );
        registry.register(
            "runs_rejected",
            "Requests refused with 503 because the server was full, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "run_errors",
            "Runs that produced no outputs, by kind (parse, lm, budget, offline, node)",
            m.run_errors.clone(),
        );
        registry.register(
            "lm_calls",
            "LM calls answered by the backend (cache hits excluded)",
            m.lm_calls.clone(),
        );
        registry.register(
            "lm_cache_hits",
            "LM calls answered from the response cache",
            m.lm_cache_hits.clone(),
        );
        registry.register(
            "lm_errors",
            "LM calls that failed after retries",
            m.lm_errors.clone(),
        );
        registry.register(
            "lm_tokens",
            "Tokens spent on backend calls, by kind (prompt, completion)",
            m.tokens.clone(),
        );
        registry.register(
            "lm_cost_usd",
            "Cost of backend calls in USD where prices are configured",
            m.cost.clone(),
        );
        Metrics { registry, ..m }
    }

    /// One answered HTTP request on `path` (a route, or `other`).
    pub fn request(&self, path: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { path, status })
            .inc();
        self.latency
            .get_or_create(&PathLabels { path })
            .observe(seconds);
    }

    /// One request refused for `reason` (see `admit::Rejected::reason`).
    pub fn rejected(&self, reason: &'static str) {
        self.rejected
            .get_or_create(&KindLabels { kind: reason })
            .inc();
    }

    /// One run that ended without outputs.
    pub fn run_error(&self, kind: &'static str) {
        self.run_errors.get_or_create(&KindLabels { kind }).inc();
    }

    /// Add what the LM did during one run.
    pub fn lm(&self, trace: &Trace) {
        let mut prompt = 0;
        let mut completion = 0;
        for lm in trace.steps.iter().filter_map(|s| s.lm.as_ref()) {
            if lm.error.is_some() {
                self.lm_errors.inc();
            } else if lm.cache_hit {
                // Paid for when it was recorded: no tokens, no cost now.
                self.lm_cache_hits.inc();
            } else {
                self.lm_calls.inc();
                prompt += lm.usage.prompt_tokens;
                completion += lm.usage.completion_tokens;
                self.cost.inc_by(lm.cost);
            }
        }
        // Created even at zero so a dashboard finds both series at once.
        self.tokens
            .get_or_create(&KindLabels { kind: "prompt" })
            .inc_by(prompt);
        self.tokens
            .get_or_create(&KindLabels { kind: "completion" })
            .inc_by(completion);
    }

    /// The exposition text, with the gauges set to `in_flight` and `queued`.
    pub fn render(&self, in_flight: usize, queued: usize) -> String {
        self.in_flight.set(in_flight as i64);
        self.queued.set(queued as i64);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::Usage;
    use crate::trace::{LmCallRecord, Step};

    fn step(cache_hit: bool, error: bool) -> Step {
        Step {
            node: "n".into(),
            predictor: Some("n".into()),
            kind: "predict".into(),
            inputs: Default::default(),
            outputs: None,
            lm: Some(LmCallRecord {
                model: "m".into(),
                messages: vec![],
                reply: None,
                reasoning: None,
                usage: Usage {
                    prompt_tokens: 60,
                    completion_tokens: 10,
                },
                latency_s: 0.0,
                cache_hit,
                retries: 0,
                cost: 0.5,
                error: error.then(|| "boom".to_string()),
                choices: Vec::new(),
            }),
            tool: None,
            parse_error: None,
            error: None,
        }
    }

    #[test]
    fn counts_render_in_the_exposition_format() {
        let m = Metrics::new();
        m.request("/v1/run", 200, 0.003);
        m.request("/v1/run", 200, 0.2);
        m.request("/v1/run", 400, 0.001);
        m.rejected("queue_full");
        m.lm(&Trace {
            steps: vec![step(false, false), step(true, false), step(false, true)],
        });
        let text = m.render(2, 1);
        for line in [
            r#"lmc_http_requests_total{path="/v1/run",status="200"} 2"#,
            r#"lmc_http_requests_total{path="/v1/run",status="400"} 1"#,
            r#"lmc_http_request_duration_seconds_count{path="/v1/run"} 3"#,
            r#"lmc_runs_rejected_total{kind="queue_full"} 1"#,
            "lmc_runs_in_flight 2",
            "lmc_runs_queued 1",
            "lmc_lm_calls_total 1",
            "lmc_lm_cache_hits_total 1",
            "lmc_lm_errors_total 1",
            r#"lmc_lm_tokens_total{kind="prompt"} 60"#,
            r#"lmc_lm_tokens_total{kind="completion"} 10"#,
            "lmc_lm_cost_usd_total 0.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
