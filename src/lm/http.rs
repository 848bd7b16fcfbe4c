//! The OpenAI-compatible chat-completions backend (OpenAI, vLLM, SGLang,
//! llama.cpp server, Ollama, TGI, LiteLLM proxy).
//!
//! It owns everything about talking to a server that can fail: a semaphore
//! bounding requests in flight, RPM/TPM token buckets, a per-attempt
//! timeout, a health-aware balancer over several base URLs (see
//! [`Balancer`]), and retries with exponential backoff and full jitter that
//! honour `Retry-After`. Failures are sorted
//! once, in [`classify_status`] and [`Attempt`]: transient ones (429, 408,
//! 409, 5xx, timeouts, connection errors, truncated or malformed bodies,
//! empty choices) are retried; anything retrying cannot fix (other 4xx, a
//! missing API key) is fatal at once. The API key is read from the
//! environment variable the config names, kept only as a sensitive header
//! value, and never written anywhere. Base URLs are joined and redacted by
//! [`super::url`]: messages name servers by redacted URL, and text a server
//! sends back has the base URLs' credentials masked. Rate limits that could
//! only hang (zero, or a request larger than the TPM budget) are errors.

use rand::Rng;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

use super::{Lm, LmError, LmRequest, LmResponse, Usage};
use crate::adapter::Message;

/// Settings of one HTTP backend (one model, one or more servers).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub model: String,
    /// Base URLs ending in `/v1` (or wherever `chat/completions` lives).
    pub base_urls: Vec<String>,
    /// Name of the environment variable holding the API key (not the key).
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Per-attempt timeout (connect + response).
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff step; doubles per retry up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Requests per minute / tokens per minute limits.
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// Sent as `seed` for servers that support reproducible sampling.
    pub seed: Option<u64>,
}

impl HttpConfig {
    pub fn new(model: impl Into<String>, base_urls: Vec<String>) -> Self {
        HttpConfig {
            model: model.into(),
            base_urls,
            api_key_env: None,
            concurrency: 16,
            timeout: Duration::from_secs(120),
            max_retries: 6,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            rpm: None,
            tpm: None,
            seed: None,
        }
    }
}

/// Longest `Retry-After` honoured: a server asking for more is treated as
/// asking for this much, so a misconfigured proxy cannot stall a run for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

pub struct HttpLm {
    cfg: HttpConfig,
    client: reqwest::Client,
    /// `Bearer <key>`, marked sensitive so reqwest never shows it in Debug.
    auth: Option<HeaderValue>,
    /// Chat-completions URLs, each with its redacted form (the real one is
    /// only ever handed to reqwest, the redacted one goes into messages),
    /// their health and their counts.
    balancer: Balancer,
    /// Passwords and query values of the base URLs, masked in any text a
    /// server sends back (an error body may echo the key it was given).
    secrets: Vec<String>,
    permits: Semaphore,
    rpm: Option<TokenBucket>,
    tpm: Option<TokenBucket>,
}

impl std::fmt::Debug for HttpLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLm")
            .field("model", &self.cfg.model)
            .field(
                "endpoints",
                &self
                    .balancer
                    .endpoints
                    .iter()
                    .map(|e| &e.shown)
                    .collect::<Vec<_>>(),
            )
            .field("api_key_env", &self.cfg.api_key_env)
            .finish_non_exhaustive()
    }
}

impl HttpLm {
    /// Build the client. Fails (fatally) on no base URL, a malformed URL, a
    /// zero rate limit, or an API key variable that is named but unset.
    pub fn new(cfg: HttpConfig) -> Result<Self, LmError> {
        if cfg.base_urls.is_empty() {
            return Err(LmError::Fatal(
                "HTTP LM needs at least one base URL (--base-url or lm.base_urls)".into(),
            ));
        }
        check_rate_limits(cfg.rpm, cfg.tpm).map_err(LmError::Fatal)?;
        let mut endpoints = Vec::new();
        let mut secrets = Vec::new();
        for base in &cfg.base_urls {
            let url = super::url::chat_endpoint(base).map_err(LmError::Fatal)?;
            let shown = super::url::redact(url.as_str());
            secrets.extend(super::url::secrets(url.as_str()));
            endpoints.push((url, shown));
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let auth = match &cfg.api_key_env {
            None => None,
            Some(var) => {
                let key = std::env::var(var).map_err(|_| {
                    LmError::Fatal(format!(
                        "the API key variable `{var}` (api_key_env) is not set in the environment"
                    ))
                })?;
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", key.trim())).map_err(|_| {
                        LmError::Fatal(format!(
                            "the API key in `{var}` contains characters not allowed in a header"
                        ))
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let concurrency = cfg.concurrency.max(1);
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(30)))
            .pool_max_idle_per_host(concurrency)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LmError::Fatal(format!("cannot build HTTP client: {e}")))?;
        Ok(HttpLm {
            rpm: cfg.rpm.map(|r| TokenBucket::per_minute(r as f64)),
            tpm: cfg.tpm.map(|t| TokenBucket::per_minute(t as f64)),
            permits: Semaphore::new(concurrency),
            balancer: Balancer::new(endpoints, cfg.timeout),
            secrets,
            auth,
            client,
            cfg,
        })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    /// Per-endpoint requests, errors and ejections so far (redacted URLs).
    pub fn endpoint_stats(&self) -> Vec<EndpointStats> {
        self.balancer.stats()
    }

    /// One attempt against endpoint `i`, counted in its load and health.
    async fn attempt_on(&self, i: usize, body: &bytes::Bytes) -> Result<(String, Usage), Attempt> {
        let ep = &self.balancer.endpoints[i];
        ep.outstanding.fetch_add(1, Ordering::Relaxed);
        ep.requests.fetch_add(1, Ordering::Relaxed);
        // The guard undoes the load count even if the call is cancelled.
        let _load = LoadGuard(&ep.outstanding);
        let outcome = self.attempt(&ep.target, &ep.shown, body).await;
        match &outcome {
            Ok(_) => self.balancer.succeeded(i),
            // A failure of the request itself (4xx) says the server is up;
            // so does a 429 with Retry-After (it paces us; the retry waits).
            Err(Attempt::Retry {
                retry_after: None, ..
            }) => {
                ep.errors.fetch_add(1, Ordering::Relaxed);
                self.balancer.failed(i, self.cfg.backoff_base);
            }
            Err(_) => {
                ep.errors.fetch_add(1, Ordering::Relaxed);
                self.balancer.succeeded(i);
            }
        }
        outcome
    }

    /// One attempt against `target` (`url` is its redacted form).
    async fn attempt(
        &self,
        target: &reqwest::Url,
        url: &str,
        body: &bytes::Bytes,
    ) -> Result<(String, Usage), Attempt> {
        let mut rb = self
            .client
            .post(target.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            // A retry re-sends the same buffer (a reference count, no copy).
            .body(body.clone());
        if let Some(auth) = &self.auth {
            rb = rb.header(AUTHORIZATION, auth.clone());
        }
        let resp = rb.send().await.map_err(|e| transport_error(url, e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let bytes = resp.bytes().await.map_err(|e| Attempt::Retry {
            msg: format!("{url}: reply body cut short: {}", e.without_url()),
            retry_after: None,
        })?;
        if !(200..300).contains(&status) {
            let detail = super::url::scrub(&error_detail(&bytes), &self.secrets);
            let msg = format!("{url}: HTTP {status}{detail}");
            return Err(match classify_status(status) {
                Class::Retry => Attempt::Retry { msg, retry_after },
                Class::Fatal => Attempt::Fatal(msg),
            });
        }
        parse_completion(&bytes).map_err(|m| Attempt::Retry {
            msg: format!("{url}: {}", super::url::scrub(&m, &self.secrets)),
            retry_after: None,
        })
    }

    /// Backoff before retry number `retry` (1-based): full jitter over an
    /// exponentially growing window, but never shorter than `Retry-After`.
    fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(20))
            .min(self.cfg.backoff_max);
        let jitter = if cap.is_zero() {
            Duration::ZERO
        } else {
            cap.mul_f64(rand::thread_rng().gen::<f64>())
        };
        match retry_after {
            Some(ra) => ra.min(MAX_RETRY_AFTER).max(jitter),
            None => jitter,
        }
    }
}

#[async_trait::async_trait]
impl Lm for HttpLm {
    // Nothing recorded here, so nothing to flag (the trait makes
    // every implementation say so: a wrapper must pass it down).
    fn mark_unusable(&self, _req: &crate::lm::LmRequest) {}
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
        let started = Instant::now();
        let model = if req.model.is_empty() {
            &self.cfg.model
        } else {
            &req.model
        };
        // Sized once from the messages (plus room for keys, escapes and
        // settings) instead of growing by doubling, once per request.
        let size = 256
            + req
                .messages
                .iter()
                .map(|m| m.content.len() + 48)
                .sum::<usize>();
        let mut buf = Vec::with_capacity(size);
        serde_json::to_writer(
            &mut buf,
            &ChatBody {
                model,
                messages: &req.messages,
                temperature: req.temperature,
                max_tokens: req.max_tokens,
                seed: self.cfg.seed,
                response_format: req.response_format.as_ref(),
            },
        )
        .map_err(|e| LmError::Fatal(format!("cannot encode request: {e}")))?;
        let body: bytes::Bytes = buf.into();
        // Rough token estimate for TPM before the server tells us: ~4 bytes
        // per token of prompt, plus the completion allowance.
        let estimate = req
            .messages
            .iter()
            .map(|m| m.content.len() as f64 / 4.0)
            .sum::<f64>()
            + req.max_tokens as f64;
        if let Some(tpm) = self.cfg.tpm {
            // A request the bucket can never hold would wait forever (or,
            // capped, pay a minute per call and still break the limit).
            if estimate > tpm as f64 {
                return Err(LmError::Fatal(format!(
                    "this request needs about {} tokens (prompt estimate + max_tokens {}) \
                     but the tokens-per-minute limit (--tpm / lm.tpm) is {tpm}; raise the \
                     limit or lower max_tokens",
                    estimate.ceil() as u64,
                    req.max_tokens
                )));
            }
        }

        let mut retries = 0u32;
        // The endpoint the last attempt failed on: a retry goes elsewhere.
        let mut failed_on: Option<usize> = None;
        loop {
            if let Some(b) = &self.rpm {
                b.acquire(1.0).await;
            }
            if let Some(b) = &self.tpm {
                b.acquire(estimate).await;
            }
            let outcome = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| LmError::Fatal("HTTP LM was shut down".into()))?;
                let i = self.balancer.pick(failed_on);
                (i, self.attempt_on(i, &body).await)
            };
            let (used, outcome) = outcome;
            match outcome {
                Ok((text, usage)) => {
                    if let Some(b) = &self.tpm {
                        b.settle(estimate, usage.total() as f64);
                    }
                    return Ok(LmResponse {
                        text,
                        usage,
                        cache_hit: false,
                        latency: started.elapsed(),
                        retries,
                        cost: 0.0,
                        choices: Vec::new(),
                    });
                }
                Err(Attempt::Fatal(msg)) => return Err(LmError::Fatal(msg)),
                Err(Attempt::Retry { msg, retry_after }) => {
                    if retries >= self.cfg.max_retries {
                        return Err(LmError::Exhausted {
                            attempts: retries + 1,
                            last: msg,
                        });
                    }
                    retries += 1;
                    failed_on = Some(used);
                    // A failure of one server is no reason to wait before
                    // asking a healthy other one; pacing (Retry-After) and
                    // a fleet with no healthy server left still back off.
                    if retry_after.is_some() || !self.balancer.has_healthy_other(used) {
                        tokio::time::sleep(self.backoff(retries, retry_after)).await;
                    }
                }
            }
        }
    }

    fn model(&self) -> String {
        self.cfg.model.clone()
    }
}

/// Requests, errors and ejections of one endpoint, for run summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// The base URL's chat endpoint, credentials redacted.
    pub url: String,
    /// Attempts sent (retries included).
    pub requests: u64,
    /// Attempts that failed (any status or transport error).
    pub errors: u64,
    /// Times it was taken out of rotation.
    pub ejections: u64,
}

/// Longest an endpoint stays ejected between probes.
const MAX_EJECTION: Duration = Duration::from_secs(30);
/// Shortest ejection (a zero `backoff_base` would never eject).
const MIN_EJECTION: Duration = Duration::from_millis(100);

struct Endpoint {
    target: reqwest::Url,
    shown: String,
    /// Attempts in flight now (the balancer's load signal).
    outstanding: AtomicUsize,
    requests: AtomicU64,
    errors: AtomicU64,
    ejections: AtomicU64,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    /// Out of rotation until then (`None`: healthy).
    ejected_until: Option<Instant>,
    /// Consecutive ejections without a success (doubles the next one).
    strikes: u32,
    /// When the request probing it now was sent; the others stay away
    /// meanwhile. A probe older than the attempt timeout was lost (its
    /// call cancelled) and another may go.
    probing: Option<Instant>,
}

/// Decrements an endpoint's in-flight count when the attempt ends, however
/// it ends.
struct LoadGuard<'a>(&'a AtomicUsize);

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Spreads attempts over the endpoints by least outstanding requests (ties
/// taken in rotation), so a slow server holding many requests gets fewer
/// new ones. An endpoint whose attempt fails on the wire (connection,
/// timeout, 5xx, a malformed body) is ejected for a back-off period that
/// doubles with each failed probe (from the retry backoff base up to 30 s);
/// when it ends, exactly one real request probes it, and only its success
/// puts the endpoint back into rotation. A retry avoids the endpoint the
/// last attempt failed on. When every endpoint is ejected, the one whose
/// ejection ends first is used anyway: a run is never stalled by the
/// balancer, only by retries running out.
struct Balancer {
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    /// The per-attempt timeout: a probe cannot take longer.
    probe_timeout: Duration,
}

impl Balancer {
    fn new(list: Vec<(reqwest::Url, String)>, probe_timeout: Duration) -> Self {
        Balancer {
            endpoints: list
                .into_iter()
                .map(|(target, shown)| Endpoint {
                    target,
                    shown,
                    outstanding: AtomicUsize::new(0),
                    requests: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    ejections: AtomicU64::new(0),
                    health: Mutex::new(Health::default()),
                })
                .collect(),
            next: AtomicUsize::new(0),
            probe_timeout,
        }
    }

    /// Whether endpoint `h` may be probed now.
    fn probe_due(&self, h: &Health, now: Instant) -> bool {
        h.ejected_until.is_some_and(|t| t <= now)
            && h.probing
                .is_none_or(|t| now.duration_since(t) > self.probe_timeout)
    }

    /// The endpoint for the next attempt, avoiding `avoid` when another
    /// can serve.
    fn pick(&self, avoid: Option<usize>) -> usize {
        let n = self.endpoints.len();
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut best: Option<(usize, usize)> = None; // (outstanding, index)
        let mut probe: Option<usize> = None;
        let mut soonest: Option<(Instant, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let Ok(h) = self.endpoints[i].health.lock() else {
                continue;
            };
            match h.ejected_until {
                None => {
                    if Some(i) == avoid {
                        continue;
                    }
                    let load = self.endpoints[i].outstanding.load(Ordering::Relaxed);
                    if best.is_none_or(|(b, _)| load < b) {
                        best = Some((load, i));
                    }
                }
                Some(until) => {
                    if self.probe_due(&h, now) && Some(i) != avoid && probe.is_none() {
                        probe = Some(i);
                    }
                    if soonest.is_none_or(|(t, _)| until < t) {
                        soonest = Some((until, i));
                    }
                }
            }
        }
        // A due probe goes first: it is one request, and it is what brings
        // a recovered server back.
        if let Some(i) = probe {
            if let Ok(mut h) = self.endpoints[i].health.lock() {
                if self.probe_due(&h, now) {
                    h.probing = Some(now);
                    return i;
                }
            }
        }
        if let Some((_, i)) = best {
            return i;
        }
        // Only the avoided endpoint is healthy, or none is.
        if let Some(i) = avoid {
            if self.endpoints[i]
                .health
                .lock()
                .is_ok_and(|h| h.ejected_until.is_none())
            {
                return i;
            }
        }
        soonest.map(|(_, i)| i).unwrap_or(start % n)
    }

    fn succeeded(&self, i: usize) {
        if let Ok(mut h) = self.endpoints[i].health.lock() {
            *h = Health::default();
        }
    }

    fn failed(&self, i: usize, base: Duration) {
        if self.endpoints.len() == 1 {
            return;
        }
        let Ok(mut h) = self.endpoints[i].health.lock() else {
            return;
        };
        let now = Instant::now();
        // Failures of requests sent before the ejection began do not
        // extend it; a failed probe (or a first failure) does.
        if h.ejected_until.is_some_and(|t| t > now) && h.probing.is_none() {
            return;
        }
        let period = base
            .max(MIN_EJECTION)
            .saturating_mul(1u32 << h.strikes.min(16))
            .min(MAX_EJECTION);
        h.ejected_until = Some(now + period);
        h.strikes = h.strikes.saturating_add(1);
        h.probing = None;
        self.endpoints[i].ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether an endpoint other than `i` is in rotation.
    fn has_healthy_other(&self, i: usize) -> bool {
        self.endpoints
            .iter()
            .enumerate()
            .any(|(k, e)| k != i && e.health.lock().is_ok_and(|h| h.ejected_until.is_none()))
    }

    fn stats(&self) -> Vec<EndpointStats> {
        self.endpoints
            .iter()
            .map(|e| EndpointStats {
                url: e.shown.clone(),
                requests: e.requests.load(Ordering::Relaxed),
                errors: e.errors.load(Ordering::Relaxed),
                ejections: e.ejections.load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [Message],
    temperature: f32,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a Value>,
}

#[derive(Deserialize)]
struct ChatReply {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    /// A reasoning model's thinking, sent apart from the answer: DeepSeek,
    /// vLLM's and llama.cpp's reasoning parsers use `reasoning_content`,
    /// OpenRouter and newer vLLM `reasoning`. Kept as any JSON so a server
    /// that sends an object here cannot make the whole reply unreadable;
    /// only text is used.
    #[serde(default)]
    reasoning_content: Option<Value>,
    #[serde(default)]
    reasoning: Option<Value>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// The outcome of one failed attempt.
#[derive(Debug)]
enum Attempt {
    Retry {
        msg: String,
        retry_after: Option<Duration>,
    },
    Fatal(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Retry,
    Fatal,
}

/// 408 (timeout), 409 (conflict, e.g. a model still loading), 429 and every
/// 5xx are transient; any other non-success status is the request's fault.
fn classify_status(status: u16) -> Class {
    match status {
        408 | 409 | 429 | 500..=599 => Class::Retry,
        _ => Class::Fatal,
    }
}

/// Zero limits would stop every request forever; they are configuration
/// mistakes, named by key. (`u32` already refuses negative values.)
pub fn check_rate_limits(rpm: Option<u32>, tpm: Option<u32>) -> Result<(), String> {
    for (key, v) in [("rpm", rpm), ("tpm", tpm)] {
        if v == Some(0) {
            return Err(format!(
                "rate limit `{key}` (--{key} / lm.{key}) is 0, which allows no request at all; \
                 give a positive limit or leave it unset for no limit"
            ));
        }
    }
    Ok(())
}

fn transport_error(url: &str, e: reqwest::Error) -> Attempt {
    // reqwest's messages name the URL it was given, credentials and all;
    // `url` here is already redacted, so drop reqwest's copy.
    let e = e.without_url();
    // Building the request cannot get better by retrying; everything on the
    // wire (connect, reset, timeout) can.
    if e.is_builder() {
        Attempt::Fatal(format!("{url}: {e}"))
    } else if e.is_timeout() {
        Attempt::Retry {
            msg: format!("{url}: timed out"),
            retry_after: None,
        }
    } else {
        // reqwest's Display hides the cause ("error sending request"); the
        // source chain says whether it was a reset, a refused connect, etc.
        let mut msg = format!("{url}: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        Attempt::Retry {
            msg,
            retry_after: None,
        }
    }
}

/// A short excerpt of an error body (servers put the reason there).
fn error_detail(bytes: &[u8]) -> String {
    let v: Option<Value> = serde_json::from_slice(bytes).ok();
    let msg = v
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| e.get("message").or(Some(e)))
        .map(|m| match m {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
    let msg = msg.trim();
    if msg.is_empty() {
        String::new()
    } else {
        let cut: String = msg.chars().take(300).collect();
        format!(": {cut}")
    }
}

/// Text and usage from a chat-completions body; `Err` (retried) for bodies
/// that are not JSON, have no choices, or a choice without a message.
///
/// Empty or `null` content is a reply, not a transport failure: it comes
/// back as `""` and fails to parse for that example, with nothing retried
/// (a content filter or a model that stopped at once answers the same
/// again). Thinking sent in a separate `reasoning_content`/`reasoning` field
/// is put in front of the answer as a `<think>` block, the form reasoning
/// models write inline: the cache stores it with the reply, parsing skips
/// it, and the trace records it as the call's reasoning.
fn parse_completion(bytes: &[u8]) -> Result<(String, Usage), String> {
    let reply: ChatReply =
        serde_json::from_slice(bytes).map_err(|e| format!("malformed reply body: {e}"))?;
    let message = reply
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| "reply has no choices".to_string())?
        .message
        .ok_or_else(|| "reply choice has no message".to_string())?;
    let content = message.content.unwrap_or_default();
    let text_of = |v: Option<Value>| match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        _ => None,
    };
    let thinking = text_of(message.reasoning_content).or_else(|| text_of(message.reasoning));
    let text = match thinking {
        Some(r) if !content.trim_start().starts_with("<think>") => {
            format!("<think>\n{}\n</think>\n{content}", r.trim())
        }
        _ => content,
    };
    let usage = reply
        .usage
        .map(|u| Usage {
            prompt_tokens: u.prompt_tokens.unwrap_or(0),
            completion_tokens: u.completion_tokens.unwrap_or(0),
        })
        .unwrap_or_default();
    Ok((text, usage))
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3).
/// Fractional seconds are accepted because some proxies send them.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A token bucket refilled continuously at `capacity` per minute. Debt is
/// allowed (tokens below zero) so that a TPM estimate corrected after the
/// reply slows the next requests rather than being forgotten.
struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    fn per_minute(n: f64) -> Self {
        let capacity = n.max(1.0);
        TokenBucket {
            capacity,
            per_sec: capacity / 60.0,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    async fn acquire(&self, want: f64) {
        // A request larger than the whole bucket waits for a full bucket.
        let want = want.min(self.capacity);
        loop {
            let wait = {
                let Ok(mut st) = self.state.lock() else {
                    return;
                };
                let now = Instant::now();
                st.0 = (st.0 + now.duration_since(st.1).as_secs_f64() * self.per_sec)
                    .min(self.capacity);
                st.1 = now;
                if st.0 >= want {
                    st.0 -= want;
                    return;
                }
                (want - st.0) / self.per_sec
            };
            tokio::time::sleep(Duration::from_secs_f64(wait.max(0.001))).await;
        }
    }

    fn settle(&self, estimated: f64, actual: f64) {
        if let Ok(mut st) = self.state.lock() {
            // Debt is bounded by one bucket: a reply that used far more than
            // estimated (and than the limit) slows the next request by at
            // most a minute instead of stalling the run for hours.
            st.0 =
                (st.0 + estimated.min(self.capacity) - actual).clamp(-self.capacity, self.capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for s in [408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(s), Class::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert_eq!(classify_status(s), Class::Fatal, "{s}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn completion_bodies() {
        let ok = br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let (t, u) = parse_completion(ok).unwrap();
        assert_eq!(
            (t.as_str(), u.prompt_tokens, u.completion_tokens),
            ("hi", 3, 1)
        );
        assert!(parse_completion(br#"{"choices":[]}"#).is_err());
        assert!(parse_completion(b"{\"choices\": [").is_err());
        assert!(parse_completion(br#"{"choices":[{}]}"#).is_err());
        // Null or empty content is an (unparseable) reply, not retried.
        assert_eq!(
            parse_completion(br#"{"choices":[{"message":{"content":null}}]}"#)
                .unwrap()
                .0,
            ""
        );
        assert_eq!(
            parse_completion(br#"{"choices":[{"message":{"content":""}}]}"#)
                .unwrap()
                .0,
            ""
        );
    }

    #[test]
    fn separate_reasoning_becomes_a_think_block() {
        let body = br#"{"choices":[{"message":{"content":"[[ ## answer ## ]]\nParis","reasoning_content":" Capital of France. "}}]}"#;
        assert_eq!(
            parse_completion(body).unwrap().0,
            "<think>\nCapital of France.\n</think>\n[[ ## answer ## ]]\nParis"
        );
        let body = br#"{"choices":[{"message":{"content":null,"reasoning":"hmm"}}]}"#;
        assert_eq!(
            parse_completion(body).unwrap().0,
            "<think>\nhmm\n</think>\n"
        );
        // Not text (some servers send structured details): ignored, not fatal.
        let body = br#"{"choices":[{"message":{"content":"x","reasoning":{"effort":"low"}}}]}"#;
        assert_eq!(parse_completion(body).unwrap().0, "x");
        // Already inline: not doubled.
        let body =
            br#"{"choices":[{"message":{"content":"<think>a</think>x","reasoning_content":"a"}}]}"#;
        assert_eq!(parse_completion(body).unwrap().0, "<think>a</think>x");
    }

    #[test]
    fn missing_key_variable_is_fatal() {
        let mut cfg = HttpConfig::new("m", vec!["http://127.0.0.1:9/v1".into()]);
        cfg.api_key_env = Some("LMC_TEST_SURELY_UNSET_KEY_VAR".into());
        let err = HttpLm::new(cfg).unwrap_err();
        assert!(err.to_string().contains("LMC_TEST_SURELY_UNSET_KEY_VAR"));
        assert!(HttpLm::new(HttpConfig::new("m", vec![])).is_err());
    }

    fn balancer(n: usize) -> Balancer {
        let list = (0..n)
            .map(|i| {
                let u = format!("http://127.0.0.1:{}/v1/chat/completions", 9000 + i);
                (reqwest::Url::parse(&u).unwrap(), u)
            })
            .collect();
        Balancer::new(list, Duration::from_secs(5))
    }

    #[test]
    fn balancer_prefers_least_outstanding_and_avoids_the_failed_one() {
        let b = balancer(3);
        b.endpoints[0].outstanding.store(5, Ordering::Relaxed);
        b.endpoints[1].outstanding.store(1, Ordering::Relaxed);
        b.endpoints[2].outstanding.store(3, Ordering::Relaxed);
        for _ in 0..6 {
            assert_eq!(b.pick(None), 1);
        }
        // A retry of a call that failed on 1 goes to the next least loaded.
        assert_eq!(b.pick(Some(1)), 2);
        // Equal loads are taken in turn.
        let b = balancer(3);
        let mut seen: Vec<usize> = (0..3).map(|_| b.pick(None)).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2]);
    }

    #[test]
    fn an_ejected_endpoint_gets_one_probe_and_returns_only_on_success() {
        let b = balancer(2);
        b.failed(0, Duration::ZERO);
        assert_eq!(b.endpoints[0].ejections.load(Ordering::Relaxed), 1);
        assert!(!b.has_healthy_other(1));
        // Ejected: everything goes to 1 until the back-off ends.
        for _ in 0..10 {
            assert_eq!(b.pick(None), 1);
        }
        std::thread::sleep(MIN_EJECTION + Duration::from_millis(20));
        // Due: exactly one probe, the others still go to 1.
        assert_eq!(b.pick(None), 0);
        for _ in 0..5 {
            assert_eq!(b.pick(None), 1);
        }
        // The probe fails: ejected again, for twice as long.
        b.failed(0, Duration::ZERO);
        let until = b.endpoints[0].health.lock().unwrap().ejected_until.unwrap();
        assert!(until >= Instant::now() + MIN_EJECTION + MIN_EJECTION / 2);
        assert_eq!(b.endpoints[0].ejections.load(Ordering::Relaxed), 2);
        // A success brings it back into rotation.
        b.succeeded(0);
        assert!(b.has_healthy_other(1));
        let picks: Vec<usize> = (0..4).map(|_| b.pick(None)).collect();
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
        // All ejected: the run is not stalled, the soonest back is used.
        b.failed(0, Duration::ZERO);
        b.failed(1, Duration::from_secs(10));
        assert_eq!(b.pick(None), 0);
    }

    #[tokio::test]
    async fn bucket_waits_when_empty() {
        let b = TokenBucket::per_minute(6000.0); // 100/s
        b.acquire(6000.0).await;
        let t = Instant::now();
        b.acquire(5.0).await;
        assert!(
            t.elapsed() >= Duration::from_millis(30),
            "{:?}",
            t.elapsed()
        );
    }
}
