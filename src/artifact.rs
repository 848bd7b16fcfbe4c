//! Compiled artifacts: what `lmc compile` writes and `lmc run`/`lmc eval`/CI
//! read back.
//!
//! An artifact is one JSON file that carries the program source (so it runs
//! standalone), the winning overlay keyed by predictor path, the LM
//! configuration without secrets and the lineage of the compile (optimizer,
//! settings, seed, datasets and metric with content hashes, scores, usage,
//! search history). Everything is serialized from ordered maps so the same
//! inputs, seed and cache give the same bytes; what describes one particular
//! execution rather than its inputs is `created_at` and `lineage.run`
//! (wall time, backend calls, tokens and cost actually spent), and nothing
//! else varies.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::diag::Diagnostics;
use crate::limits::{check_state, sub_path, JsonDoc, Problem};
use crate::overlay::{Overlay, PredictorState};
use crate::program::{LmConfig, Program};

/// The `format` tag every artifact carries (how [`is_artifact`] recognizes one).
pub const FORMAT: &str = "lmc.artifact";
/// Bumped when the layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read artifact {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write artifact {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Everything wrong with the file, located (rendered like program
    /// diagnostics).
    #[error("{0}")]
    Diagnostics(Diagnostics),
    #[error("{path}: artifact format version {found} is newer than this lmc understands ({FORMAT_VERSION}); upgrade lmc")]
    Version { path: PathBuf, found: u32 },
    #[error("the program embedded in the artifact does not load: {0}")]
    Program(String),
    #[error("the artifact was compiled for program `{name}` with content hash {expected}, but the embedded source hashes to {found}")]
    Hash {
        name: String,
        expected: String,
        found: String,
    },
    #[error("the artifact sets predictor `{path}`, which program `{program}` does not have (predictors: {known})")]
    UnknownPredictor {
        path: String,
        program: String,
        known: String,
    },
}

/// The program an artifact was compiled from, carried whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramRef {
    pub name: String,
    /// The program file, relative to the artifact's directory when it was
    /// written (absolute when no relative path exists). Relative paths inside
    /// the program (datasets, tools) are resolved from this file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// sha256 (hex) of `source`.
    pub content_hash: String,
    pub source: String,
}

/// A dataset the compile read, identified by content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRef {
    pub path: String,
    /// sha256 of the file's bytes.
    pub hash: String,
    /// Examples used (after any limit).
    pub examples: usize,
}

/// The metric the compile optimized, as written, with a hash of its canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRef {
    pub spec: Value,
    pub hash: String,
}

/// One candidate an optimizer evaluated (search history).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    pub id: usize,
    /// How it was made, e.g. `zero_shot`, `labeled_only`, `bootstrap`, `shuffled`.
    pub origin: String,
    /// The candidate's seed in DSPy's scheme (-3, -2, -1, 0, 1, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Demos per predictor path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub demos: BTreeMap<String, usize>,
    /// Mean score on the validation set (None when the budget ran out first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// sha256 of the candidate's overlay.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub overlay_hash: String,
    /// Instruction searches: the candidates it was made from (search ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<usize>,
    /// Instruction searches: the predictor the candidate changed, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<String>,
    /// Instructions per predictor path (only those that differ from the program).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instructions: BTreeMap<String, String>,
    /// Demo-set choice per predictor (MIPRO).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub demo_sets: BTreeMap<String, usize>,
    /// Mean score on a minibatch (instruction searches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minibatch_score: Option<f64>,
    /// Mean score on the whole (sampled) validation set (instruction searches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_score: Option<f64>,
    /// Whether the search kept it (GEPA mutations and merges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    /// Prompt tokens per LM call when it ran on the whole valset (see
    /// [`Cost`]): what `--objective` weighs against the score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_per_call: Option<f64>,
    /// USD per 1,000 examples at the configured prices, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_1k: Option<f64>,
}

/// What one candidate costs to run, measured on the whole valset from the
/// rendered requests and replies (about 4 characters a token), so a
/// candidate answered from the cache weighs what a fresh one does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub calls_per_example: f64,
    pub prompt_tokens_per_call: f64,
    pub completion_tokens_per_call: f64,
    /// USD per 1,000 examples, when prices are configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_1k_examples: Option<f64>,
}

/// One candidate in the compile's trade-off report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TradeoffRow {
    pub overlay_hash: String,
    /// How the candidate was made, when the history names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub score: f64,
    pub cost: Cost,
    /// Not significantly worse than the best score (paired test on the
    /// same valset rows, one-sided p >= 0.05).
    pub tied_with_best: bool,
}

/// Score against size for the candidates scored on the whole valset: the
/// objective that chose, the winner, the runners-up and the Pareto
/// frontier (no other candidate scores at least as well with fewer prompt
/// tokens per call).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tradeoff {
    pub objective: String,
    pub winner: TradeoffRow,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runners_up: Vec<TradeoffRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frontier: Vec<TradeoffRow>,
    /// Why the objective could not be met (no candidate under the cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmet: Option<String>,
}

/// How the artifact came to be.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub optimizer: String,
    /// Effective optimizer settings (defaults filled in).
    pub settings: BTreeMap<String, Value>,
    /// Where each setting given explicitly came from: `FILE:LINE:COL` of a
    /// `compile:` section (program or `lmc.yaml`) or `--opt`. Settings not
    /// listed are defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings_from: BTreeMap<String, String>,
    /// Figures the optimizer derived from its settings and the data
    /// (MIPRO's trial plan, demos bootstrapped, kNN similarity).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plan: BTreeMap<String, Value>,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainset: Option<DatasetRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valset: Option<DatasetRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricRef>,
    /// Valset score of the program as written (zero-shot), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_score: Option<f64>,
    /// Valset score of the winner and its 95% interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_ci95: Option<[f64; 2]>,
    /// LM requests the search made, cache hits included: the same figure
    /// on a cold run and on a run resumed from the cache.
    pub lm_calls: u64,
    /// What this execution spent (see [`RunStats`]).
    pub run: RunStats,
    pub lmc_version: String,
    /// Whether a budget stopped the search early.
    #[serde(default)]
    pub budget_exhausted: bool,
    /// Why the compile was interrupted (`SIGINT`, `SIGTERM`): the artifact
    /// holds the best candidate fully scored before the stop, not the
    /// search's result. Absent when the search ran to its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<CandidateRecord>,
    /// Compiled from an artifact: the earlier stages, oldest first, the
    /// last being the artifact this compile started from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// Score against prompt size for the winner and the runners-up, and
    /// the objective that chose (`--objective`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tradeoff: Option<Tradeoff>,
}

/// One earlier compile a composed artifact was built on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub optimizer: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, Value>,
    /// sha256 of that stage's artifact file, as read; `None` for a stage
    /// of a one-command pipeline (`--then`), which never wrote a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_score: Option<f64>,
    pub lm_calls: u64,
}

impl Stage {
    /// The stages of a compile that starts from `parent` (file `bytes`):
    /// the parent's own stages, then the parent.
    pub fn chain(parent: &Artifact, bytes: &[u8]) -> Vec<Stage> {
        let l = &parent.lineage;
        let mut out = l.stages.clone();
        out.push(Stage {
            optimizer: l.optimizer.clone(),
            settings: l.settings.clone(),
            artifact_hash: Some(format!("sha256:{}", sha256_hex(bytes))),
            dev_score: l.dev_score,
            lm_calls: l.lm_calls,
        });
        out
    }
}

/// What one execution of the compile spent. With `created_at`, the only
/// part of an artifact that differs between two runs over the same inputs,
/// seed and cache: a resumed run gets its replies from the cache, so it
/// makes fewer backend calls and spends fewer tokens than the cold run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    pub wall_time_s: f64,
    /// Calls that reached the LM backend (cache misses).
    pub backend_calls: u64,
    pub cache_hits: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// USD where prices are known, else 0.
    pub cost: f64,
}

/// A compiled artifact (see the module docs; layout in docs/artifact.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub format: String,
    pub format_version: u32,
    /// RFC 3339 UTC: the one timestamp.
    pub created_at: String,
    pub program: ProgramRef,
    /// Predictor path -> state. Only predictors the optimizer set appear.
    pub predictors: BTreeMap<String, PredictorState>,
    /// LM configuration the compile used (no secrets: keys are named by
    /// environment variable only, URL credentials are stripped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lm: Option<LmConfig>,
    /// Every named LM the compile resolved, redacted the same way.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lms: std::collections::BTreeMap<String, LmConfig>,
    pub lineage: Lineage,
}

/// sha256 hex of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A stable hash of an overlay (its canonical JSON), used to key candidate
/// scores and name candidates in the history.
pub fn overlay_hash(overlay: &Overlay) -> String {
    sha256_hex(
        serde_json::to_string(overlay)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// The current time as RFC 3339 UTC (seconds precision).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Whether `path` is a JSON file tagged `"format": "lmc.artifact"`. Cheap
/// enough to call on every program argument: reads the file only when it
/// looks like JSON.
pub fn is_artifact(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    if !text.trim_start().starts_with('{') {
        return false;
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => v.get("format").and_then(|f| f.as_str()) == Some(FORMAT),
        // A damaged artifact (truncated write, bad edit) is still one: it
        // must get JSON diagnostics, not be read as a YAML program.
        Err(_) => text.contains(&format!("\"{FORMAT}\"")),
    }
}

/// LM configuration safe to store: URL credentials (`user:pass@`) and query
/// strings (where some servers take keys) are dropped.
pub fn redact_lm(lm: &LmConfig) -> LmConfig {
    let mut lm = lm.clone();
    lm.base_urls = lm.base_urls.iter().map(|u| redact_url(u)).collect();
    lm
}

fn redact_url(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// `target` relative to directory `base` (both made absolute first); falls
/// back to the absolute path when they share no root.
fn relative_to(target: &Path, base: &Path) -> PathBuf {
    let abs = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        })
    };
    let (t, b) = (abs(target), abs(base));
    let tc: Vec<Component> = t.components().collect();
    let bc: Vec<Component> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return t;
    }
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &tc[common..] {
        out.push(c.as_os_str());
    }
    out
}

impl Artifact {
    /// A new artifact for `program` with the winning `overlay`. `out` is
    /// where it will be written (program paths are stored relative to it).
    pub fn new(
        program: &Program,
        overlay: &Overlay,
        lm: Option<&LmConfig>,
        lineage: Lineage,
        out: &Path,
    ) -> Artifact {
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let path = program
            .source_path
            .as_ref()
            .map(|p| relative_to(p, dir).to_string_lossy().replace('\\', "/"));
        Artifact {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            created_at: now_rfc3339(),
            program: ProgramRef {
                name: program.name.clone(),
                path,
                content_hash: sha256_hex(program.source.as_bytes()),
                source: program.source.clone(),
            },
            predictors: overlay.predictors.clone(),
            lm: lm.map(redact_lm),
            lms: Default::default(),
            lineage,
        }
    }

    /// Record the named LMs (redacted) besides the default one.
    pub fn with_lms<'a>(mut self, lms: impl IntoIterator<Item = (&'a String, LmConfig)>) -> Self {
        self.lms = lms
            .into_iter()
            .map(|(n, c)| (n.clone(), redact_lm(&c)))
            .collect();
        self
    }

    /// Read and validate an artifact file. The program is not lowered here
    /// (see [`Artifact::program`]), so reading is cheap.
    pub fn load(path: &Path) -> Result<Artifact, ArtifactError> {
        let text = std::fs::read_to_string(path).map_err(|source| ArtifactError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut a = Artifact::from_json(&text, path)?;
        // Resolve the program path against the artifact's directory now, so
        // later lowering does not depend on the current directory.
        if let Some(p) = &a.program.path {
            let pp = Path::new(p);
            if pp.is_relative() {
                let dir = path.parent().unwrap_or(Path::new(""));
                a.program.path = Some(dir.join(pp).to_string_lossy().into_owned());
            }
        }
        Ok(a)
    }

    /// Parse and validate artifact JSON (`origin` names it in errors).
    /// Each predictor is read on its own and checked against the bounds in
    /// [`crate::limits`], so every problem in the file is reported at once,
    /// located, before anything sizes an allocation from it.
    pub fn from_json(text: &str, origin: &Path) -> Result<Artifact, ArtifactError> {
        let doc = JsonDoc::new(text, origin);
        let fail = |ds: Diagnostics| ArtifactError::Diagnostics(ds);
        let mut v: Value = serde_json::from_str(text).map_err(|e| fail(doc.syntax(&e).into()))?;
        let mut problems = Vec::new();
        match v.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(fail(doc.diagnostics(vec![Problem::new(
                    "format",
                    format!("format is `{other}`, expected `{FORMAT}`"),
                )
                .hint("this file is not an lmc artifact")])))
            }
            None => {
                return Err(fail(doc.diagnostics(vec![Problem::new(
                    "",
                    format!("no `\"format\": \"{FORMAT}\"` tag"),
                )
                .hint("this file is not an lmc artifact")])))
            }
        }
        if let Some(found) = v.get("format_version").and_then(|f| f.as_u64()) {
            if found > FORMAT_VERSION as u64 {
                return Err(ArtifactError::Version {
                    path: origin.to_path_buf(),
                    found: u32::try_from(found).unwrap_or(u32::MAX),
                });
            }
        }
        // Predictors one by one (serde stops at the first error), then the rest.
        let mut predictors = BTreeMap::new();
        if let Some(obj) = v.as_object_mut() {
            match obj.insert("predictors".into(), Value::Object(Default::default())) {
                Some(Value::Object(m)) => {
                    for (name, st) in m {
                        let at = sub_path("predictors", &name);
                        match serde_path_to_error::deserialize::<_, PredictorState>(st) {
                            Ok(st) => {
                                problems.extend(check_state(&at, &st, "knn"));
                                predictors.insert(name, st);
                            }
                            Err(e) => problems.push(
                                Problem::new(
                                    sub_path(&at, &e.path().to_string()),
                                    e.inner().to_string(),
                                )
                                .hint("see docs/artifact.md for the predictor state layout"),
                            ),
                        }
                    }
                }
                Some(_) => problems.push(
                    Problem::new(
                        "predictors",
                        "`predictors` must be an object keyed by predictor path",
                    )
                    .hint("e.g. `\"predictors\": {\"classify\": {\"demos\": []}}`"),
                ),
                None => {}
            }
        }
        let artifact = match serde_path_to_error::deserialize::<_, Artifact>(v) {
            Ok(a) => Some(a),
            Err(e) => {
                problems.push(
                    Problem::new(
                        e.path().to_string().trim_start_matches('.'),
                        e.inner().to_string(),
                    )
                    .hint("see docs/artifact.md for the artifact layout"),
                );
                None
            }
        };
        match artifact {
            Some(mut a) if problems.is_empty() => {
                a.predictors = predictors;
                Ok(a)
            }
            _ => Err(fail(doc.diagnostics(problems))),
        }
    }

    /// The overlay to run the program with.
    pub fn overlay(&self) -> Overlay {
        Overlay {
            predictors: self.predictors.clone(),
        }
    }

    /// Lower the embedded program source again (relative paths inside it
    /// resolve from the original program file's directory), check its hash
    /// and that every predictor the artifact sets exists.
    pub fn program(&self) -> Result<Program, ArtifactError> {
        let found = sha256_hex(self.program.source.as_bytes());
        if found != self.program.content_hash {
            return Err(ArtifactError::Hash {
                name: self.program.name.clone(),
                expected: self.program.content_hash.clone(),
                found,
            });
        }
        let path = self
            .program
            .path
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("{}.yaml", self.program.name)));
        let program = crate::program::load_str(&self.program.source, &path)
            .map_err(|e| ArtifactError::Program(e.to_string()))?;
        let known: Vec<String> = program.predictors().into_iter().map(|p| p.path).collect();
        let known_set: std::collections::HashSet<&String> = known.iter().collect();
        let unknown: Vec<&str> = self
            .predictors
            .keys()
            .filter(|p| !known_set.contains(p))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ArtifactError::UnknownPredictor {
                path: unknown.join("`, `"),
                program: program.name.clone(),
                known: known.join(", "),
            });
        }
        Ok(program)
    }

    /// Pretty JSON with a trailing newline: the bytes written to disk.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Write atomically (temp file + rename) so a crash never leaves half an
    /// artifact where CI will read it.
    pub fn save(&self, path: &Path) -> Result<(), ArtifactError> {
        let werr = |source| ArtifactError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(werr)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "artifact.json".into());
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        std::fs::write(&tmp, self.to_json()).map_err(werr)?;
        std::fs::rename(&tmp, path).map_err(werr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            redact_url("https://user:secret@host:8000/v1?key=abc"),
            "https://host:8000/v1"
        );
        assert_eq!(redact_url("http://127.0.0.1:1/v1"), "http://127.0.0.1:1/v1");
    }

    #[test]
    fn relative_paths_walk_up() {
        let p = relative_to(Path::new("/a/b/p.yaml"), Path::new("/a/c"));
        assert_eq!(p, PathBuf::from("../b/p.yaml"));
    }

    #[test]
    fn rejects_other_formats() {
        let e = Artifact::from_json(r#"{"format":"x"}"#, Path::new("f.json")).unwrap_err();
        assert!(e.to_string().contains("expected `lmc.artifact`"), "{e}");
        assert!(e.to_string().contains("f.json:1:11"), "{e}");
    }
}
