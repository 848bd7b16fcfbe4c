//! The OpenAI-compatible chat-completions backend (OpenAI, vLLM, SGLang,
//! llama.cpp server, Ollama, TGI, LiteLLM proxy).
//!
//! It owns everything about talking to a server that can fail: a semaphore
//! bounding requests in flight, RPM/TPM token buckets, a per-attempt
//! timeout, round-robin over several base URLs, and retries with exponential
//! backoff and full jitter that honour `Retry-After`. Failures are sorted
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
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Chat-completions URLs, each with its redacted form: the real one is
    /// only ever handed to reqwest, the redacted one goes into messages.
    endpoints: Vec<(reqwest::Url, String)>,
    /// Passwords and query values of the base URLs, masked in any text a
    /// server sends back (an error body may echo the key it was given).
    secrets: Vec<String>,
    next: AtomicUsize,
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
                &self.endpoints.iter().map(|(_, r)| r).collect::<Vec<_>>(),
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
            next: AtomicUsize::new(0),
            endpoints,
            secrets,
            auth,
            client,
            cfg,
        })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    /// One attempt against the next endpoint in rotation.
    async fn attempt(&self, body: &bytes::Bytes) -> Result<(String, Usage), Attempt> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let (target, url) = &self.endpoints[i];
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
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
        let started = Instant::now();
        let model = if req.model.is_empty() {
            &self.cfg.model
        } else {
            &req.model
        };
        let body: bytes::Bytes = serde_json::to_vec(&ChatBody {
            model,
            messages: &req.messages,
            temperature: req.temperature,
            max_tokens: req.max_tokens,
            seed: self.cfg.seed,
            response_format: req.response_format.as_ref(),
        })
        .map_err(|e| LmError::Fatal(format!("cannot encode request: {e}")))?
        .into();
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
                self.attempt(&body).await
            };
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
                    tokio::time::sleep(self.backoff(retries, retry_after)).await;
                }
            }
        }
    }

    fn model(&self) -> String {
        self.cfg.model.clone()
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
