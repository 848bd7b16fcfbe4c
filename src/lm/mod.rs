//! The LM layer: one [`Lm`] trait over every backend, plus what wraps it.
//!
//! Backends: `embedded` (llama.cpp in-process, the default) and `http`
//! (OpenAI-compatible chat completions). Wrappers: `cache` (persistent
//! SQLite response cache keyed by the canonical request) and `usage`
//! (token/cost accounting and budgets). Every call yields an [`LmResponse`]
//! carrying what traces need: latency, tokens, cache hit, retries.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use crate::adapter::Message;

pub mod build;
pub mod cache;
mod cachefile;
pub mod choice;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod http;
pub mod model_hash;
pub mod resolve;
pub mod url;
pub mod usage;

pub use build::{build_lm, build_lm_full, BuiltLm, LmOptions};
pub use resolve::{LmSet, Provider, ResolvedLm};
pub use usage::{Budgets, UsageMeter, UsageSnapshot};

/// One request to an LM. Everything that changes the reply is here, and all
/// of it except `grammar`'s provenance goes into the cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub temperature: f32,
    pub max_tokens: u32,
    /// Distinguishes otherwise identical requests that must not share a
    /// cached reply (bootstrapping rounds, refine attempts), as DSPy does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<u64>,
    /// GBNF grammar the embedded engine enforces while decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<String>,
    /// OpenAI `response_format` passed through to HTTP servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Decide enum outputs by likelihood where the backend can (embedded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<choice::ChoiceRequest>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmResponse {
    pub text: String,
    pub usage: Usage,
    /// Served from the response cache (no backend call, no cost).
    #[serde(default)]
    pub cache_hit: bool,
    /// Wall time of the call (zero-ish for cache hits).
    #[serde(with = "duration_secs")]
    pub latency: Duration,
    /// Retries spent before the successful attempt.
    #[serde(default)]
    pub retries: u32,
    /// Cost in USD where prices are known.
    #[serde(default)]
    pub cost: f64,
    /// Enum values the backend scored instead of sampling (see `choice`);
    /// empty for sampled replies and cache hits (the cache keeps text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<choice::ChoiceScores>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum LmError {
    /// Retries exhausted on transient failures (429, 5xx, timeouts, resets).
    #[error("LM call failed after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
    /// A failure that retrying cannot fix (400, 401, bad config).
    #[error("LM call failed: {0}")]
    Fatal(String),
    /// `--offline`: the request is not in the cache.
    #[error("offline mode: no cached reply for request {key} (model {model}); re-run without --offline to record it")]
    CacheMiss { key: String, model: String },
    /// A budget (`--max-lm-calls`, `--max-tokens`, `--max-cost`) is spent.
    #[error("LM budget exhausted: {0}")]
    Budget(String),
}

/// Any LM backend or wrapper.
#[async_trait::async_trait]
pub trait Lm: Send + Sync {
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError>;
    /// Model identifier used in requests and cache keys.
    fn model(&self) -> String;
    /// Whether the backend enforces `grammar` (the embedded engine does).
    fn supports_grammar(&self) -> bool {
        false
    }
    /// The caller could not use the reply to `req` (it failed to parse).
    /// The cache flags it so a later read-write run asks again instead of
    /// replaying the failure; wrappers pass it down; backends ignore it.
    /// Required, not defaulted: a wrapper that forgot it once made failed
    /// parses final again.
    fn mark_unusable(&self, req: &LmRequest);
}

pub type SharedLm = Arc<dyn Lm>;

mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Ok(Duration::from_secs_f64(v.max(0.0)))
    }
}
