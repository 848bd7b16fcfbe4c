//! The LM flags shared by every command that calls an LM (`run`, `eval`,
//! `compile`): flattened into each command's `Args`, merged over the
//! program's `lm:` section (command line wins), then handed to
//! `lm::build_lm_full`, which applies environment variables and defaults
//! for whatever is still unset. One definition keeps the flags, their help
//! and their precedence identical across commands.

use std::path::PathBuf;
use std::time::Duration;

use crate::adapter::AdapterKind;
use crate::lm::usage::Budgets;
use crate::lm::{build_lm_full, BuiltLm, LmError, LmOptions};
use crate::program::LmConfig;
use crate::run::RunContext;
use crate::trust::credentials::CredentialPolicy;
use crate::trust::locate::LmDeclarations;

use super::CliError;

#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "LM options")]
pub struct LmArgs {
    /// LM provider: `embedded` (in-process GGUF model, the default) or
    /// `openai` (any OpenAI-compatible server: OpenAI, vLLM, Ollama,
    /// llama.cpp server, SGLang, LiteLLM).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,

    /// Model name for HTTP servers, or path to a GGUF file for the embedded
    /// engine.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,

    /// Base URL of an OpenAI-compatible server, e.g. http://localhost:8000/v1.
    /// Repeat to load-balance one model over several servers; any base URL
    /// selects the HTTP backend.
    #[arg(long = "base-url", value_name = "URL")]
    pub base_urls: Vec<String>,

    /// Name of the environment variable holding the API key (the key itself
    /// is never accepted on the command line, stored or logged).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,

    /// Sampling temperature (default 0: greedy, deterministic).
    #[arg(long, value_name = "T")]
    pub temperature: Option<f32>,

    /// Most tokens the LM may generate per call.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,

    /// How prompts are rendered and replies parsed: `chat` (DSPy's
    /// `[[ ## field ## ]]` protocol) or `json` (one JSON object; sends a JSON
    /// schema to servers that enforce it).
    #[arg(long, value_name = "chat|json")]
    pub adapter: Option<AdapterKind>,

    /// LM requests in flight at once (HTTP), or sequences decoded together
    /// (embedded).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// CPU threads for the embedded engine.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// How enum outputs are decided on the embedded engine: `sample`
    /// (decode them, the default), `likelihood` (the most likely whole
    /// value) or `calibrated` (likelihood divided by a content-free
    /// input's, Zhao et al. 2021).
    #[arg(long, value_name = "sample|likelihood|calibrated")]
    pub choice: Option<crate::lm::choice::ChoiceMode>,

    /// Per-attempt HTTP timeout in seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,

    /// Retries of a failed HTTP call (429, 5xx, timeouts, resets) before
    /// giving up.
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,

    /// Requests per minute allowed to the HTTP server.
    #[arg(long, value_name = "N")]
    pub rpm: Option<u32>,

    /// Tokens per minute allowed to the HTTP server.
    #[arg(long, value_name = "N")]
    pub tpm: Option<u32>,

    /// Neither read nor write the response cache.
    #[arg(long, env = "LMC_NO_CACHE", conflicts_with = "offline")]
    pub no_cache: bool,

    /// Replay recorded replies only: a request not in the cache is an error
    /// naming it (for CI gates that must not call an LM).
    #[arg(long, env = "LMC_OFFLINE")]
    pub offline: bool,

    /// Directory of the response cache [default: $LMC_CACHE_DIR, else
    /// $LMC_HOME/cache, else ~/.cache/lmc/cache].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Stop after this many LM calls that reach the backend (cache hits are
    /// free); the run can be resumed from the cache later.
    #[arg(long, value_name = "N")]
    pub max_lm_calls: Option<u64>,

    /// Stop after this many prompt + completion tokens spent on the backend.
    #[arg(long = "max-tokens-budget", value_name = "N")]
    pub max_tokens_budget: Option<u64>,

    /// Stop after this much spent, in USD (needs prices in the LM config:
    /// price_prompt_per_mtok, price_completion_per_mtok).
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,

    #[command(flatten)]
    pub trust: super::trust_args::TrustArgs,
}

impl LmArgs {
    /// The LM configuration with command-line values over the program's
    /// (`cfg`), and the options that only exist on the command line.
    /// Environment variables and defaults are applied by `build_lm_full`.
    pub fn merge(&self, cfg: Option<&LmConfig>) -> (LmConfig, LmOptions) {
        let mut c = cfg.cloned().unwrap_or_default();
        macro_rules! over {
            ($field:ident, $value:expr) => {
                if let Some(v) = $value {
                    c.$field = Some(v);
                }
            };
        }
        over!(provider, self.provider.clone());
        over!(model, self.model.clone());
        if !self.base_urls.is_empty() {
            c.base_urls = self.base_urls.clone();
        }
        over!(api_key_env, self.api_key_env.clone());
        over!(temperature, self.temperature);
        over!(max_tokens, self.max_tokens);
        over!(
            adapter,
            self.adapter.map(|a| match a {
                AdapterKind::Chat => "chat".to_string(),
                AdapterKind::Json => "json".to_string(),
            })
        );
        over!(concurrency, self.concurrency);
        over!(threads, self.threads);
        over!(choice, self.choice);
        over!(timeout_secs, self.timeout);
        over!(max_retries, self.max_retries);
        over!(rpm, self.rpm);
        over!(tpm, self.tpm);
        let opts = LmOptions {
            no_cache: self.no_cache,
            offline: self.offline,
            cache_dir: self.cache_dir.clone(),
            budgets: Budgets {
                max_lm_calls: self.max_lm_calls,
                max_tokens: self.max_tokens_budget,
                max_cost: self.max_cost,
            },
            ..Default::default()
        };
        (c, opts)
    }

    /// Merge, build the LM stack, and route cache warnings to stderr.
    /// Configuration mistakes become exit-2 input errors. Returns the merged
    /// config too (for artifacts and the run context). `declared` says
    /// where the files wrote the LM's URL and key variable, for the
    /// credential rule (docs/security.md).
    pub fn build(
        &self,
        file_cfg: Option<&LmConfig>,
        declared: &LmDeclarations,
    ) -> anyhow::Result<(LmConfig, BuiltLm)> {
        let (cfg, mut opts) = self.merge(file_cfg);
        // The credential rule must know which URL and key variable the
        // runner gave: those travel as options, the files' stay in the
        // config (the effective values are the same either way).
        let mut build_cfg = cfg.clone();
        if !self.base_urls.is_empty() {
            build_cfg.base_urls = file_cfg.map(|c| c.base_urls.clone()).unwrap_or_default();
            opts.base_urls = self.base_urls.clone();
        }
        if self.api_key_env.is_some() {
            build_cfg.api_key_env = file_cfg.and_then(|c| c.api_key_env.clone());
            opts.api_key_env = self.api_key_env.clone();
        }
        opts.credentials = Some(CredentialPolicy {
            trust: self.trust.resolve()?,
            declared: declared.clone(),
        });
        if let Some(t) = self.timeout {
            if !(t.is_finite() && t > 0.0) {
                return Err(CliError::Input(format!(
                    "--timeout must be a positive number of seconds, got {t}"
                ))
                .into());
            }
        }
        check_cost_budget(&build_cfg, &opts)?;
        let built = build_lm_full(&build_cfg, &opts).map_err(|e| match e {
            LmError::Fatal(msg) => anyhow::Error::new(CliError::Input(msg)),
            other => anyhow::Error::new(other),
        })?;
        if let Some(store) = &built.cache {
            store.set_warning_callback(|msg| eprintln!("warning: {msg}"));
        }
        Ok((cfg, built))
    }
}

/// `--max-cost` can only stop a run whose calls are priced: without
/// prices every call costs $0 and the guard would silently never fire, so
/// asking for it without them is a usage error that names the keys.
fn check_cost_budget(cfg: &LmConfig, opts: &LmOptions) -> Result<(), CliError> {
    let Some(max) = opts.budgets.max_cost else {
        return Ok(());
    };
    if cfg.price_prompt_per_mtok.is_some() || cfg.price_completion_per_mtok.is_some() {
        return Ok(());
    }
    Err(CliError::Input(format!(
        "--max-cost {max} needs prices, and the LM config has none, so no call would ever count against the budget\n  = help: set `price_prompt_per_mtok` and `price_completion_per_mtok` (USD per million tokens) under `lm:` in the program or lmc.yaml, or use --max-lm-calls / --max-tokens-budget"
    )))
}

/// The adapter a merged config asks for (default `chat`); an unknown name
/// is an input error.
pub fn adapter_of(cfg: &LmConfig) -> Result<AdapterKind, CliError> {
    match cfg.adapter.as_deref() {
        None => Ok(AdapterKind::Chat),
        Some(a) => a
            .parse()
            .map_err(|e: String| CliError::Input(format!("lm.adapter: {e}"))),
    }
}

/// Apply a merged config's sampling settings (adapter, temperature,
/// max_tokens) to a run context.
pub fn configure_context(cfg: &LmConfig, ctx: &mut RunContext) -> Result<(), CliError> {
    ctx.adapter = adapter_of(cfg)?;
    if let Some(t) = cfg.temperature {
        ctx.temperature = t;
    }
    if let Some(m) = cfg.max_tokens {
        ctx.max_tokens = m;
    }
    if let Some(c) = cfg.choice {
        ctx.choice = c;
    }
    Ok(())
}

/// `--timeout` as a duration (for callers building HTTP settings directly).
pub fn timeout_of(cfg: &LmConfig) -> Option<Duration> {
    cfg.timeout_secs
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        lm: LmArgs,
    }

    #[test]
    fn cli_wins_over_program_config() {
        let t = T::parse_from([
            "x",
            "--model",
            "cli-model",
            "--base-url",
            "http://a/v1",
            "--base-url",
            "http://b/v1",
            "--adapter",
            "json",
            "--max-lm-calls",
            "5",
        ]);
        let program = LmConfig {
            model: Some("prog-model".into()),
            temperature: Some(0.5),
            max_tokens: Some(99),
            ..Default::default()
        };
        let (cfg, opts) = t.lm.merge(Some(&program));
        assert_eq!(cfg.model.as_deref(), Some("cli-model"));
        assert_eq!(cfg.base_urls.len(), 2);
        assert_eq!(cfg.temperature, Some(0.5));
        assert_eq!(cfg.adapter.as_deref(), Some("json"));
        assert_eq!(opts.budgets.max_lm_calls, Some(5));
        assert!(T::try_parse_from(["x", "--adapter", "xml"]).is_err());
        assert!(T::try_parse_from(["x", "--offline", "--no-cache"]).is_err());
    }
}
