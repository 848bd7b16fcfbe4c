//! The `compile:` section of a program file or of `lmc.yaml`: which
//! optimizer `lmc compile` runs by default and its settings, e.g.
//! `compile: {optimizer: mipro, settings: {num_trials: 8}}`.
//!
//! The section may also be a list of stages, each a mapping naming its
//! optimizer (`compile: [{optimizer: mipro}, {optimizer: knn_few_shot,
//! settings: {k: 3}}]`): `lmc compile` runs them in order under one budget
//! and one cache, exactly as `--optimizer mipro --then knn_few_shot`.
//!
//! The section is checked where it is read, against the optimizer registry
//! and through the optimizer's own typed settings (the same serde path as
//! `--opt`), so a misspelt optimizer or setting, or a value of the wrong
//! type, is a located error (file:line:col, did-you-mean) from `lmc check`
//! as from `lmc compile`, never a surprise halfway through a search. The
//! settings belong to the optimizer named beside them
//! ([`DEFAULT_OPTIMIZER`] when none is): a section is self-contained, and
//! `lmc compile` applies it only when it runs that optimizer
//! (`cli::compile` layers program, project file and `--opt`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::{did_you_mean, Diagnostic};
use crate::optimize::{self, OptimizeError};
use crate::yaml::{join, PosIndex};

/// The optimizer `lmc compile` runs when nothing names one.
pub const DEFAULT_OPTIMIZER: &str = "bootstrap_random_search";

/// The keys of a `compile:` section.
pub const COMPILE_KEYS: &[&str] = &[
    "optimizer",
    "settings",
    "prompt_lm",
    "reflection_lm",
    "teacher_lm",
    "objective",
];

/// The optimizer roles that may name an LM of `lms:` (`compile: {ROLE: NAME}`):
/// the proposer writing instructions, GEPA's reflection model, and the
/// teacher that bootstrapping runs to make demos.
pub const LM_ROLES: &[&str] = &["prompt_lm", "reflection_lm", "teacher_lm"];

/// A checked `compile:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompileConfig {
    /// The optimizer named, if any (its settings are for
    /// [`DEFAULT_OPTIMIZER`] when none is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<String>,
    /// Settings as written (already checked against the optimizer).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub settings: Map<String, Value>,
    /// `objective:` as written (already checked), e.g. `cheapest-tied`:
    /// what `lmc compile` keeps among the candidates (`--objective`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    /// Where each setting was written, `FILE:LINE:COL`, for the lineage.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub origins: BTreeMap<String, String>,
    /// The stages after this one when the section is a list (each names
    /// its optimizer; their own `then` is empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<CompileConfig>,
    /// Optimizer role (`prompt_lm`, `reflection_lm`, `teacher_lm`) -> named LM.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lms: BTreeMap<String, String>,
}

impl CompileConfig {
    /// The optimizer these settings are for.
    pub fn optimizer_name(&self) -> &str {
        self.optimizer.as_deref().unwrap_or(DEFAULT_OPTIMIZER)
    }
}

/// Check the section `value` written at YAML path `at` (`compile`) of
/// `file`, located through `idx`. Returns the section (when it is usable)
/// and every problem found; diagnostics carry no file (callers add it).
pub fn check(
    value: &Value,
    idx: &PosIndex,
    at: &str,
    file: &Path,
) -> (Option<CompileConfig>, Vec<Diagnostic>) {
    let Value::Array(items) = value else {
        return check_stage(value, idx, at, file, false);
    };
    let mut diags = Vec::new();
    if items.is_empty() {
        diags.push(
            Diagnostic::error("`compile` is an empty list of stages".to_string())
                .at(idx.locate(at))
                .path(at)
                .maybe_hint(Some(
                    "list the stages in order, e.g. `compile: [{optimizer: mipro}, {optimizer: knn_few_shot}]`, or remove the key".into(),
                )),
        );
        return (None, diags);
    }
    // Every stage is checked, so every mistake is reported at once.
    let mut stages = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (c, d) = check_stage(item, idx, &format!("{at}[{i}]"), file, true);
        diags.extend(d);
        stages.extend(c);
    }
    if stages.len() != items.len() {
        return (None, diags);
    }
    let mut first = stages.remove(0);
    first.then = stages;
    (Some(first), diags)
}

/// One stage: the mapping `{optimizer, settings}` at `at`. In a list
/// (`listed`) the optimizer must be named: a list has no default stage.
fn check_stage(
    value: &Value,
    idx: &PosIndex,
    at: &str,
    file: &Path,
    listed: bool,
) -> (Option<CompileConfig>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let err = |path: &str, key: bool, message: String, hint: Option<String>| {
        let pos = if key {
            idx.key(path).or_else(|| idx.locate(path))
        } else {
            idx.locate(path)
        };
        Diagnostic::error(message)
            .at(pos)
            .path(path)
            .maybe_hint(hint)
    };
    let example = "write e.g. `compile: {optimizer: mipro, settings: {num_trials: 8}}`, or a list of such stages";
    let obj = match value {
        Value::Null if !listed => return (None, diags),
        Value::Object(o) => o,
        _ => {
            diags.push(err(
                at,
                false,
                format!("`{at}` must be a mapping with `optimizer` and `settings`"),
                Some(example.into()),
            ));
            return (None, diags);
        }
    };
    let mut misplaced = false;
    for k in obj.keys() {
        if !COMPILE_KEYS.contains(&k.as_str()) {
            misplaced = true;
            diags.push(err(
                &join(at, k),
                true,
                format!("unknown key `{k}` in `{at}`"),
                Some(
                    did_you_mean(k, COMPILE_KEYS.iter().copied()).unwrap_or_else(|| {
                        "`compile` takes `optimizer`, `settings`, `objective`, `prompt_lm`, `reflection_lm` and `teacher_lm`"
                            .into()
                    }),
                ),
            ));
        }
    }
    let mut lms = BTreeMap::new();
    for role in LM_ROLES {
        match obj.get(*role) {
            None | Some(Value::Null) => {}
            Some(Value::String(n)) => {
                lms.insert(role.to_string(), n.clone());
            }
            Some(_) => diags.push(err(
                &join(at, role),
                false,
                format!("`{role}` must be the name of an LM under `lms:`"),
                Some(format!(
                    "write e.g. `{role}: strong` with `lms: {{strong: {{model: ...}}}}`"
                )),
            )),
        }
    }
    let opt_path = join(at, "optimizer");
    let name = match obj.get("optimizer") {
        None | Some(Value::Null) if listed => {
            diags.push(err(
                at,
                false,
                format!("stage `{at}` names no optimizer"),
                Some(format!(
                    "each stage of a `compile` list names its optimizer, e.g. `{{optimizer: mipro}}`; one of {}",
                    optimize::names().join(", ")
                )),
            ));
            return (None, diags);
        }
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            diags.push(err(
                &opt_path,
                false,
                "`optimizer` must be an optimizer name".into(),
                Some(format!("one of {}", optimize::names().join(", "))),
            ));
            return (None, diags);
        }
    };
    let registered = match optimize::lookup(name.as_deref().unwrap_or(DEFAULT_OPTIMIZER)) {
        Ok(o) => o,
        Err(_) => {
            let n = name.unwrap_or_default();
            diags.push(err(
                &opt_path,
                false,
                format!("unknown optimizer `{n}`"),
                Some(
                    did_you_mean(&n, optimize::names())
                        .unwrap_or_else(|| format!("one of {}", optimize::names().join(", "))),
                ),
            ));
            return (None, diags);
        }
    };
    if misplaced && name.is_none() {
        // A misspelt `optimizer:` key: checking the settings against the
        // default optimizer would only add confusing errors.
        return (None, diags);
    }
    let set_path = join(at, "settings");
    let settings = match obj.get("settings") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            diags.push(err(
                &set_path,
                false,
                "`settings` must be a mapping of setting names to values".into(),
                Some("`lmc compile --list` shows each optimizer's settings".into()),
            ));
            return (None, diags);
        }
    };
    // Every unknown key at once (serde would stop at the first).
    let docs = registered.settings_docs();
    let known: Vec<&str> = docs.iter().map(|d| d.key).collect();
    let mut unknown = false;
    for k in settings.keys() {
        if !known.contains(&k.as_str()) {
            unknown = true;
            let takes = if known.is_empty() {
                format!("`{}` takes no settings", registered.name())
            } else {
                format!("`{}` takes {}", registered.name(), known.join(", "))
            };
            diags.push(err(
                &join(&set_path, k),
                true,
                format!(
                    "unknown setting `{k}` for optimizer `{}`",
                    registered.name()
                ),
                Some(
                    did_you_mean(k, known.iter().copied())
                        .map(|d| format!("{d} ({takes})"))
                        .unwrap_or(takes),
                ),
            ));
        }
    }
    if unknown {
        return (None, diags);
    }
    // Types and ranges through the optimizer's own settings type.
    if let Err(e) = registered.configure(&settings) {
        let (key, message) = match e {
            OptimizeError::BadSetting { key, message, .. } => (key, message),
            other => (String::new(), other.to_string()),
        };
        let path = if key.is_empty() {
            set_path.clone()
        } else {
            join(&set_path, &key)
        };
        diags.push(err(
            &path,
            false,
            format!(
                "setting `{key}` of optimizer `{}`: {message}",
                registered.name()
            ),
            Some("`lmc compile --list` shows each setting's type and default".into()),
        ));
        return (None, diags);
    }
    let objective = match obj.get("objective") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let path = join(at, "objective");
            match v
                .as_str()
                .ok_or_else(|| "`objective` must be a string".to_string())
                .and_then(|t| t.parse::<optimize::Objective>())
            {
                Ok(o) => Some(o.to_string()),
                Err(e) => {
                    diags.push(err(
                        &path,
                        false,
                        e,
                        Some(format!("one of {}", optimize::objective::SPELLINGS)),
                    ));
                    return (None, diags);
                }
            }
        }
    };
    let origins = settings
        .keys()
        .map(|k| {
            let at = match idx.key(&join(&set_path, k)) {
                Some(p) => format!("{}:{}:{}", file.display(), p.line, p.col),
                None => file.display().to_string(),
            };
            (k.clone(), at)
        })
        .collect();
    (
        Some(CompileConfig {
            optimizer: name,
            settings,
            objective,
            origins,
            then: Vec::new(),
            lms,
        }),
        diags,
    )
}
