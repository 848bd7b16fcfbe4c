//! `lmc compile`'s checkpoint file: where the search state of a long
//! compile is kept between runs, so `lmc compile --resume` continues where
//! a killed or interrupted compile stopped instead of replaying it.
//!
//! The file sits next to the artifact (`OUT.checkpoint.json` for
//! `OUT.json`) and is rewritten atomically (temp file + rename) after every
//! step a resumable search takes (a MIPROv2 trial, a GEPA iteration; see
//! `optimize::checkpoint`) and after every finished stage of a pipeline, so
//! a SIGKILL leaves the last complete one. It is keyed by everything the
//! search depends on — program, starting artifact, stages and their
//! settings, datasets, metric, seed, task and proposer LM — and `--resume`
//! refuses one taken for another compile, naming what differs. A
//! checkpoint is data: it is read with a size bound, parsed strictly
//! (unknown keys refused), checked against the stages it claims, and never
//! names anything to run. It is deleted once a compile finishes (kept
//! after an interrupt or a spent budget, or with `--keep-checkpoint`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::CliError;
use crate::artifact::{overlay_hash, CandidateRecord};
use crate::optimize::checkpoint::{Books, Hook, SearchState};
use crate::optimize::{Configured, Engine, Outcome, Scored};
use crate::overlay::Overlay;

/// The file format's version.
pub const FORMAT: u32 = 1;

/// The checkpoint file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub lmc_checkpoint: u32,
    /// sha256 over `inputs`.
    pub key: String,
    /// What the key covers, to say what differs when it does not match.
    pub inputs: BTreeMap<String, Value>,
    /// Pipeline stages that finished, in order.
    pub stages: Vec<DoneStage>,
    /// The stage running when the checkpoint was taken.
    pub current: Option<Current>,
}

/// A finished stage: its outcome and the engine's books.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoneStage {
    pub optimizer: String,
    pub best: Overlay,
    pub best_score: Option<Scored>,
    pub baseline_score: Option<f64>,
    pub train_score: Option<f64>,
    pub plan: BTreeMap<String, Value>,
    pub history: Vec<CandidateRecord>,
    pub books: Books,
}

impl DoneStage {
    pub fn of(optimizer: &str, o: &Outcome, engine: &Engine<'_>) -> Self {
        DoneStage {
            optimizer: optimizer.to_string(),
            best: o.best.clone(),
            best_score: o.best_score,
            baseline_score: o.baseline_score,
            train_score: o.train_score,
            plan: o.plan.clone(),
            history: o.history.clone(),
            books: engine.books(),
        }
    }

    pub fn outcome(&self) -> Outcome {
        Outcome {
            best: self.best.clone(),
            best_score: self.best_score,
            baseline_score: self.baseline_score,
            train_score: self.train_score,
            plan: self.plan.clone(),
            history: self.history.clone(),
        }
    }
}

/// The running stage and its search's last checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Current {
    pub stage: usize,
    pub optimizer: String,
    pub search: SearchState,
}

/// `OUT.checkpoint.json` beside `OUT.json`.
pub fn path_for(output: &Path) -> PathBuf {
    output.with_extension("checkpoint.json")
}

/// What a checkpoint's key covers (see the module docs). Base URLs and API
/// keys are left out, as in the cache key: the same model served elsewhere
/// is the same search.
#[allow(clippy::too_many_arguments)]
pub fn inputs(
    program_hash: &str,
    base: Option<&Overlay>,
    stages: &[&dyn Configured],
    trainset: &str,
    valset: &str,
    metric: &str,
    seed: u64,
    lm: &crate::program::LmConfig,
    prompt_lm: Option<&str>,
) -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("program".into(), json!(program_hash)),
        ("base".into(), json!(base.map(overlay_hash))),
        (
            "stages".into(),
            json!(stages
                .iter()
                .map(|o| json!({"optimizer": o.name(), "settings": o.settings()}))
                .collect::<Vec<_>>()),
        ),
        ("trainset".into(), json!(trainset)),
        ("valset".into(), json!(valset)),
        ("metric".into(), json!(metric)),
        ("seed".into(), json!(seed)),
        (
            "lm".into(),
            json!({"provider": lm.provider, "model": lm.model, "temperature": lm.temperature,
                   "max_tokens": lm.max_tokens, "adapter": lm.adapter}),
        ),
        ("prompt_lm".into(), json!(prompt_lm)),
    ])
}

fn key_of(inputs: &BTreeMap<String, Value>) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(inputs).unwrap_or_default();
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// Writes the checkpoint file as a compile goes.
pub struct Writer {
    pub path: PathBuf,
    key: String,
    inputs: BTreeMap<String, Value>,
    state: Mutex<(Vec<DoneStage>, bool)>,
    /// Whether this run holds a valid checkpoint at `path` (it wrote one,
    /// or resumed from it): what the interrupt's help may point at.
    live: std::sync::atomic::AtomicBool,
}

impl Writer {
    pub fn new(path: PathBuf, inputs: BTreeMap<String, Value>) -> Self {
        Writer {
            path,
            key: key_of(&inputs),
            inputs,
            state: Mutex::new((Vec::new(), false)),
            live: Default::default(),
        }
    }

    /// Continue a restored checkpoint's stages.
    pub fn restore(&self, stages: Vec<DoneStage>) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = stages;
        }
        self.live.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The checkpoint `--resume` would continue from, if this run has one
    /// (a stale file from another compile does not count).
    pub fn live(&self) -> Option<&Path> {
        self.live
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(self.path.as_path())
    }

    /// A stage finished: record it (the next checkpoint has no search yet).
    pub fn stage_done(&self, done: DoneStage) {
        if let Ok(mut s) = self.state.lock() {
            s.0.push(done);
        }
        self.write(None);
    }

    /// The hook the engine of stage `stage` hands its checkpoints to.
    pub fn hook(self: &std::sync::Arc<Self>, stage: usize, optimizer: &str) -> Hook {
        let w = self.clone();
        let optimizer = optimizer.to_string();
        Box::new(move |search| {
            w.write(Some(Current {
                stage,
                optimizer: optimizer.clone(),
                search,
            }))
        })
    }

    fn write(&self, current: Option<Current>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let file = File {
            lmc_checkpoint: FORMAT,
            key: self.key.clone(),
            inputs: self.inputs.clone(),
            stages: s.0.clone(),
            current,
        };
        match write_atomic(&self.path, &file) {
            Ok(()) => self.live.store(true, std::sync::atomic::Ordering::SeqCst),
            Err(e) => {
                // A compile is worth more than its checkpoint: say it once, go on.
                if !s.1 {
                    s.1 = true;
                    eprintln!(
                    "warning: cannot write the checkpoint {}: {e}; the compile goes on without one",
                    self.path.display()
                );
                }
            }
        }
    }

    /// The compile finished: the checkpoint has served.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn write_atomic(path: &Path, file: &File) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint.json".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let bytes = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn input_err(msg: String) -> anyhow::Error {
    CliError::Input(msg).into()
}

/// Read and check the checkpoint at `path` for a compile of `stages` whose
/// key inputs are `inputs`: bounded, strict, and refused (with what
/// differs) when it was taken for another compile.
pub fn load(
    path: &Path,
    inputs: &BTreeMap<String, Value>,
    stages: &[&dyn Configured],
) -> anyhow::Result<File> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        input_err(format!(
            "--resume: no checkpoint to resume from at {shown} ({e})\n  = help: a checkpoint is written next to the artifact (-o) while a compile runs; drop --resume to start over"
        ))
    })?;
    if meta.len() > crate::limits::MAX_CHECKPOINT_BYTES {
        return Err(input_err(format!(
            "{shown}: a checkpoint of {} bytes is over the {} byte limit\n  = help: delete it to start over",
            meta.len(),
            crate::limits::MAX_CHECKPOINT_BYTES
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| input_err(format!("{shown}: {e}")))?;
    let file: File = serde_json::from_slice(&bytes).map_err(|e| {
        input_err(format!(
            "{shown}:{}:{}: not an lmc checkpoint: {e}\n  = help: delete it to start over",
            e.line(),
            e.column()
        ))
    })?;
    if file.lmc_checkpoint != FORMAT {
        return Err(input_err(format!(
            "{shown}: checkpoint format {} (this lmc reads {FORMAT})\n  = help: delete it to start over",
            file.lmc_checkpoint
        )));
    }
    if file.key != key_of(inputs) || &file.inputs != inputs {
        let differ: Vec<String> = inputs
            .iter()
            .filter(|(k, v)| file.inputs.get(*k) != Some(*v))
            .map(|(k, v)| {
                format!(
                    "{k}: {} there, {} here",
                    short(file.inputs.get(k).unwrap_or(&Value::Null)),
                    short(v)
                )
            })
            .collect();
        return Err(input_err(format!(
            "--resume: the checkpoint {shown} was taken for another compile ({})\n  = help: resume with the same program, datasets, metric, optimizer settings, seed and LM, or drop --resume to start over",
            if differ.is_empty() { "its key differs".to_string() } else { differ.join("; ") }
        )));
    }
    check(&file, stages)
        .map_err(|m| input_err(format!("{shown}: {m}\n  = help: delete it to start over")))?;
    Ok(file)
}

/// A value in a mismatch message: short enough to read.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// The stages it claims must be this compile's, and its overlays within
/// the limits artifacts are held to.
fn check(file: &File, stages: &[&dyn Configured]) -> Result<(), String> {
    if file.stages.len() > stages.len() {
        return Err(format!(
            "{} finished stages for a compile of {}",
            file.stages.len(),
            stages.len()
        ));
    }
    for (i, (d, o)) in file.stages.iter().zip(stages).enumerate() {
        if d.optimizer != o.name() {
            return Err(format!(
                "stage {} is `{}` there, `{}` here",
                i + 1,
                d.optimizer,
                o.name()
            ));
        }
    }
    if let Some(c) = &file.current {
        let here = stages.get(c.stage).map(|o| o.name());
        if c.stage != file.stages.len() || here != Some(c.optimizer.as_str()) {
            return Err(format!(
                "the running stage {} (`{}`) does not follow the finished ones",
                c.stage + 1,
                c.optimizer
            ));
        }
    }
    let mut overlays: Vec<&Overlay> = file.stages.iter().map(|d| &d.best).collect();
    overlays.extend(
        file.stages
            .iter()
            .filter_map(|d| d.books.best_scored.as_ref().map(|b| &b.0)),
    );
    if let Some(c) = &file.current {
        overlays.extend(c.search.books.best_scored.as_ref().map(|b| &b.0));
    }
    for o in overlays {
        for (path, st) in &o.predictors {
            if let Some(p) = crate::limits::check_state(path, st, "knn")
                .into_iter()
                .next()
            {
                return Err(format!("{}: {}", p.path, p.message));
            }
        }
    }
    Ok(())
}

/// What `--resume` restored, said on stderr and in the report.
pub fn restored_message(file: &File, path: &Path) -> String {
    let stages = match file.stages.len() {
        0 => String::new(),
        n => format!(
            "{n} finished stage{} ({}) kept; ",
            if n == 1 { "" } else { "s" },
            file.stages
                .iter()
                .map(|d| d.optimizer.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let search = match &file.current {
        Some(c) => {
            let s = &c.search;
            let of = if s.total > 0 {
                format!(" of {}", s.total)
            } else {
                String::new()
            };
            let best = s
                .best_score()
                .map(|b| format!(", best {b:.3} so far"))
                .unwrap_or_default();
            format!(
                "resumed {} at {} {}{of} ({} {}{} done{best})",
                c.optimizer,
                s.unit,
                s.done + 1,
                s.done,
                s.unit,
                if s.done == 1 { "" } else { "s" }
            )
        }
        None => "resumed after the last finished stage".to_string(),
    };
    format!("{stages}{search}, from {}", path.display())
}
