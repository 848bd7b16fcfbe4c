//! Turning configuration into a ready LM: the one place that decides which
//! backend serves a run and how it is wrapped.
//!
//! The stack, outermost first, is `MeteredLm` (prices and records every
//! reply) → `CachedLm` (replays recorded replies, records new ones) →
//! `BudgetedLm` (refuses calls once a budget is spent) → backend. The budget
//! sits below the cache so cache hits are free and never refused, which is
//! what makes a budget-stopped run resumable. The backend is HTTP when the
//! provider is `openai`/`http` or a base URL is given, else the embedded
//! engine. Precedence: [`LmOptions`] (the command line) over [`LmConfig`]
//! (the program or project file) over environment variables over defaults.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::cache::{default_cache_dir, lmc_home, CacheMode, CacheStore, CachedLm};
use super::http::{HttpConfig, HttpLm};
use super::usage::{BudgetedLm, Budgets, MeteredLm, Prices, UsageMeter};
use super::{Lm, LmError, LmRequest, LmResponse, SharedLm};
use crate::program::LmConfig;
use crate::trust::credentials::{CredentialPolicy, KeyUse, Origin};

/// Default OpenAI endpoint and key variable for `provider: openai` with no
/// base URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const OPENAI_KEY_ENV: &str = "OPENAI_API_KEY";
/// File name of the default embedded model under `$LMC_HOME/models`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Settings that are not part of a program's LM configuration (cache,
/// budgets), plus overrides of it. `None`/empty = not set here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LmOptions {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub base_urls: Vec<String>,
    pub api_key_env: Option<String>,
    /// Bypass the response cache (read and write).
    pub no_cache: bool,
    /// Replay only: a cache miss is an error.
    pub offline: bool,
    /// Directory of `cache.sqlite` (default [`default_cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    pub threads: Option<usize>,
    pub concurrency: Option<usize>,
    pub timeout: Option<Duration>,
    pub max_retries: Option<u32>,
    /// First retry backoff step (default 0.5 s); tests shorten it.
    pub backoff_base: Option<Duration>,
    pub seed: Option<u64>,
    pub budgets: Budgets,
    /// The credential rule (docs/security.md). The CLI always sets it, and
    /// then `base_urls`/`api_key_env` above are the runner's and the
    /// config's are the files'. `None`: the library caller vouches for the
    /// whole config.
    pub credentials: Option<CredentialPolicy>,
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
pub fn build_lm(cfg: &LmConfig, opts: &LmOptions) -> Result<(SharedLm, Arc<UsageMeter>), LmError> {
    let b = build_lm_full(cfg, opts)?;
    Ok((b.lm, b.meter))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The embedded model file: `model` if given, else `$LMC_MODEL`, else
/// `$LMC_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf`.
pub fn default_model_path(model: Option<&str>) -> PathBuf {
    if let Some(m) = model {
        return PathBuf::from(m);
    }
    if let Some(m) = env("LMC_MODEL") {
        return PathBuf::from(m);
    }
    lmc_home().join("models").join(DEFAULT_MODEL_FILE)
}

/// Which backend the settings select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Http,
    Embedded,
}

/// Decide the backend: an explicit provider wins; otherwise any base URL
/// (options, config, `$LMC_BASE_URL`) means HTTP; `$LMC_PROVIDER` is last.
pub fn backend_kind(cfg: &LmConfig, opts: &LmOptions) -> Result<BackendKind, LmError> {
    let provider = opts
        .provider
        .clone()
        .or_else(|| cfg.provider.clone())
        .or_else(|| {
            let any_url = !opts.base_urls.is_empty() || !cfg.base_urls.is_empty();
            (!any_url).then(|| env("LMC_PROVIDER")).flatten()
        });
    match provider.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("openai") | Some("http") => Ok(BackendKind::Http),
        Some("embedded") | Some("local") => {
            if !opts.base_urls.is_empty() || !cfg.base_urls.is_empty() {
                return Err(LmError::Fatal(
                    "provider `embedded` does not take base URLs; use provider `openai` for an HTTP server".into(),
                ));
            }
            Ok(BackendKind::Embedded)
        }
        Some(other) => Err(LmError::Fatal(format!(
            "unknown LM provider `{other}` (expected `embedded` or `openai`; any OpenAI-compatible server is `openai` with a base URL)"
        ))),
        None => {
            if !opts.base_urls.is_empty() || !cfg.base_urls.is_empty() || env("LMC_BASE_URL").is_some()
            {
                Ok(BackendKind::Http)
            } else {
                Ok(BackendKind::Embedded)
            }
        }
    }
}

/// Build the LM stack and return its parts.
pub fn build_lm_full(cfg: &LmConfig, opts: &LmOptions) -> Result<BuiltLm, LmError> {
    if opts.offline && opts.no_cache {
        return Err(LmError::Fatal(
            "--offline replays the cache, so it cannot be combined with --no-cache".into(),
        ));
    }
    let kind = backend_kind(cfg, opts)?;
    let mut http_lm = None;
    let backend: SharedLm = match kind {
        BackendKind::Http => {
            let (http, origins) = http_config_with_origins(cfg, opts)?;
            // Offline, no key is read and nothing is sent: nothing to check.
            if let (Some(policy), Some(var), false) =
                (&opts.credentials, &http.api_key_env, opts.offline)
            {
                policy
                    .check(&KeyUse {
                        base_urls: &http.base_urls,
                        urls_from: origins.0,
                        var,
                        var_from: origins.1,
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
        BackendKind::Embedded => embedded(cfg, opts)?,
    };
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
        lm = Arc::new(BudgetedLm::new(lm, opts.budgets, meter.clone()));
    }
    let mut cache = None;
    if !opts.no_cache {
        let dir = opts.cache_dir.clone().unwrap_or_else(default_cache_dir);
        let store = Arc::new(
            CacheStore::open_dir(&dir)
                .map_err(|e| LmError::Fatal(format!("response cache: {e}")))?,
        );
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
        backend: match kind {
            BackendKind::Http => "http",
            BackendKind::Embedded => "embedded",
        },
        http: http_lm,
    })
}

/// The HTTP backend's settings after precedence.
pub fn http_config(cfg: &LmConfig, opts: &LmOptions) -> Result<HttpConfig, LmError> {
    http_config_with_origins(cfg, opts).map(|(h, _)| h)
}

/// [`http_config`] plus where the base URLs and the key variable came from
/// (for the credential rule).
fn http_config_with_origins(
    cfg: &LmConfig,
    opts: &LmOptions,
) -> Result<(HttpConfig, (Origin, Origin)), LmError> {
    let declared = opts.credentials.as_ref().map(|c| c.declared.clone());
    let mut urls_from = Origin::Flag("--base-url");
    let mut key_from = Origin::Flag("--api-key-env");
    let provider = opts
        .provider
        .clone()
        .or_else(|| cfg.provider.clone())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut base_urls = if !opts.base_urls.is_empty() {
        opts.base_urls.clone()
    } else if !cfg.base_urls.is_empty() {
        urls_from = Origin::File(declared.as_ref().and_then(|d| d.base_urls.clone()));
        cfg.base_urls.clone()
    } else {
        urls_from = Origin::Env("LMC_BASE_URL");
        env("LMC_BASE_URL")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut api_key_env = opts.api_key_env.clone();
    if api_key_env.is_none() {
        if let Some(v) = cfg.api_key_env.clone() {
            key_from = Origin::File(declared.as_ref().and_then(|d| d.api_key_env.clone()));
            api_key_env = Some(v);
        } else if let Some(v) = env("LMC_API_KEY_ENV") {
            key_from = Origin::Env("LMC_API_KEY_ENV");
            api_key_env = Some(v);
        }
    }
    if base_urls.is_empty() && provider == "openai" {
        base_urls.push(OPENAI_BASE_URL.to_string());
        urls_from = Origin::Default;
        if api_key_env.is_none() {
            key_from = Origin::Default;
            api_key_env = Some(OPENAI_KEY_ENV.to_string());
        }
    }
    if base_urls.is_empty() {
        return Err(LmError::Fatal(
            "the HTTP LM needs a base URL: --base-url, lm.base_urls or $LMC_BASE_URL".into(),
        ));
    }
    let model = opts
        .model
        .clone()
        .or_else(|| cfg.model.clone())
        .or_else(|| env("LMC_HTTP_MODEL"))
        .ok_or_else(|| {
            LmError::Fatal(
                "the HTTP LM needs a model name: --model, lm.model or $LMC_HTTP_MODEL".into(),
            )
        })?;
    let mut http = HttpConfig::new(model, base_urls);
    http.api_key_env = api_key_env;
    if let Some(c) = opts.concurrency.or(cfg.concurrency) {
        http.concurrency = c.max(1);
    }
    if let Some(t) = opts.timeout.or_else(|| {
        cfg.timeout_secs
            .filter(|t| *t > 0.0)
            .map(Duration::from_secs_f64)
    }) {
        http.timeout = t;
    }
    if let Some(r) = opts.max_retries.or(cfg.max_retries) {
        http.max_retries = r;
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
        let max_tokens = cfg.max_tokens.unwrap_or(crate::run::DEFAULT_MAX_TOKENS);
        if max_tokens >= tpm {
            return Err(LmError::Fatal(format!(
                "the tokens-per-minute limit (--tpm / lm.tpm) is {tpm}, but one request may \
                 use max_tokens {max_tokens} plus its prompt; raise the limit above \
                 max_tokens or lower max_tokens (--max-tokens / lm.max_tokens)"
            )));
        }
    }
    http.seed = opts.seed;
    Ok((http, (urls_from, key_from)))
}

#[cfg(feature = "embedded")]
fn embedded(cfg: &LmConfig, opts: &LmOptions) -> Result<SharedLm, LmError> {
    use super::embedded::{EmbeddedConfig, EmbeddedLm};
    let lm = EmbeddedLm::load(EmbeddedConfig {
        model_path: default_model_path(opts.model.as_deref().or(cfg.model.as_deref())),
        threads: opts.threads.or(cfg.threads),
        context: cfg.context,
        // For the embedded engine, concurrency is how many sequences it
        // decodes together.
        max_batch: opts.concurrency.or(cfg.concurrency),
    })?;
    Ok(Arc::new(lm))
}

#[cfg(not(feature = "embedded"))]
fn embedded(_cfg: &LmConfig, _opts: &LmOptions) -> Result<SharedLm, LmError> {
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

    #[test]
    fn backend_selection() {
        let mut cfg = LmConfig::default();
        let opts = LmOptions::default();
        cfg.base_urls = vec!["http://127.0.0.1:1/v1".into()];
        assert_eq!(backend_kind(&cfg, &opts).unwrap(), BackendKind::Http);
        cfg.provider = Some("embedded".into());
        assert!(backend_kind(&cfg, &opts).is_err());
        cfg.provider = Some("bogus".into());
        assert!(backend_kind(&cfg, &opts)
            .unwrap_err()
            .to_string()
            .contains("bogus"));
    }

    #[test]
    fn http_needs_model_and_openai_defaults() {
        let cfg = LmConfig {
            provider: Some("openai".into()),
            model: Some("gpt-4o-mini".into()),
            ..Default::default()
        };
        let http = http_config(&cfg, &LmOptions::default()).unwrap();
        assert_eq!(http.base_urls, vec![OPENAI_BASE_URL.to_string()]);
        assert_eq!(http.api_key_env.as_deref(), Some(OPENAI_KEY_ENV));
        let opts = LmOptions {
            base_urls: vec!["http://a/v1".into()],
            model: Some("x".into()),
            concurrency: Some(64),
            ..Default::default()
        };
        let http = http_config(&cfg, &opts).unwrap();
        assert_eq!((http.model.as_str(), http.concurrency), ("x", 64));
        assert_eq!(http.api_key_env, None);
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
        let built = build_lm_full(&cfg, &opts).unwrap();
        assert_eq!(built.backend, "http");
        assert!(built.cache.is_some());
        let both = LmOptions {
            no_cache: true,
            ..opts
        };
        assert!(build_lm(&cfg, &both).is_err());
    }
}
