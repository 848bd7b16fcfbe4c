//! The lowered program: a validated graph of named nodes over typed signatures.
//!
//! `spec` holds the YAML as written; lowering (`lower`) turns it into this
//! immutable [`Program`], reporting every semantic error at once. Everything
//! downstream (rendering, running, evaluating, optimizing) reads a `Program`
//! and never mutates it: optimizers change behaviour through an
//! [`crate::overlay::Overlay`] keyed by predictor path.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::signature::{Field, Signature};

/// Where a node input (or a program output) takes its value from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// `input.NAME` (or the bare name of a program input).
    ProgramInput(String),
    /// `NODE.FIELD`: an output field of an earlier node.
    NodeOutput { node: String, field: String },
    /// A constant written in the program file.
    Literal(Value),
}

/// LM configuration as written in a program or project file. Secrets are
/// never stored: `api_key_env` names an environment variable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmConfig {
    /// `embedded` (default) or `openai` (any OpenAI-compatible server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Model name (HTTP) or path to a GGUF file (embedded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// One or more base URLs (load-balanced), e.g. `http://localhost:8000/v1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// `chat` (default) or `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
    /// USD per million prompt tokens / completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_prompt_per_mtok: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_completion_per_mtok: Option<f64>,
    /// Embedded engine threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Embedded engine context size in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<u32>,
    /// How enum outputs are decided: `sample` (default), `likelihood` or
    /// `calibrated` (embedded engine; see docs/embedded.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<crate::lm::choice::ChoiceMode>,
}

/// The datasets a program names, so `lmc eval`/`lmc compile` need no flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetsConfig {
    /// Paths resolved relative to the program file.
    pub train: Option<PathBuf>,
    pub dev: Option<PathBuf>,
    pub test: Option<PathBuf>,
    /// Dataset column -> program field (input or expected output).
    pub columns: BTreeMap<String, String>,
}

/// One tool a program makes available (sqlite, retrieve, command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    /// `sqlite`, `retrieve` or `command`.
    pub kind: String,
    /// Kind-specific settings as written (paths already resolved to absolute).
    pub config: BTreeMap<String, Value>,
}

/// What a node does: its kind's typed node (see `crate::nodes`).
pub use crate::nodes::NodeKind;

/// How refine/best_of_n scores an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RewardSpec {
    /// An output field must parse and be non-empty.
    NonEmpty { field: String },
    /// Run a tool on an output field; reward 1 when the tool reports no error.
    ToolOk { tool: String, field: String },
    /// A metric spec against a bound expected value.
    Metric {
        metric: Value,
        field: String,
        expected: Binding,
    },
}

/// A named node of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    /// Input name -> where its value comes from. Ordered as written.
    pub inputs: Vec<(String, Binding)>,
    /// The fields this node produces (for predictors: the signature outputs,
    /// with `reasoning` first for chain of thought).
    pub outputs: Vec<Field>,
    /// The named LM (a key of `lms:`) the node's predictors call; `None`
    /// is the default `lm:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lm: Option<String>,
}

/// A predictor of the program: one parameter slot optimizers can change.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictorRef {
    /// Stable path, e.g. `classify` or `agent.react`.
    pub path: String,
    pub node: String,
    /// The signature as rendered (chain of thought already has `reasoning`).
    pub signature: Signature,
}

/// A validated, immutable program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// sha256 (hex) of the program file's bytes.
    pub content_hash: String,
    /// The file it was loaded from (absent for a program embedded in an artifact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<PathBuf>,
    /// The source text, so an artifact can carry the program standalone.
    #[serde(default)]
    pub source: String,
    pub inputs: Vec<Field>,
    /// Program output name -> binding (always a node output).
    pub outputs: Vec<(String, Binding)>,
    /// Program output fields with their types (as produced by bound nodes).
    pub output_fields: Vec<Field>,
    /// Nodes in a topological order (every node after its dependencies).
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub lm: Option<LmConfig>,
    /// Named LMs (`lms:`), each a full LM config, picked by nodes
    /// (`lm: NAME`), optimizer roles and LM-calling metrics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lms: BTreeMap<String, LmConfig>,
    /// The metric spec as written (parsed by `metric`).
    #[serde(default)]
    pub metric: Option<Value>,
    #[serde(default)]
    pub datasets: DatasetsConfig,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// `lmc compile`'s default optimizer and settings (`compile:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile: Option<CompileConfig>,
}

impl Program {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every predictor, in graph order, with its stable path (each node
    /// kind says which predictors it owns).
    pub fn predictors(&self) -> Vec<PredictorRef> {
        self.nodes
            .iter()
            .flat_map(|node| {
                node.kind
                    .predictors(&node.name)
                    .into_iter()
                    .map(|p| PredictorRef {
                        path: p.path,
                        node: node.name.clone(),
                        signature: p.signature,
                    })
            })
            .collect()
    }

    pub fn predictor(&self, path: &str) -> Option<PredictorRef> {
        self.predictors().into_iter().find(|p| p.path == path)
    }
}

pub mod compile_section;
pub mod load;
pub mod lower;
pub mod multichain;
pub mod react;
pub mod shorthand;

pub use compile_section::CompileConfig;
pub use load::{load, load_str};
