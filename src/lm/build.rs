//! Turning a resolved LM into a ready one: the one place that decides which
//! backend serves it and how it is wrapped.
//!
//! The stack, outermost first, is `MeteredLm` (prices and records every
//! reply) → `CachedLm` (replays recorded replies, records new ones) →
//! `BudgetedLm` (refuses calls once a budget is spent) → backend. The budget
//! sits below the cache so cache hits are free and never refused, which is
//! what makes a budget-stopped run resumable. What the LM is (provider,
//! model, URLs, limits) was decided by `resolve`, with the source of every
//! value; this file reads no environment and applies no default of its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::cache::{default_cache_dir, CacheMode, CacheStore, CachedLm};
use super::http::{HttpConfig, HttpLm};
use super::resolve::{Provider, ResolvedLm};
use super::usage::{BudgetedLm, Budgets, MeteredLm, Prices, Spend, UsageMeter};
use super::{Lm, LmError, LmRequest, LmResponse, SharedLm};
use crate::trust::credentials::{CredentialPolicy, KeyUse};

pub use super::resolve::{DEFAULT_MODEL_FILE, OPENAI_BASE_URL, OPENAI_KEY_ENV};

/// Settings of a run that are not one LM's: the cache, budgets, and the
/// runner's grants for the credential rule.
#[derive(Debug, Clone, Default)]
pub struct LmOptions {
    /// Bypass the response cache (read and write).
    pub no_cache: bool,
    /// Replay only: a cache miss is an error.
    pub offline: bool,
    /// Directory of `cache.sqlite` (default [`default_cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// First retry backoff step (default 0.5 s); tests shorten it.
    pub backoff_base: Option<Duration>,
    pub seed: Option<u64>,
    pub budgets: Budgets,
    /// What the run has spent, shared by all its LMs.
    pub spend: Arc<Spend>,
    /// The response cache, opened once and shared by all LMs of the run
    /// (one SQLite connection and writer per process).
    pub cache_store: SharedStore,
    /// The credential rule (docs/security.md). The CLI always sets it;
    /// `None`: the library caller vouches for the whole config.
    pub credentials: Option<CredentialPolicy>,
}

/// A cache store opened on first use, shared by clones of [`LmOptions`].
#[derive(Clone, Default)]
pub struct SharedStore(Arc<std::sync::OnceLock<Arc<CacheStore>>>);

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "SharedStore(open)"
        } else {
            "SharedStore(unopened)"
        })
    }
}

/// Everything [`build_lm_full`] made: the LM to call, its meter, and the
/// cache store (for warnings and stats), when the cache is on.
pub struct BuiltLm {
    pub lm: SharedLm,
    pub meter: Arc<UsageMeter>,
    pub cache: Option<Arc<CacheStore>>,
    /// `http` or `embedded`.
    pub backend: &'static str,
    /// The HTTP backend itself, for its per-endpoint counts (`None` for
    /// the embedded engine and offline replays).
    pub http: Option<Arc<HttpLm>>,
}

/// Build the LM stack for a run: meter ∘ cache ∘ budget ∘ backend.
pub fn build_lm(lm: &ResolvedLm, opts: &LmOptions) -> Result<(SharedLm, Arc<UsageMeter>), LmError> {
    let b = build_lm_full(lm, opts)?;
    Ok((b.lm, b.meter))
}

/// Build the LM stack and return its parts.
pub fn build_lm_full(r: &ResolvedLm, opts: &LmOptions) -> Result<BuiltLm, LmError> {
    let backend = build_backend(r, opts)?;
    wrap(r, opts, backend)
}

/// A backend with its HTTP handle (for per-endpoint counts), shareable by
/// several LMs that differ only in sampling settings or prices.
#[derive(Clone)]
pub struct Backend {
    pub lm: SharedLm,
    pub http: Option<Arc<HttpLm>>,
}

/// What makes two resolved LMs need different backends: everything but
/// the sampling settings and prices, which live above the backend. LMs
/// with equal keys share one backend (one embedded model in memory, one
/// connection pool and rate limiter per server and model).
pub fn backend_key(r: &ResolvedLm) -> String {
    let mut c = r.config.clone();
    c.temperature = None;
    c.max_tokens = None;
    c.adapter = None;
    c.price_prompt_per_mtok = None;
    c.price_completion_per_mtok = None;
    serde_json::to_string(&c).unwrap_or_default()
}

/// The backend alone (checked against the credential rule).
pub fn build_backend(r: &ResolvedLm, opts: &LmOptions) -> Result<Backend, LmError> {
    if opts.offline && opts.no_cache {
        return Err(LmError::Fatal(
            "--offline replays the cache, so it cannot be combined with --no-cache".into(),
        ));
    }
    let mut http_lm = None;
    let backend: SharedLm = match r.provider {
        Provider::OpenAi => {
            let http = http_config(r, opts)?;
            // Offline, no key is read and nothing is sent: nothing to check.
            if let (Some(policy), Some(var), false) =
                (&opts.credentials, &http.api_key_env, opts.offline)
            {
                policy
                    .check(&KeyUse {
                        base_urls: &http.base_urls,
                        urls_from: r.source("base_urls").origin(),
                        var,
                        var_from: r.source("api_key_env").origin(),
                    })
                    .map_err(LmError::Fatal)?;
            }
            if opts.offline {
                // Offline replay must work in CI where no key is set and no
                // server runs: nothing below the cache is ever called.
                Arc::new(Unreachable {
                    model: http.model,
                    grammar: false,
                })
            } else {
                let h = Arc::new(HttpLm::new(http)?);
                http_lm = Some(h.clone());
                h
            }
        }
        Provider::Embedded => embedded(r)?,
    };
    Ok(Backend {
        lm: backend,
        http: http_lm,
    })
}

/// Wrap a backend into the LM stack of `r`: meter ∘ cache ∘ budget.
pub fn wrap(r: &ResolvedLm, opts: &LmOptions, backend: Backend) -> Result<BuiltLm, LmError> {
    let cfg = &r.config;
    let Backend {
        lm: backend,
        http: http_lm,
    } = backend;
    let prices = match (cfg.price_prompt_per_mtok, cfg.price_completion_per_mtok) {
        (None, None) => None,
        (p, c) => Some(Prices {
            prompt_per_mtok: p.unwrap_or(0.0),
            completion_per_mtok: c.unwrap_or(0.0),
        }),
    };
    let meter = Arc::new(UsageMeter::new(prices));
    let mut lm: SharedLm = backend;
    if !opts.budgets.is_unlimited() {
        lm = Arc::new(BudgetedLm::sharing(
            lm,
            opts.budgets,
            meter.clone(),
            opts.spend.clone(),
        ));
    }
    let mut cache = None;
    if !opts.no_cache {
        let store = match opts.cache_store.0.get() {
            Some(s) => s.clone(),
            None => {
                let dir = opts.cache_dir.clone().unwrap_or_else(default_cache_dir);
                let s = Arc::new(
                    CacheStore::open_dir(&dir)
                        .map_err(|e| LmError::Fatal(format!("response cache: {e}")))?,
                );
                opts.cache_store.0.get_or_init(|| s).clone()
            }
        };
        let mode = if opts.offline {
            CacheMode::Offline
        } else {
            CacheMode::ReadWrite
        };
        lm = Arc::new(CachedLm::new(lm, store.clone(), mode));
        cache = Some(store);
    }
    let lm: SharedLm = Arc::new(MeteredLm::new(lm, meter.clone()));
    Ok(BuiltLm {
        lm,
        meter,
        cache,
        backend: match r.provider {
            Provider::OpenAi => "http",
            Provider::Embedded => "embedded",
        },
        http: http_lm,
    })
}

/// The HTTP backend's settings for a resolved LM.
pub fn http_config(r: &ResolvedLm, opts: &LmOptions) -> Result<HttpConfig, LmError> {
    let cfg = &r.config;
    let who = if r.name == super::resolve::DEFAULT_LM {
        "the HTTP LM".to_string()
    } else {
        format!("the HTTP LM `{}`", r.name)
    };
    if cfg.base_urls.is_empty() {
        return Err(LmError::Fatal(format!(
            "{who} needs a base URL: --base-url, lm.base_urls or $LMC_BASE_URL"
        )));
    }
    let model = cfg.model.clone().ok_or_else(|| {
        LmError::Fatal(format!(
            "{who} needs a model name: --model, lm.model or $LMC_HTTP_MODEL"
        ))
    })?;
    let mut http = HttpConfig::new(model, cfg.base_urls.clone());
    http.api_key_env = cfg.api_key_env.clone();
    http.concurrency = r.concurrency();
    if let Some(t) = cfg.timeout_secs {
        if !(t.is_finite() && t > 0.0) {
            return Err(LmError::Fatal(format!(
                "the timeout (--timeout / lm.timeout_secs) must be a positive number of seconds, got {t}"
            )));
        }
        http.timeout = Duration::from_secs_f64(t);
    }
    if let Some(n) = cfg.max_retries {
        http.max_retries = n;
    }
    if let Some(b) = opts.backoff_base {
        http.backoff_base = b;
    }
    http.rpm = cfg.rpm;
    http.tpm = cfg.tpm;
    super::http::check_rate_limits(http.rpm, http.tpm).map_err(LmError::Fatal)?;
    if let Some(tpm) = http.tpm {
        // Every request reserves its completion allowance against the TPM
        // budget, so a budget under max_tokens admits no request at all.
        let max_tokens = r.max_tokens();
        if max_tokens >= tpm {
            return Err(LmError::Fatal(format!(
                "the tokens-per-minute limit (--tpm / lm.tpm) is {tpm}, but one request may \
                 use max_tokens {max_tokens} plus its prompt; raise the limit above \
                 max_tokens or lower max_tokens (--max-tokens / lm.max_tokens)"
            )));
        }
    }
    http.seed = opts.seed;
    Ok(http)
}

#[cfg(feature = "embedded")]
fn embedded(r: &ResolvedLm) -> Result<SharedLm, LmError> {
    use super::embedded::{EmbeddedConfig, EmbeddedLm};
    let cfg = &r.config;
    let lm = EmbeddedLm::load(EmbeddedConfig {
        model_path: cfg
            .model
            .as_deref()
            .map(PathBuf::from)
            .unwrap_or_else(super::resolve::default_model_path),
        threads: cfg.threads,
        context: cfg.context,
        // For the embedded engine, concurrency is how many sequences it
        // decodes together.
        max_batch: Some(r.concurrency()),
    })?;
    Ok(Arc::new(lm))
}

#[cfg(not(feature = "embedded"))]
fn embedded(_r: &ResolvedLm) -> Result<SharedLm, LmError> {
    Err(LmError::Fatal(
        "this lmc was built without the embedded engine; configure an HTTP LM \
         (--base-url URL --model NAME, or lm.base_urls in the program)"
            .into(),
    ))
}

/// Stands below the cache in offline mode: it names the model (so cache
/// keys match a live run) and refuses any call that gets past the cache.
struct Unreachable {
    model: String,
    grammar: bool,
}

#[async_trait::async_trait]
impl Lm for Unreachable {
    // Nothing recorded here, so nothing to flag (the trait makes
    // every implementation say so: a wrapper must pass it down).
    fn mark_unusable(&self, _req: &crate::lm::LmRequest) {}
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
        Err(LmError::CacheMiss {
            key: super::cache::cache_key(req),
            model: req.model.clone(),
        })
    }
    fn model(&self) -> String {
        self.model.clone()
    }
    fn supports_grammar(&self) -> bool {
        self.grammar
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::LmConfig;

    fn resolved(cfg: LmConfig) -> ResolvedLm {
        ResolvedLm::from_config(&cfg).unwrap()
    }

    #[test]
    fn backend_selection() {
        let mut cfg = LmConfig {
            base_urls: vec!["http://127.0.0.1:1/v1".into()],
            ..Default::default()
        };
        assert_eq!(resolved(cfg.clone()).provider, Provider::OpenAi);
        cfg.provider = Some("embedded".into());
        assert!(ResolvedLm::from_config(&cfg).is_err());
        cfg.provider = Some("bogus".into());
        assert!(ResolvedLm::from_config(&cfg).unwrap_err().contains("bogus"));
    }

    #[test]
    fn http_needs_model_and_openai_defaults() {
        let cfg = LmConfig {
            provider: Some("openai".into()),
            model: Some("gpt-4o-mini".into()),
            ..Default::default()
        };
        let http = http_config(&resolved(cfg), &LmOptions::default()).unwrap();
        assert_eq!(http.base_urls, vec![OPENAI_BASE_URL.to_string()]);
        assert_eq!(http.api_key_env.as_deref(), Some(OPENAI_KEY_ENV));
        assert_eq!(http.concurrency, super::super::resolve::DEFAULT_CONCURRENCY);
        let no_model = LmConfig {
            base_urls: vec!["http://a/v1".into()],
            ..Default::default()
        };
        assert!(http_config(&resolved(no_model), &LmOptions::default()).is_err());
    }

    #[test]
    fn offline_http_needs_no_key_or_server() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LmConfig {
            base_urls: vec!["http://127.0.0.1:9/v1".into()],
            model: Some("m".into()),
            api_key_env: Some("LMC_TEST_UNSET_KEY_FOR_OFFLINE".into()),
            ..Default::default()
        };
        let opts = LmOptions {
            offline: true,
            cache_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let r = resolved(cfg);
        let built = build_lm_full(&r, &opts).unwrap();
        assert_eq!(built.backend, "http");
        assert!(built.cache.is_some());
        let both = LmOptions {
            no_cache: true,
            ..opts
        };
        assert!(build_lm(&r, &both).is_err());
    }
}
