//! Optimizers: strategies that propose candidate overlays (per-predictor
//! demos and instructions) for an immutable program, score them through one
//! shared [`engine::Engine`] and keep the best.
//!
//! An optimizer is one file: a settings type declared with
//! [`crate::optimizer_settings!`] (serde, defaults, ranges and help in one
//! place), a cost projection for `--dry-run`, and a search, tied together by
//! the [`Optimizer`] trait; plus one line in [`REGISTRY`]. The registry
//! drives dispatch, `--help`, `lmc compile --list`, the did-you-mean for a
//! mistyped name, the dry run and the lineage's recorded settings. The
//! engine owns everything strategies share (LM contexts, budget and stop
//! checks, concurrency, the candidate-score cache, progress, usage tallies
//! and the search history), so a strategy file is only its search logic.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::artifact::CandidateRecord;
use crate::overlay::Overlay;
use crate::program::Program;

pub mod bootstrap;
pub mod checkpoint;
pub mod compose;
pub mod engine;
pub mod instruct;
pub mod knn;
pub mod labeled;
pub mod objective;
pub mod random_search;
pub mod settings;
pub mod simba;
#[cfg(test)]
mod test_only;

pub use compose::Searches;
pub use engine::{CompileReporter, Engine, NoopCompileReporter, Scored};
pub use objective::Objective;
pub use settings::{SettingDoc, SettingsType};

/// Every optimizer `lmc compile --optimizer` accepts, in `--list` order.
/// Adding an optimizer is one file and one line here.
pub static REGISTRY: &[&dyn Registered] = &[
    &labeled::LabeledFewShot,
    &bootstrap::BootstrapFewShot,
    &random_search::BootstrapRandomSearch,
    &knn::KnnFewShot,
    &instruct::copro::Copro,
    &instruct::mipro::Mipro,
    &instruct::gepa::Gepa,
    &simba::Simba,
    #[cfg(test)]
    &test_only::FirstExample,
];

#[derive(Debug, thiserror::Error)]
pub enum OptimizeError {
    #[error("unknown optimizer `{name}`{hint}; available: {}", names().join(", "))]
    Unknown { name: String, hint: String },
    #[error("optimizer `{optimizer}`: unknown setting `{key}`{hint}; known settings: {known}")]
    UnknownSetting {
        optimizer: String,
        key: String,
        hint: String,
        known: String,
    },
    #[error("optimizer `{optimizer}`: setting `{key}`: {message}")]
    BadSetting {
        optimizer: String,
        key: String,
        message: String,
    },
    #[error("the trainset is empty: {0} needs training examples")]
    EmptyTrainset(String),
    #[error("the program has no predictors (no LM-calling nodes): nothing to optimize")]
    NoPredictors,
    #[error("LM budget exhausted before any candidate could be scored: {0}")]
    Budget(String),
    #[error("{optimizer}: {message}")]
    Search { optimizer: String, message: String },
}

/// The registered optimizer names.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|o| o.name()).collect()
}

/// What a projection needs to know about the run.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub program: &'a Program,
    pub n_train: usize,
    pub n_val: usize,
}

/// An optimizer's own projection: program runs per phase and LM calls that
/// are not program runs (instruction proposals).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimate {
    pub phases: Vec<(String, u64)>,
    pub extra_calls: u64,
    /// False when the optimizer may stop early (the figure is an upper bound).
    pub exact: bool,
}

impl Estimate {
    /// One candidate scored on the valset and no other call: the exact
    /// projection of a search that only scores what it made.
    pub fn valset_only(shape: &Shape<'_>) -> Estimate {
        Estimate {
            phases: vec![("evaluating".into(), shape.n_val as u64)],
            extra_calls: 0,
            exact: true,
        }
    }
}

/// One optimizer: settings, projection and search (see the module docs).
#[async_trait::async_trait]
pub trait Optimizer: Send + Sync + 'static {
    type Settings: SettingsType;
    /// The `--optimizer` name.
    const NAME: &'static str;
    /// The DSPy class it follows.
    const DSPY: &'static str;
    /// One line for `--list`.
    const ABOUT: &'static str;
    /// Whether it asks a prompt LM for text (`--prompt-lm` applies).
    const PROMPT_LM: bool = false;
    /// What its candidates own; compiling from an artifact keeps the rest.
    const SEARCHES: Searches = Searches::BOTH;

    fn project(&self, settings: &Self::Settings, shape: &Shape<'_>) -> Estimate;

    async fn compile(
        &self,
        settings: &Self::Settings,
        engine: &Engine<'_>,
    ) -> Result<Outcome, OptimizeError>;
}

/// The object-safe face of an [`Optimizer`], what the registry holds.
pub trait Registered: Send + Sync {
    fn name(&self) -> &'static str;
    fn dspy(&self) -> &'static str;
    fn about(&self) -> &'static str;
    fn uses_prompt_lm(&self) -> bool;
    fn searches(&self) -> Searches;
    fn settings_docs(&self) -> Vec<SettingDoc>;
    /// Read `raw` into the typed settings (the only place they are parsed).
    fn configure(
        &'static self,
        raw: &Map<String, Value>,
    ) -> Result<Box<dyn Configured>, OptimizeError>;
}

/// An optimizer with its settings parsed: ready to project or run.
#[async_trait::async_trait]
pub trait Configured: Send + Sync {
    fn name(&self) -> &'static str;
    fn uses_prompt_lm(&self) -> bool;
    fn searches(&self) -> Searches;
    /// The effective settings, defaults included, for the lineage.
    fn settings(&self) -> BTreeMap<String, Value>;
    fn estimate(&self, shape: &Shape<'_>) -> Estimate;
    async fn run(&self, engine: &Engine<'_>) -> Result<Outcome, OptimizeError>;
}

impl<O: Optimizer> Registered for O {
    fn name(&self) -> &'static str {
        O::NAME
    }
    fn dspy(&self) -> &'static str {
        O::DSPY
    }
    fn about(&self) -> &'static str {
        O::ABOUT
    }
    fn uses_prompt_lm(&self) -> bool {
        O::PROMPT_LM
    }
    fn searches(&self) -> Searches {
        O::SEARCHES
    }
    fn settings_docs(&self) -> Vec<SettingDoc> {
        O::Settings::docs()
    }
    fn configure(
        &'static self,
        raw: &Map<String, Value>,
    ) -> Result<Box<dyn Configured>, OptimizeError> {
        let settings = settings::from_raw::<O::Settings>(O::NAME, raw)?;
        Ok(Box::new(With::<O> {
            optimizer: self,
            settings,
        }))
    }
}

struct With<O: Optimizer> {
    optimizer: &'static O,
    settings: O::Settings,
}

#[async_trait::async_trait]
impl<O: Optimizer> Configured for With<O> {
    fn name(&self) -> &'static str {
        O::NAME
    }
    fn uses_prompt_lm(&self) -> bool {
        O::PROMPT_LM
    }
    fn searches(&self) -> Searches {
        O::SEARCHES
    }
    fn settings(&self) -> BTreeMap<String, Value> {
        settings::to_map(&self.settings)
    }
    fn estimate(&self, shape: &Shape<'_>) -> Estimate {
        self.optimizer.project(&self.settings, shape)
    }
    async fn run(&self, engine: &Engine<'_>) -> Result<Outcome, OptimizeError> {
        self.optimizer.compile(&self.settings, engine).await
    }
}

/// The registered optimizer called `name` (with a did-you-mean when none is).
pub fn lookup(name: &str) -> Result<&'static dyn Registered, OptimizeError> {
    REGISTRY
        .iter()
        .copied()
        .find(|o| o.name() == name)
        .ok_or_else(|| OptimizeError::Unknown {
            name: name.to_string(),
            hint: settings::did_you_mean(name, names()),
        })
}

/// Look `name` up and read its settings from `--opt` pairs.
pub fn configure(name: &str, pairs: &[String]) -> Result<Box<dyn Configured>, OptimizeError> {
    let o = lookup(name)?;
    o.configure(&settings::parse_pairs(name, pairs)?)
}

/// What an optimizer returns.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub best: Overlay,
    /// Valset score of `best` when the strategy measured it.
    pub best_score: Option<Scored>,
    /// Valset score of the program as written, when measured.
    pub baseline_score: Option<f64>,
    /// Mean metric of the teacher on the train examples it ran (bootstrap).
    pub train_score: Option<f64>,
    /// Figures the search derived from its settings and data (MIPRO's
    /// trial plan, the demos bootstrapped), for the lineage's `plan`.
    pub plan: BTreeMap<String, Value>,
    pub history: Vec<CandidateRecord>,
}

/// Run a configured optimizer on the engine's data: the one entry point,
/// so every optimizer gets the same checks.
pub async fn compile(
    engine: &Engine<'_>,
    optimizer: &dyn Configured,
) -> Result<Outcome, OptimizeError> {
    if engine.program.predictors().is_empty() {
        return Err(OptimizeError::NoPredictors);
    }
    if engine.trainset.is_empty() {
        return Err(OptimizeError::EmptyTrainset(optimizer.name().to_string()));
    }
    let mut outcome = optimizer.run(engine).await?;
    // `--objective` weighs every candidate scored on the whole valset.
    objective::choose(engine, &mut outcome);
    // Written as it was scored: over the base overlay, if any.
    outcome.best = engine.layered(&outcome.best);
    Ok(outcome)
}

/// What `--dry-run` prints: the LM calls a compile would make at most.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Projection {
    /// LM calls per program run (upper bound when `exact` is false).
    pub calls_per_run: u64,
    /// Program runs per phase (`bootstrapping`, `evaluating`), upper bounds.
    pub phases: Vec<(String, u64)>,
    pub lm_calls: u64,
    /// False when the program has loops (react, refine, map) or the
    /// optimizer stops early (bootstrapping stops once it has its demos), so
    /// the figure is an upper bound.
    pub exact: bool,
}

/// LM calls one run of `program` makes: exact for predict/chain-of-thought
/// graphs, an upper bound for loops (react: max_iters + extract; refine:
/// n attempts; map: counted once per item, items unknown, so counted once;
/// multi-chain comparison: n attempts and one comparison, which is skipped
/// only when every attempt failed).
pub fn calls_per_run(program: &crate::program::Program) -> (u64, bool) {
    let mut calls = 0u64;
    let mut exact = true;
    for n in &program.nodes {
        let (c, e) = n.kind.calls_per_run();
        calls += c;
        exact &= e;
    }
    (calls, exact)
}

/// The projected LM calls of `optimizer` with `n_train` training and
/// `n_val` validation examples, on a cold cache.
pub fn project(optimizer: &dyn Configured, shape: &Shape<'_>) -> Projection {
    let (c, exact) = calls_per_run(shape.program);
    let e = optimizer.estimate(shape);
    let runs: u64 = e.phases.iter().map(|(_, r)| r).sum();
    Projection {
        calls_per_run: c,
        lm_calls: runs * c + e.extra_calls,
        phases: e.phases,
        exact: exact && e.exact,
    }
}
