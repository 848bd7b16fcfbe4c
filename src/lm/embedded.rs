//! The embedded engine: a GGUF instruct model run in-process on the CPU
//! through llama.cpp (`llama-cpp-2`), so lmc works offline with no server.
//! (Contract first; the engine lands in the next commits.)

use std::path::PathBuf;

use crate::lm::{Lm, LmError, LmRequest, LmResponse};

/// The default model's file name inside `$LMC_HOME/models`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

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
            model_path: default_model_path(),
            threads: None,
            context: None,
            max_batch: None,
        }
    }
}

/// `LMC_MODEL`, else `$LMC_HOME` (or `~/.cache/lmc`) + `models/<default>`.
pub fn default_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LMC_MODEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("LMC_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".cache/lmc")
        });
    home.join("models").join(DEFAULT_MODEL_FILE)
}

/// The loaded engine; cheap to share behind an `Arc`.
pub struct EmbeddedLm {
    model: String,
}

impl EmbeddedLm {
    pub fn load(cfg: EmbeddedConfig) -> Result<EmbeddedLm, LmError> {
        if !cfg.model_path.is_file() {
            return Err(LmError::Fatal(format!(
                "embedded model not found at {}: run `bash scripts/setup.sh` or set LMC_MODEL",
                cfg.model_path.display()
            )));
        }
        Err(LmError::Fatal("embedded engine not built yet".into()))
    }
}

#[async_trait::async_trait]
impl Lm for EmbeddedLm {
    async fn complete(&self, _req: &LmRequest) -> Result<LmResponse, LmError> {
        Err(LmError::Fatal("embedded engine not built yet".into()))
    }
    fn model(&self) -> String {
        self.model.clone()
    }
    fn supports_grammar(&self) -> bool {
        true
    }
}
