//! The LM flags shared by every command that calls an LM (`run`, `eval`,
//! `compile`, `config`): flattened into each command's `Args`, they are the
//! command-line layer of `lm::resolve`, which resolves the default LM and
//! every named LM once; [`LmArgs::build`] then builds one LM stack per
//! name. One definition keeps the flags, their help and their precedence
//! identical across commands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::adapter::AdapterKind;
use crate::lm::resolve::{self, FileLms, LmSet, ResolvedLm};
use crate::lm::usage::{Budgets, LmUsage};
use crate::lm::{BuiltLm, LmError, LmOptions};
use crate::program::{LmConfig, Program};
use crate::run::{LmHandle, RunContext};
use crate::settings::Target;
use crate::trust::credentials::CredentialPolicy;

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

    /// Set one key of a named LM (or of `default`), e.g.
    /// `--lm strong.model=gpt-4o` or `--lm small.base_urls=http://h/v1`.
    /// Repeatable; beats the environment and the files.
    #[arg(long = "lm", value_name = "NAME.KEY=VALUE")]
    pub lm_overrides: Vec<String>,

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
    /// free); the run can be resumed from the cache later. Counts every LM.
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

/// Every LM of a run, built: the resolved set and one stack per name.
pub struct BuiltLms {
    pub set: LmSet,
    pub default: BuiltLm,
    pub named: BTreeMap<String, BuiltLm>,
}

impl LmArgs {
    /// The default LM's command-line layer.
    fn flag_layer(&self) -> LmConfig {
        LmConfig {
            provider: self.provider.clone(),
            model: self.model.clone(),
            base_urls: self.base_urls.clone(),
            api_key_env: self.api_key_env.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            adapter: self.adapter.map(|a| a.as_str().to_string()),
            concurrency: self.concurrency,
            threads: self.threads,
            choice: self.choice,
            timeout_secs: self.timeout,
            max_retries: self.max_retries,
            rpm: self.rpm,
            tpm: self.tpm,
            ..Default::default()
        }
    }

    /// Resolve the LM set over `files` (see `lm::resolve` for the order).
    pub fn resolve_files(&self, files: Vec<FileLms<'_>>) -> Result<LmSet, CliError> {
        if let Some(t) = self.timeout {
            if !(t.is_finite() && t > 0.0) {
                return Err(CliError::Input(format!(
                    "--timeout must be a positive number of seconds, got {t}"
                )));
            }
        }
        let named = resolve::parse_named_flags(&self.lm_overrides).map_err(CliError::Input)?;
        let flags = self.flag_layer();
        let env = |k: &str| std::env::var(k).ok();
        resolve::resolve(&resolve::Inputs {
            files,
            flags: &flags,
            named_flags: &named,
            env: &env,
        })
        .map_err(|e| CliError::Input(format!("lm: {e}")))
    }

    /// Resolve the LM set of `target` (its program or artifact, and the
    /// project file).
    pub fn resolve(&self, target: &Target) -> Result<LmSet, CliError> {
        self.resolve_files(target.lm_files())
    }

    /// The run-wide options: cache, budgets and the runner's grants.
    pub fn options(&self) -> Result<LmOptions, CliError> {
        Ok(LmOptions {
            no_cache: self.no_cache,
            offline: self.offline,
            cache_dir: self.cache_dir.clone(),
            budgets: Budgets {
                max_lm_calls: self.max_lm_calls,
                max_tokens: self.max_tokens_budget,
                max_cost: self.max_cost,
            },
            credentials: Some(CredentialPolicy {
                trust: self.trust.resolve()?,
            }),
            ..Default::default()
        })
    }

    /// Resolve and build every LM of `target`. Configuration mistakes are
    /// exit-2 input errors; cache warnings go to stderr.
    pub fn build(&self, target: &Target) -> anyhow::Result<BuiltLms> {
        let set = self.resolve(target)?;
        self.build_set(set)
    }

    /// Build every LM of a resolved set (they share the cache and the
    /// budget's spend).
    pub fn build_set(&self, set: LmSet) -> anyhow::Result<BuiltLms> {
        let opts = self.options()?;
        check_cost_budget(&set, &opts)?;
        let mut backends = BTreeMap::new();
        let default = build_one(&set.default, &opts, &mut backends)?;
        let mut named = BTreeMap::new();
        for (n, r) in &set.named {
            named.insert(n.clone(), build_one(r, &opts, &mut backends)?);
        }
        Ok(BuiltLms {
            set,
            default,
            named,
        })
    }
}

/// Build one LM, reusing the backend of an earlier LM of the run that
/// differs only in sampling settings or prices (`lm::build::backend_key`).
fn build_one(
    r: &ResolvedLm,
    opts: &LmOptions,
    backends: &mut BTreeMap<String, crate::lm::build::Backend>,
) -> anyhow::Result<BuiltLm> {
    let label = |msg: String| {
        if r.name == resolve::DEFAULT_LM {
            msg
        } else {
            format!("LM `{}`: {msg}", r.name)
        }
    };
    let fail = |e: LmError| match e {
        LmError::Fatal(msg) => anyhow::Error::new(CliError::Input(label(msg))),
        other => anyhow::Error::new(other),
    };
    let key = crate::lm::build::backend_key(r);
    let backend = match backends.get(&key) {
        Some(b) => b.clone(),
        None => {
            let b = crate::lm::build::build_backend(r, opts).map_err(fail)?;
            backends.insert(key, b.clone());
            b
        }
    };
    let built = crate::lm::build::wrap(r, opts, backend).map_err(fail)?;
    if let Some(store) = &built.cache {
        store.set_warning_callback(|msg| eprintln!("warning: {msg}"));
    }
    Ok(built)
}

impl BuiltLms {
    fn handle(r: &ResolvedLm, b: &BuiltLm) -> LmHandle {
        LmHandle {
            lm: b.lm.clone(),
            adapter: r.adapter,
            temperature: r.temperature(),
            max_tokens: r.max_tokens(),
            choice: r.config.choice.unwrap_or_default(),
        }
    }

    /// The run context for `program`: its tools opened, the default LM
    /// with its sampling settings, and every named LM for nodes, metrics
    /// and optimizer roles that name one.
    pub fn context(&self, program: &Program) -> Result<RunContext, CliError> {
        let ctx = crate::settings::run_context(program, self.default.lm.clone())
            .map_err(|e| CliError::Input(e.to_string()))?;
        Ok(self.attach(ctx))
    }

    /// `ctx` with the default LM's settings and the named LMs attached.
    pub fn attach(&self, ctx: RunContext) -> RunContext {
        let d = Self::handle(&self.set.default, &self.default);
        let mut lms = BTreeMap::new();
        lms.insert(resolve::DEFAULT_LM.to_string(), d.clone());
        for (n, b) in &self.named {
            lms.insert(n.clone(), Self::handle(&self.set.named[n], b));
        }
        RunContext {
            lm: d.lm,
            adapter: d.adapter,
            temperature: d.temperature,
            max_tokens: d.max_tokens,
            choice: d.choice,
            lms: Arc::new(lms),
            ..ctx
        }
    }

    /// Usage per LM so far, the default first (named LMs only when some
    /// call reached them, so a one-LM run reports as before).
    pub fn usage(&self) -> Vec<LmUsage> {
        let one = |r: &ResolvedLm, b: &BuiltLm| LmUsage {
            name: r.name.clone(),
            model: b.lm.model(),
            usage: b.meter.snapshot(),
        };
        std::iter::once(one(&self.set.default, &self.default))
            .chain(self.named.iter().map(|(n, b)| one(&self.set.named[n], b)))
            .collect()
    }

    /// Check the LM names the metric and the compile roles use.
    pub fn check_names<'a>(
        &self,
        refs: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Result<(), CliError> {
        for (name, used_by) in refs {
            self.set
                .check_name(name, &used_by)
                .map_err(CliError::Input)?;
        }
        Ok(())
    }
}

/// The per-LM lines of a summary (stderr), when the run used named LMs.
pub fn print_usage(usage: &[LmUsage]) {
    if usage.len() < 2 {
        return;
    }
    for u in usage {
        let s = &u.usage;
        let cost = if s.cost > 0.0 {
            format!(", ${:.4}", s.cost)
        } else {
            String::new()
        };
        eprintln!(
            "LM {} ({}): {} calls (cache hits {}), {} prompt + {} completion tokens{cost}",
            u.name, u.model, s.calls, s.cache_hits, s.prompt_tokens, s.completion_tokens
        );
    }
}

/// `--max-cost` can only stop a run whose calls are priced: without
/// prices every call costs $0 and the guard would silently never fire, so
/// asking for it without them is a usage error that names the keys.
fn check_cost_budget(set: &LmSet, opts: &LmOptions) -> Result<(), CliError> {
    let Some(max) = opts.budgets.max_cost else {
        return Ok(());
    };
    let priced = set.all().any(|r| {
        r.config.price_prompt_per_mtok.is_some() || r.config.price_completion_per_mtok.is_some()
    });
    if priced {
        return Ok(());
    }
    Err(CliError::Input(format!(
        "--max-cost {max} needs prices, and the LM config has none, so no call would ever count against the budget\n  = help: set `price_prompt_per_mtok` and `price_completion_per_mtok` (USD per million tokens) under `lm:` in the program or lmc.yaml, or use --max-lm-calls / --max-tokens-budget"
    )))
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
            "--lm",
            "strong.model=big",
        ]);
        let program = LmConfig {
            model: Some("prog-model".into()),
            temperature: Some(0.5),
            max_tokens: Some(99),
            ..Default::default()
        };
        let lms = BTreeMap::from([("strong".to_string(), LmConfig::default())]);
        let files = vec![FileLms {
            lm: Some(&program),
            lms: &lms,
            map: crate::trust::SourceMap::new("p.yaml", ""),
        }];
        let set = t.lm.resolve_files(files).unwrap();
        let cfg = &set.default.config;
        assert_eq!(cfg.model.as_deref(), Some("cli-model"));
        assert_eq!(cfg.base_urls.len(), 2);
        assert_eq!(cfg.temperature, Some(0.5));
        assert_eq!(set.default.adapter, AdapterKind::Json);
        assert_eq!(set.named["strong"].config.model.as_deref(), Some("big"));
        assert_eq!(t.lm.options().unwrap().budgets.max_lm_calls, Some(5));
        assert!(T::try_parse_from(["x", "--adapter", "xml"]).is_err());
        assert!(T::try_parse_from(["x", "--offline", "--no-cache"]).is_err());
    }
}
