//! The embedded engine: a GGUF instruct model run in-process on the CPU
//! through llama.cpp (`llama-cpp-2`), so lmc works offline with no server.
//!
//! One dedicated engine thread owns the model and its context (llama.cpp
//! contexts are not thread-safe); requests reach it over a channel and get
//! their reply on a oneshot channel, so any number of async tasks can share
//! one [`EmbeddedLm`]. Concurrent requests are decoded together as distinct
//! sequences of one batch, each with its own sampler chain and grammar, and
//! a prompt prefix already in the KV cache (the system message and demos that
//! every example of a dataset shares) is reused rather than recomputed. The
//! scheduling lives in `engine`; this file is the public face: configuration,
//! model discovery and the [`Lm`] implementation.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::lm::{Lm, LmError, LmRequest, LmResponse};

mod engine;
pub mod quantize;
pub mod skeleton;

pub use crate::lm::resolve::DEFAULT_MODEL_FILE;

/// Total KV-cache size (tokens) shared by all sequences when not configured:
/// room for several demo-laden prompts at once, since their shared prefix is
/// stored once.
pub const DEFAULT_CONTEXT: u32 = 4096;

/// Sequences decoded together when not configured.
pub const DEFAULT_MAX_BATCH: usize = crate::lm::resolve::DEFAULT_CONCURRENCY;

/// How to load the embedded engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    pub model_path: PathBuf,
    /// CPU threads for decoding; default: physical cores.
    pub threads: Option<usize>,
    /// Total context (tokens) shared across batched sequences.
    pub context: Option<u32>,
    /// Most sequences decoded together in one batch.
    pub max_batch: Option<usize>,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            model_path: crate::lm::resolve::default_model_path(),
            threads: None,
            context: None,
            max_batch: None,
        }
    }
}

/// Physical CPU cores (hyper-threads share the SIMD units llama.cpp keeps
/// busy, so counting them only adds contention). Falls back to the logical
/// count where `/proc/cpuinfo` is not available.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::BTreeSet::new();
    let mut physical = "";
    for line in info.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "physical id" => physical = value.trim(),
            "core id" => {
                cores.insert(format!("{physical}/{}", value.trim()));
            }
            _ => {}
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

/// Engine behaviours that can be switched off, for benches that compare
/// them and for diagnosing a model they misbehave with. The greedy fast
/// path picks the same token by construction; jump-forward kept every
/// SST-2 label identical at temperature 0 where measured (the bench
/// compares them), and is kept out of free text by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Jump-forward decoding: text the grammar fixes (markers, the rest of
    /// an enum value once its first tokens identify it) is added in one
    /// batched step, and a reply whose remainder is fixed ends without
    /// decoding it (see `skeleton`). `LMC_JUMP_FORWARD=0` turns it off.
    pub jump_forward: bool,
    /// Jump forward also in replies with free text (`str`, numbers, JSON).
    /// Off by default: forced text is split into tokens the tokenizer's
    /// way, which is not always the model's own way, and free text written
    /// after a differently split marker can differ from plain decoding (seen
    /// on GSM8K: different reasoning, and once an answer that ran to
    /// `max_tokens`). Enum and bool outputs kept identical labels on every
    /// SST-2 sentence measured. `LMC_JUMP_FORWARD=all` turns it on.
    pub jump_free_text: bool,
    /// Greedy decoding checks the grammar on the best raw token first and
    /// masks the whole vocabulary only when that token is refused.
    /// `LMC_GRAMMAR_FAST_PATH=0` turns it off.
    pub greedy_fast_path: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            jump_forward: true,
            jump_free_text: false,
            greedy_fast_path: true,
        }
    }
}

impl Tuning {
    /// The defaults, with `LMC_JUMP_FORWARD=0` / `LMC_GRAMMAR_FAST_PATH=0`
    /// turning a behaviour off and `LMC_JUMP_FORWARD=all` extending
    /// jump-forward to free text.
    pub fn from_env() -> Tuning {
        let var = |name: &str| std::env::var(name).map(|v| v.trim().to_ascii_lowercase());
        let jump = var("LMC_JUMP_FORWARD");
        Tuning {
            jump_forward: !matches!(jump.as_deref(), Ok("0")),
            jump_free_text: matches!(jump.as_deref(), Ok("all")),
            greedy_fast_path: !matches!(var("LMC_GRAMMAR_FAST_PATH").as_deref(), Ok("0")),
        }
    }
}

/// Facts about the loaded engine, for benches and diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineInfo {
    pub threads: usize,
    pub context: u32,
    pub max_batch: usize,
    /// Time to read the GGUF and create the context.
    pub load_time: Duration,
}

/// Counters the engine keeps, for benches: how much prompt work the prefix
/// cache saved and how many decode calls were made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Prompt tokens of all admitted requests.
    pub prompt_tokens: u64,
    /// Of those, tokens whose KV was reused from the cache.
    pub reused_tokens: u64,
    /// Tokens sampled from the model.
    pub generated_tokens: u64,
    /// Reply tokens fixed by the grammar and decoded in batches without
    /// sampling (jump-forward).
    pub forced_tokens: u64,
    /// Reply tokens fixed by the grammar at the end of a reply, appended as
    /// text and never decoded.
    pub skipped_tokens: u64,
    /// Replies completed.
    pub replies: u64,
    /// `llama_decode` calls.
    pub decode_calls: u64,
    /// Sequence participations in those calls (a call decoding 8
    /// sequences counts 8): the forward passes each reply needed.
    pub sequence_steps: u64,
    /// Tokens handed to `llama_decode` (prompt tokens not reused, forced
    /// reply tokens, sampled tokens fed back, scoring tokens): the work.
    /// On a CPU the forward pass costs about the same per token whether
    /// it is a prompt token or a decode step, so this over the decode time
    /// is the engine's rate, and per reply it bounds the examples/s.
    pub decoded_tokens: u64,
    /// Sequences preempted (restarted later) because the KV cache was full.
    pub preemptions: u64,
    /// Wall time inside `llama_decode` (the model's forward passes).
    pub decode_time: Duration,
    /// Wall time choosing tokens (grammar masks and sampling).
    pub sample_time: Duration,
}

/// The loaded engine; cheap to share behind an `Arc`.
pub struct EmbeddedLm {
    model: String,
    info: EngineInfo,
    jobs: mpsc::Sender<engine::Command>,
}

/// Write the default model (Q8_0) from the file `scripts/setup.sh` fetched
/// (Q4_1), once per machine: see `lm::resolve::DEFAULT_MODEL_FILE` for why.
/// Said on stderr, since the first run takes a few seconds longer for it.
/// Does nothing when `dst` exists.
pub fn derive_default_model(dst: &Path) -> Result<(), LmError> {
    if dst.is_file() {
        return Ok(());
    }
    let src = crate::lm::resolve::fetched_model_path();
    if !src.is_file() {
        return Err(LmError::Fatal(format!(
            "embedded model not found at {} (nor {}, which it is made from): run `bash scripts/setup.sh` or set LMC_MODEL",
            dst.display(),
            src.display()
        )));
    }
    let started = Instant::now();
    eprintln!(
        "lmc: writing the default model {} from {} (once per machine) ...",
        dst.display(),
        src.display()
    );
    match quantize::ensure_copy(&src, dst, quantize::WeightType::Q8_0, physical_cores()) {
        Ok(wrote) => {
            if wrote {
                eprintln!(
                    "lmc: default model ready in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
        Err(e) => Err(LmError::Fatal(format!(
            "{e}\n  = hint: the default model is written to {} the first time it is needed; make that directory writable, or set LMC_MODEL={} to run the fetched file as it is",
            dst.parent().map(|p| p.display().to_string()).unwrap_or_default(),
            src.display()
        ))),
    }
}

impl EmbeddedLm {
    /// Load the GGUF and start the engine thread. A missing model file is a
    /// fatal error that says how to get one.
    pub fn load(cfg: EmbeddedConfig) -> Result<EmbeddedLm, LmError> {
        EmbeddedLm::load_tuned(cfg, Tuning::from_env())
    }

    /// [`EmbeddedLm::load`] with explicit [`Tuning`] (benches compare them).
    pub fn load_tuned(cfg: EmbeddedConfig, tuning: Tuning) -> Result<EmbeddedLm, LmError> {
        if cfg.model_path == crate::lm::resolve::default_model_path() {
            derive_default_model(&cfg.model_path)?;
        }
        if !cfg.model_path.is_file() {
            return Err(LmError::Fatal(format!(
                "embedded model not found at {}: run `bash scripts/setup.sh` or set LMC_MODEL",
                cfg.model_path.display()
            )));
        }
        let stem = cfg
            .model_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| cfg.model_path.display().to_string());
        // The name carries the weights' content hash: it is part of every
        // cache key, so other weights under the same file name never replay
        // this model's answers.
        let hash = super::model_hash::content_hash(&cfg.model_path).map_err(|e| {
            LmError::Fatal(format!(
                "cannot read embedded model {}: {e}",
                cfg.model_path.display()
            ))
        })?;
        let model = format!("{stem}@{}", &hash[..12]);
        let settings = engine::Settings {
            model_path: cfg.model_path.clone(),
            threads: cfg
                .threads
                .filter(|&t| t > 0)
                .unwrap_or_else(physical_cores),
            context: cfg.context.filter(|&c| c >= 64).unwrap_or(DEFAULT_CONTEXT),
            max_batch: cfg
                .max_batch
                .filter(|&b| b > 0)
                .unwrap_or(DEFAULT_MAX_BATCH)
                .min(engine::MAX_SEQUENCES),
            tuning,
        };
        let started = Instant::now();
        let jobs = engine::spawn(settings.clone())?;
        Ok(EmbeddedLm {
            model,
            info: EngineInfo {
                threads: settings.threads,
                context: settings.context,
                max_batch: settings.max_batch,
                load_time: started.elapsed(),
            },
            jobs,
        })
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// A snapshot of the engine's counters.
    pub async fn stats(&self) -> Result<EngineStats, LmError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(engine::Command::Stats(tx))
            .map_err(|_| engine_gone())?;
        rx.await.map_err(|_| engine_gone())
    }
}

/// llama.cpp's process-wide backend (initialised once), for code that
/// drives llama.cpp directly next to the engine, such as the bench's
/// reference loop.
pub fn llama_backend() -> Result<&'static llama_cpp_2::llama_backend::LlamaBackend, LmError> {
    engine::backend()
}

fn engine_gone() -> LmError {
    LmError::Fatal("the embedded engine thread stopped".into())
}

#[async_trait::async_trait]
impl Lm for EmbeddedLm {
    // Nothing recorded here, so nothing to flag (the trait makes
    // every implementation say so: a wrapper must pass it down).
    fn mark_unusable(&self, _req: &crate::lm::LmRequest) {}
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
        let started = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(engine::Command::Complete(Box::new(engine::Job {
                request: req.clone(),
                reply: tx,
            })))
            .map_err(|_| engine_gone())?;
        let (text, usage, choices) = rx.await.map_err(|_| engine_gone())??;
        Ok(LmResponse {
            text,
            usage,
            cache_hit: false,
            latency: started.elapsed(),
            retries: 0,
            cost: 0.0,
            choices,
        })
    }

    fn model(&self) -> String {
        self.model.clone()
    }

    fn supports_grammar(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_model_says_how_to_get_one() {
        let err = EmbeddedLm::load(EmbeddedConfig {
            model_path: PathBuf::from("/nonexistent/model.gguf"),
            ..EmbeddedConfig::default()
        })
        .err()
        .expect("a missing model must fail");
        let msg = err.to_string();
        assert!(matches!(err, LmError::Fatal(_)), "{msg}");
        assert!(msg.contains("bash scripts/setup.sh"), "{msg}");
        assert!(msg.contains("LMC_MODEL"), "{msg}");
    }

    #[test]
    fn physical_cores_is_positive() {
        assert!(physical_cores() >= 1);
    }
}
