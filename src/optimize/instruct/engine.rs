//! Binds the instruction searches to the compile engine: an [`Evaluator`]
//! over the engine's trainset/valset (every run goes through the engine, so
//! the response cache, budget, usage tallies and progress are shared with
//! the few-shot optimizers), and the `copro` / `mipro` / `gepa` entry points
//! that read `--opt` settings and turn a [`SearchResult`] into an optimizer
//! [`Outcome`] for the artifact.

use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::artifact::CandidateRecord;
use crate::optimize::{Engine, OptimizeError, Outcome, Settings};
use crate::overlay::Overlay;
use crate::run::RunContext;

use super::copro::{copro, CoproConfig};
use super::gepa::{gepa, GepaConfig};
use super::mipro::{mipro, Auto, MiproConfig};
use super::propose::Proposer;
use super::{Evaluator, ExampleScore, SearchError, SearchResult, Split};

/// Scores overlays through the compile engine.
pub struct EngineEvaluator<'e, 'a> {
    pub engine: &'e Engine<'a>,
}

#[async_trait::async_trait]
impl Evaluator for EngineEvaluator<'_, '_> {
    async fn evaluate(
        &self,
        overlay: &Overlay,
        split: Split,
        indices: &[usize],
    ) -> Result<Vec<ExampleScore>, SearchError> {
        let set = match split {
            Split::Train => self.engine.trainset,
            Split::Val => self.engine.valset,
        };
        let examples: Vec<_> = indices
            .iter()
            .filter_map(|&i| set.get(i).cloned())
            .collect();
        let results = self
            .engine
            .run_examples(
                &self.engine.ctx,
                overlay,
                &examples,
                self.engine.concurrency,
            )
            .await;
        // A budget stop returns fewer results: pad with zeros so callers see
        // one score per index (they stop proposing once `exhausted()`).
        let mut out: Vec<ExampleScore> = results
            .into_iter()
            .map(|r| ExampleScore {
                score: r.score,
                feedback: r.feedback,
                inputs: r.inputs,
                expected: r.expected,
                outputs: r.outputs,
                error: r.error,
                trace: r.trace,
            })
            .collect();
        out.resize_with(examples.len(), ExampleScore::default);
        Ok(out)
    }

    fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.engine.trainset.len(),
            Split::Val => self.engine.valset.len(),
        }
    }

    fn exhausted(&self) -> bool {
        self.engine.exhausted()
    }
}

const COPRO_KEYS: &[&str] = &["breadth", "depth", "init_temperature"];
const MIPRO_KEYS: &[&str] = &[
    "auto",
    "num_candidates",
    "num_trials",
    "minibatch_size",
    "minibatch_full_eval_steps",
    "init_temperature",
    "max_bootstrapped_demos",
    "max_labeled_demos",
];
const GEPA_KEYS: &[&str] = &[
    "auto",
    "max_metric_calls",
    "reflection_minibatch_size",
    "use_merge",
    "max_merge_invocations",
    "temperature",
];

/// MIPROv2's settings from `--opt` (unknown keys refused).
fn mipro_config(settings: &Settings, seed: u64) -> Result<MiproConfig, OptimizeError> {
    settings.check_known(MIPRO_KEYS)?;
    Ok(MiproConfig {
        auto: auto(settings, Some(Auto::Light))?,
        num_candidates: settings.usize("num_candidates", 6)?,
        num_trials: settings
            .values
            .get("num_trials")
            .and_then(Value::as_u64)
            .map(|n| n as usize),
        minibatch_size: settings.usize("minibatch_size", 35)?,
        minibatch_full_eval_steps: settings.usize("minibatch_full_eval_steps", 5)?,
        seed,
    })
}

/// The optimizer names this module provides.
pub const INSTRUCTION_OPTIMIZERS: &[&str] = &["copro", "mipro", "gepa"];

fn bad(settings: &Settings, key: &str, message: &str) -> OptimizeError {
    OptimizeError::BadSetting {
        optimizer: settings.optimizer.clone(),
        key: key.into(),
        message: message.into(),
    }
}

fn auto(settings: &Settings, default: Option<Auto>) -> Result<Option<Auto>, OptimizeError> {
    match settings.values.get("auto") {
        None => Ok(default),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "none" || s == "off" => Ok(None),
        Some(Value::String(s)) => Auto::parse(s)
            .map(Some)
            .ok_or_else(|| bad(settings, "auto", "expected light, medium, heavy or none")),
        Some(_) => Err(bad(
            settings,
            "auto",
            "expected light, medium, heavy or none",
        )),
    }
}

fn bool_setting(settings: &Settings, key: &str, default: bool) -> Result<bool, OptimizeError> {
    match settings.values.get(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(settings, key, "expected true or false")),
    }
}

/// Run `copro`, `mipro` or `gepa`. `prompt` runs the proposer (`None`: the
/// task LM, as DSPy defaults `prompt_model` to the task model).
pub async fn compile(
    engine: &Engine<'_>,
    settings: &Settings,
    prompt: Option<RunContext>,
) -> Result<Outcome, OptimizeError> {
    let prompt = prompt.unwrap_or_else(|| engine.ctx.clone());
    if engine.trainset.is_empty() {
        return Err(OptimizeError::EmptyTrainset(settings.optimizer.clone()));
    }
    let eval = EngineEvaluator { engine };
    let start = Overlay::default();
    let mut effective = BTreeMap::new();
    let search: Result<SearchResult, SearchError> = match settings.optimizer.as_str() {
        "copro" => {
            settings.check_known(COPRO_KEYS)?;
            let cfg = CoproConfig {
                breadth: settings.usize("breadth", 10)?,
                depth: settings.usize("depth", 3)?,
            };
            let t = settings.opt_f64("init_temperature")?.unwrap_or(1.4);
            effective.insert("breadth".into(), json!(cfg.breadth));
            effective.insert("depth".into(), json!(cfg.depth));
            effective.insert("init_temperature".into(), json!(t));
            let proposer = Proposer::new(RunContext {
                temperature: t as f32,
                ..prompt
            });
            copro(engine.program, &start, &eval, &proposer, &cfg).await
        }
        "mipro" => {
            let cfg = mipro_config(settings, engine.seed)?;
            let t = settings.opt_f64("init_temperature")?.unwrap_or(0.5);
            let max_b = settings.usize("max_bootstrapped_demos", 4)?;
            let max_l = settings.usize("max_labeled_demos", 4)?;
            let n_sets = cfg
                .auto
                .map(|a| a.settings().0)
                .unwrap_or(cfg.num_candidates);
            let demo_sets = if max_b + max_l == 0 {
                Vec::new()
            } else {
                demo_sets(engine, n_sets, max_b, max_l).await
            };
            let demo_sets = demo_sets.as_slice();
            effective.insert("max_bootstrapped_demos".into(), json!(max_b));
            effective.insert("max_labeled_demos".into(), json!(max_l));
            let pl = super::mipro::plan(engine.program, &cfg, engine.valset.len(), demo_sets.len());
            effective.insert(
                "auto".into(),
                json!(cfg.auto.map(|a| format!("{a:?}").to_lowercase())),
            );
            effective.insert(
                "instruction_candidates".into(),
                json!(pl.instruct_candidates),
            );
            effective.insert("demo_set_candidates".into(), json!(demo_sets.len()));
            effective.insert("num_trials".into(), json!(pl.trials));
            effective.insert("minibatch".into(), json!(pl.minibatch));
            effective.insert("minibatch_size".into(), json!(cfg.minibatch_size));
            effective.insert("val_size".into(), json!(pl.val_indices.len()));
            let view: Vec<String> = engine
                .trainset
                .iter()
                .take(10)
                .map(|ex| {
                    format!(
                        "inputs: {} -> expected: {}",
                        Value::Object(ex.inputs.clone()),
                        Value::Object(ex.expected.clone())
                    )
                })
                .collect();
            let proposer = Proposer::new(RunContext {
                temperature: t as f32,
                ..prompt
            });
            mipro(
                engine.program,
                &start,
                demo_sets,
                &view,
                &eval,
                &proposer,
                &cfg,
            )
            .await
        }
        "gepa" => {
            settings.check_known(GEPA_KEYS)?;
            let cfg = GepaConfig {
                auto: auto(settings, Some(Auto::Light))?,
                max_metric_calls: settings
                    .values
                    .get("max_metric_calls")
                    .and_then(Value::as_u64)
                    .map(|n| n as usize),
                reflection_minibatch_size: settings.usize("reflection_minibatch_size", 3)?,
                use_merge: bool_setting(settings, "use_merge", true)?,
                max_merge_invocations: settings.usize("max_merge_invocations", 5)?,
                perfect_score: 1.0,
                seed: engine.seed,
            };
            let t = settings.opt_f64("temperature")?.unwrap_or(1.0);
            let budget = cfg.max_metric_calls.unwrap_or_else(|| {
                super::gepa::auto_budget(
                    engine.program.predictors().len(),
                    cfg.auto.unwrap_or(Auto::Light).settings().0,
                    engine.valset.len(),
                )
            });
            effective.insert("max_metric_calls".into(), json!(budget));
            effective.insert(
                "reflection_minibatch_size".into(),
                json!(cfg.reflection_minibatch_size),
            );
            effective.insert("use_merge".into(), json!(cfg.use_merge));
            effective.insert("temperature".into(), json!(t));
            let proposer = Proposer::new(RunContext {
                temperature: t as f32,
                ..prompt
            });
            gepa(engine.program, &start, &eval, &proposer, &cfg).await
        }
        other => {
            return Err(OptimizeError::Unknown {
                name: other.into(),
                hint: String::new(),
            })
        }
    };
    let result = search.map_err(|e| bad(settings, "search", &e.to_string()))?;
    let history = result
        .history
        .iter()
        .map(|r| {
            let mut extra = BTreeMap::new();
            if let Ok(Value::Object(m)) = serde_json::to_value(r) {
                for (k, v) in m {
                    if !matches!(k.as_str(), "id" | "origin") {
                        extra.insert(k, v);
                    }
                }
            }
            CandidateRecord {
                id: r.id,
                origin: r.origin.clone(),
                score: r.full_score,
                extra,
                ..Default::default()
            }
        })
        .collect();
    let best_score = engine.score(&result.best, engine.concurrency).await;
    Ok(Outcome {
        best: result.best,
        best_score,
        baseline_score: Some(result.baseline_score),
        train_score: None,
        settings: effective,
        history,
    })
}

/// MIPROv2's demo-set candidates, DSPy's `create_n_fewshot_demo_sets`
/// scheme over the shared bootstrap machinery: set 0 zero-shot, set 1
/// labeled demos only, set 2 an unshuffled bootstrap, then bootstraps over
/// seeded shuffles of the trainset with a seeded number of demos in
/// [1, max_bootstrapped_demos]. Returns `n` sets (fewer if the budget runs out).
pub async fn demo_sets(
    engine: &Engine<'_>,
    n: usize,
    max_bootstrapped: usize,
    max_labeled: usize,
) -> Vec<BTreeMap<String, Vec<crate::overlay::Demo>>> {
    use crate::optimize::{bootstrap, labeled};
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    let by_path = |o: &Overlay| -> BTreeMap<String, Vec<crate::overlay::Demo>> {
        engine
            .program
            .predictors()
            .iter()
            .map(|p| (p.path.clone(), o.state(&p.path).demos))
            .collect()
    };
    let params = bootstrap::Params {
        max_bootstrapped_demos: max_bootstrapped,
        max_labeled_demos: max_labeled,
        max_rounds: 1,
        metric_threshold: None,
    };
    let mut sets = Vec::new();
    for seed in -3i64..(n as i64 - 3) {
        if engine.exhausted() {
            break;
        }
        let s = engine
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(seed as u64);
        let overlay = match seed {
            -3 => Overlay::default(),
            -2 => labeled::overlay(
                engine.program,
                &labeled::pick(engine.trainset, max_labeled, s, true),
            ),
            -1 => {
                bootstrap::bootstrap(engine, engine.trainset, &params, s)
                    .await
                    .overlay
            }
            _ => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s);
                let mut shuffled = engine.trainset.to_vec();
                shuffled.shuffle(&mut rng);
                let size = rng.gen_range(1..=max_bootstrapped.max(1));
                let p = bootstrap::Params {
                    max_bootstrapped_demos: size,
                    ..params.clone()
                };
                bootstrap::bootstrap(engine, &shuffled, &p, s).await.overlay
            }
        };
        sets.push(by_path(&overlay));
    }
    sets
}

/// `--dry-run` projection for the instruction searches on a cold cache:
/// program runs per phase, and proposer LM calls. Upper bounds: searches
/// stop early when proposals repeat or a budget is spent.
pub fn project(
    program: &crate::program::Program,
    settings: &Settings,
    n_train: usize,
    n_val: usize,
) -> Result<(Vec<(String, u64)>, u64), OptimizeError> {
    let p = program.predictors().len() as u64;
    let (t, v) = (n_train as u64, n_val as u64);
    let mut phases = Vec::new();
    let proposer_calls;
    match settings.optimizer.as_str() {
        "copro" => {
            settings.check_known(COPRO_KEYS)?;
            let b = settings.usize("breadth", 10)?.max(2) as u64;
            let d = settings.usize("depth", 3)?.max(1) as u64;
            proposer_calls = p * (b - 1) + (d - 1) * p * b;
            phases.push(("evaluating".into(), v + proposer_calls * v));
        }
        "mipro" => {
            let cfg = mipro_config(settings, 0)?;
            let with_demos = settings.usize("max_bootstrapped_demos", 4)?
                + settings.usize("max_labeled_demos", 4)?
                > 0;
            let n_sets = if with_demos {
                cfg.auto
                    .map(|a| a.settings().0)
                    .unwrap_or(cfg.num_candidates)
            } else {
                0
            };
            let pl = super::mipro::plan(program, &cfg, n_val, n_sets);
            if n_sets > 2 {
                phases.push(("bootstrapping".into(), t * (n_sets as u64 - 2)));
            }
            proposer_calls = 1 + p * (pl.instruct_candidates.saturating_sub(1) as u64);
            let vv = pl.val_indices.len() as u64;
            let per_trial = if pl.minibatch {
                cfg.minibatch_size.min(pl.val_indices.len()) as u64
            } else {
                vv
            };
            let fulls = if pl.minibatch {
                pl.full_evals as u64 * vv
            } else {
                0
            };
            phases.push((
                "evaluating".into(),
                2 * vv + pl.trials as u64 * per_trial + fulls,
            ));
        }
        "gepa" => {
            settings.check_known(GEPA_KEYS)?;
            let a = auto(settings, Some(Auto::Light))?.unwrap_or(Auto::Light);
            let budget = match settings
                .values
                .get("max_metric_calls")
                .and_then(Value::as_u64)
            {
                Some(b) => b,
                None => super::gepa::auto_budget(p as usize, a.settings().0, n_val) as u64,
            };
            let mb = settings.usize("reflection_minibatch_size", 3)?.max(1) as u64;
            proposer_calls = budget / (2 * mb);
            phases.push(("evaluating".into(), budget));
        }
        other => {
            return Err(OptimizeError::Unknown {
                name: other.into(),
                hint: String::new(),
            })
        }
    }
    Ok((phases, proposer_calls))
}
