//! Optimizers: strategies that propose candidate overlays (per-predictor
//! demos, later instructions) for an immutable program, score them through
//! one shared [`engine::Engine`] and keep the best.
//!
//! The engine owns everything strategies have in common (LM context and
//! budget, concurrency, the candidate-score cache, progress, usage tallies
//! and the search history), so each strategy file is only its search logic:
//! `labeled` (k labeled demos), `bootstrap` (demos from successful teacher
//! traces, keyed by predictor path), `random_search` (DSPy's candidate
//! scheme over bootstrap runs) and `knn` (demos chosen per input by
//! similarity). [`compile`] dispatches by name and returns the winner with
//! the figures the artifact's lineage records.

use serde_json::Value;
use std::collections::BTreeMap;

use crate::artifact::CandidateRecord;
use crate::overlay::Overlay;

pub mod bootstrap;
pub mod engine;
pub mod instruct;
pub mod knn;
pub mod labeled;
pub mod random_search;

pub use engine::{CompileReporter, Engine, NoopCompileReporter, Scored};

/// The optimizers `lmc compile --optimizer` accepts.
pub const OPTIMIZERS: &[&str] = &[
    "labeled_few_shot",
    "bootstrap_few_shot",
    "bootstrap_random_search",
    "knn_few_shot",
    "copro",
    "mipro",
    "gepa",
];

#[derive(Debug, thiserror::Error)]
pub enum OptimizeError {
    #[error("unknown optimizer `{name}`{hint}; available: {}", OPTIMIZERS.join(", "))]
    Unknown { name: String, hint: String },
    #[error("optimizer `{optimizer}`: unknown setting `{key}`; known settings: {known}")]
    UnknownSetting {
        optimizer: String,
        key: String,
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
}

/// Optimizer settings from `--opt key=value`, values parsed as JSON when
/// they parse (numbers, booleans, null) and kept as strings otherwise.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub optimizer: String,
    pub values: BTreeMap<String, Value>,
}

impl Settings {
    pub fn new(optimizer: &str) -> Self {
        Settings {
            optimizer: optimizer.to_string(),
            values: BTreeMap::new(),
        }
    }

    /// Parse `key=value` pairs.
    pub fn parse(optimizer: &str, pairs: &[String]) -> Result<Self, OptimizeError> {
        let mut s = Settings::new(optimizer);
        for p in pairs {
            let Some((k, v)) = p.split_once('=') else {
                return Err(OptimizeError::BadSetting {
                    optimizer: optimizer.into(),
                    key: p.clone(),
                    message: "expected key=value".into(),
                });
            };
            let v = v.trim();
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
            s.values.insert(k.trim().replace('-', "_"), value);
        }
        Ok(s)
    }

    /// Refuse keys the optimizer does not know (typos must not be ignored).
    pub fn check_known(&self, known: &[&str]) -> Result<(), OptimizeError> {
        for k in self.values.keys() {
            if !known.contains(&k.as_str()) {
                return Err(OptimizeError::UnknownSetting {
                    optimizer: self.optimizer.clone(),
                    key: k.clone(),
                    known: known.join(", "),
                });
            }
        }
        Ok(())
    }

    fn bad(&self, key: &str, message: &str) -> OptimizeError {
        OptimizeError::BadSetting {
            optimizer: self.optimizer.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn usize(&self, key: &str, default: usize) -> Result<usize, OptimizeError> {
        match self.values.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| self.bad(key, "expected a non-negative integer")),
        }
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, OptimizeError> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(key, "expected a number")),
        }
    }

    pub fn string(&self, key: &str, default: &str) -> Result<String, OptimizeError> {
        match self.values.get(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(self.bad(key, "expected a string")),
        }
    }
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
    /// Effective settings (defaults filled in) for the lineage.
    pub settings: BTreeMap<String, Value>,
    pub history: Vec<CandidateRecord>,
}

/// Run optimizer `settings.optimizer` on the engine's data.
pub async fn compile(engine: &Engine<'_>, settings: &Settings) -> Result<Outcome, OptimizeError> {
    if engine.program.predictors().is_empty() {
        return Err(OptimizeError::NoPredictors);
    }
    match settings.optimizer.as_str() {
        "labeled_few_shot" => labeled::compile(engine, settings).await,
        "bootstrap_few_shot" => bootstrap::compile(engine, settings).await,
        "bootstrap_random_search" => random_search::compile(engine, settings).await,
        "knn_few_shot" => knn_compile(engine, settings).await,
        "copro" | "mipro" | "gepa" => instruct::engine::compile(engine, settings, None).await,
        other => Err(OptimizeError::Unknown {
            name: other.to_string(),
            hint: did_you_mean(other),
        }),
    }
}

fn did_you_mean(name: &str) -> String {
    let best = OPTIMIZERS
        .iter()
        .map(|o| (strsim::jaro_winkler(o, name), *o))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((s, o)) if s > 0.8 => format!(" (did you mean `{o}`?)"),
        _ => String::new(),
    }
}

/// kNN few-shot: every predictor gets the labeled trainset as a pool and
/// chooses `k` demos per input at run time (see [`knn::select`]).
async fn knn_compile(engine: &Engine<'_>, settings: &Settings) -> Result<Outcome, OptimizeError> {
    settings.check_known(&["k"])?;
    let k = settings.usize("k", 3)?;
    if engine.trainset.is_empty() {
        return Err(OptimizeError::EmptyTrainset("knn_few_shot".into()));
    }
    let input_fields: Vec<String> = engine
        .program
        .inputs
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let mut overlay = Overlay::default();
    for p in engine.program.predictors() {
        let pool: Vec<_> = engine
            .trainset
            .iter()
            .filter_map(|ex| labeled::demo_for(&p.signature, ex))
            .collect();
        // Compare the predictor's own inputs when they are program inputs;
        // otherwise (later stages) compare the program inputs the pool has.
        let own: Vec<String> = p
            .signature
            .inputs
            .iter()
            .map(|f| f.name.clone())
            .filter(|n| input_fields.contains(n))
            .collect();
        let fields = if own.is_empty() {
            input_fields.clone()
        } else {
            own
        };
        let st = overlay.predictors.entry(p.path.clone()).or_default();
        st.knn = Some(crate::overlay::KnnDemos {
            k,
            input_fields: fields,
            pool,
        });
    }
    let mut settings_out = BTreeMap::new();
    settings_out.insert("k".into(), Value::from(k));
    settings_out.insert("similarity".into(), Value::from("bm25"));
    let best_score = engine.score_candidate(&overlay, "knn", None).await;
    Ok(Outcome {
        best: overlay,
        best_score,
        baseline_score: None,
        train_score: None,
        settings: settings_out,
        history: engine.history(),
    })
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
    use crate::program::NodeKind;
    let mut calls = 0u64;
    let mut exact = true;
    for n in &program.nodes {
        match &n.kind {
            NodeKind::Predict { .. } | NodeKind::ChainOfThought { .. } => calls += 1,
            NodeKind::React { max_iters, .. } => {
                calls += *max_iters as u64 + 1;
                exact = false;
            }
            NodeKind::Refine { n, .. } => {
                calls += (*n).max(1) as u64;
                exact = false;
            }
            NodeKind::Map { .. } => {
                calls += 1;
                exact = false;
            }
            NodeKind::MultiChainComparison { n, .. } => calls += (*n).max(1) as u64 + 1,
            NodeKind::Retrieve { .. } | NodeKind::Tool { .. } => {}
        }
    }
    (calls, exact)
}

/// The projected LM calls of running `settings.optimizer` with `n_train`
/// training and `n_val` validation examples, on a cold cache.
pub fn project(
    program: &crate::program::Program,
    settings: &Settings,
    n_train: usize,
    n_val: usize,
) -> Result<Projection, OptimizeError> {
    let (c, mut exact) = calls_per_run(program);
    let (t, v) = (n_train as u64, n_val as u64);
    let mut phases: Vec<(String, u64)> = Vec::new();
    // LM calls that are not program runs (instruction proposals).
    let mut extra_calls = 0u64;
    match settings.optimizer.as_str() {
        "labeled_few_shot" => {
            settings.check_known(&["k"])?;
            phases.push(("evaluating".into(), v));
        }
        "knn_few_shot" => {
            settings.check_known(&["k"])?;
            phases.push(("evaluating".into(), v));
        }
        "bootstrap_few_shot" => {
            settings.check_known(bootstrap::Params::KEYS)?;
            let p = bootstrap::Params::from_settings(settings)?;
            // Every example runs in round 1 unless enough demos are found
            // first; later rounds rerun only the failures.
            exact &= p.max_bootstrapped_demos >= n_train && p.max_rounds == 1;
            phases.push(("bootstrapping".into(), t * p.max_rounds as u64));
            phases.push(("evaluating".into(), v));
        }
        "bootstrap_random_search" => {
            let mut keys = bootstrap::Params::KEYS.to_vec();
            keys.extend(["num_candidate_programs", "min_num_samples", "stop_at_score"]);
            settings.check_known(&keys)?;
            let p = bootstrap::Params::from_settings(settings)?;
            let n = settings.usize("num_candidate_programs", 16)? as u64;
            exact = false;
            phases.push(("bootstrapping".into(), t * p.max_rounds as u64 * (n + 1)));
            phases.push(("evaluating".into(), v * (n + 3)));
        }
        "copro" | "mipro" | "gepa" => {
            let (p, proposals) = instruct::engine::project(program, settings, n_train, n_val)?;
            exact = false;
            phases.extend(p);
            extra_calls = proposals;
        }
        other => {
            return Err(OptimizeError::Unknown {
                name: other.to_string(),
                hint: did_you_mean(other),
            })
        }
    }
    let runs: u64 = phases.iter().map(|(_, r)| r).sum();
    Ok(Projection {
        calls_per_run: c,
        phases,
        lm_calls: runs * c + extra_calls,
        exact,
    })
}
