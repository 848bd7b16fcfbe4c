//! Tools a program can call: `sqlite` (read-only), `retrieve` (BM25 over a
//! local corpus) and `command` (an external program, opt-in).
//!
//! A [`Toolbox`] is opened once per run context from the program's `tools:`
//! section and shared (behind an `Arc`) by every concurrent run. Opening is
//! where configuration mistakes surface (missing database, unreadable corpus,
//! a command tool that was not explicitly enabled) as a typed [`ToolError`];
//! once open, a call never fails the run: whatever goes wrong (bad SQL, a
//! write attempt, a timeout, a crashing command) comes back as an
//! observation with `is_error` set, because a ReAct agent or a refine loop
//! must see the error to recover from it. The constraints the essay's god
//! prompt begged for (never write, limit rows, don't hang) are enforced here
//! in code, not asked for in a prompt.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::program::{Program, ToolSpec};

pub mod command;
pub mod retrieve;
pub mod sqlite;

/// A tool could not be opened (configuration or environment problem).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("tool `{tool}`: unknown kind `{kind}` (expected `sqlite`, `retrieve` or `command`)")]
    UnknownKind { tool: String, kind: String },
    #[error("tool `{tool}`: {message}")]
    Config { tool: String, message: String },
    #[error("tool `{tool}`: cannot open {path}: {message}")]
    Open {
        tool: String,
        path: PathBuf,
        message: String,
    },
    #[error("tool `{tool}` is a command tool and is disabled; add `enabled: true` to its entry under `tools:` to allow lmc to run `{command}`")]
    CommandDisabled { tool: String, command: String },
}

/// What a tool call returned: text for the model (or the next node) and
/// whether it reports an error.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub observation: String,
    pub is_error: bool,
}

impl ToolOutcome {
    pub fn ok(observation: impl Into<String>) -> Self {
        ToolOutcome {
            observation: observation.into(),
            is_error: false,
        }
    }

    pub fn error(observation: impl Into<String>) -> Self {
        ToolOutcome {
            observation: observation.into(),
            is_error: true,
        }
    }
}

/// How ReAct presents one tool to the model (DSPy's tool list entry).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDescription {
    pub name: String,
    pub description: String,
    /// JSON Schema of the argument object.
    pub args: Value,
}

enum Tool {
    Sqlite(sqlite::SqliteTool),
    Retrieve(retrieve::RetrieveTool),
    Command(command::CommandTool),
}

/// The opened tools of one program, by name.
#[derive(Default)]
pub struct Toolbox {
    tools: BTreeMap<String, Tool>,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolbox")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Toolbox {
    /// Open every tool the program declares, once.
    pub fn open(program: &Program) -> Result<Toolbox, ToolError> {
        Self::open_specs(&program.tools)
    }

    /// Open the given tool specs (paths in `config` already absolute).
    pub fn open_specs(specs: &[ToolSpec]) -> Result<Toolbox, ToolError> {
        let mut tools = BTreeMap::new();
        for spec in specs {
            let tool = match spec.kind.as_str() {
                "sqlite" => Tool::Sqlite(sqlite::SqliteTool::open(spec)?),
                "retrieve" => Tool::Retrieve(retrieve::RetrieveTool::open(spec)?),
                "command" => Tool::Command(command::CommandTool::open(spec)?),
                other => {
                    return Err(ToolError::UnknownKind {
                        tool: spec.name.clone(),
                        kind: other.to_string(),
                    })
                }
            };
            tools.insert(spec.name.clone(), tool);
        }
        Ok(Toolbox { tools })
    }

    pub fn names(&self) -> Vec<String> {
        self.tools.keys().cloned().collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// The kind (`sqlite`, `retrieve`, `command`) of a tool, if it exists.
    pub fn kind(&self, name: &str) -> Option<&'static str> {
        self.tools.get(name).map(|t| match t {
            Tool::Sqlite(_) => "sqlite",
            Tool::Retrieve(_) => "retrieve",
            Tool::Command(_) => "command",
        })
    }

    /// Call a tool with a JSON argument object. Never fails: problems are
    /// error observations.
    pub async fn call(&self, name: &str, args: &Value) -> ToolOutcome {
        match self.tools.get(name) {
            None => ToolOutcome::error(format!(
                "unknown tool `{name}`; available tools: {}",
                self.names().join(", ")
            )),
            Some(Tool::Sqlite(t)) => t.call(args).await,
            Some(Tool::Retrieve(t)) => t.call(args),
            Some(Tool::Command(t)) => t.call(args).await,
        }
    }

    /// Top-k passages from a `retrieve` tool (the retrieve node's typed path).
    pub fn retrieve(
        &self,
        name: &str,
        query: &str,
        k: Option<usize>,
    ) -> Result<Vec<String>, String> {
        match self.tools.get(name) {
            Some(Tool::Retrieve(t)) => Ok(t.search(query, k.unwrap_or(t.k()))),
            Some(_) => Err(format!("tool `{name}` is not a retrieve tool")),
            None => Err(format!("unknown tool `{name}`")),
        }
    }

    /// The default k of a retrieve tool.
    pub fn retrieve_k(&self, name: &str) -> Option<usize> {
        match self.tools.get(name) {
            Some(Tool::Retrieve(t)) => Some(t.k()),
            _ => None,
        }
    }

    /// Descriptions of the named tools, in the given order (unknown names skipped).
    pub fn describe(&self, names: &[String]) -> Vec<ToolDescription> {
        names
            .iter()
            .filter_map(|n| {
                let t = self.tools.get(n)?;
                let (description, args) = match t {
                    Tool::Sqlite(t) => (t.description(), sqlite::args_schema()),
                    Tool::Retrieve(t) => (t.description(), retrieve::args_schema()),
                    Tool::Command(t) => (t.description(), t.args_schema()),
                };
                Some(ToolDescription {
                    name: n.clone(),
                    description,
                    args,
                })
            })
            .collect()
    }
}

/// A config value as a string.
pub(crate) fn cfg_str(spec: &ToolSpec, key: &str) -> Option<String> {
    spec.config
        .get(key)
        .and_then(|v| v.as_str())
        .map(String::from)
}

/// A config value as a positive integer, with a default; a value of the
/// wrong type is a config error rather than silently ignored.
pub(crate) fn cfg_u64(spec: &ToolSpec, key: &str, default: u64) -> Result<u64, ToolError> {
    match spec.config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().ok_or_else(|| ToolError::Config {
            tool: spec.name.clone(),
            message: format!("`{key}` must be a non-negative integer, got {v}"),
        }),
    }
}

pub(crate) fn cfg_path(spec: &ToolSpec, key: &str) -> Result<PathBuf, ToolError> {
    cfg_str(spec, key)
        .map(PathBuf::from)
        .ok_or_else(|| ToolError::Config {
            tool: spec.name.clone(),
            message: format!("missing `{key}` (a file path)"),
        })
}

/// An argument as text: strings as is, lists joined, other JSON compactly.
pub(crate) fn arg_text(args: &Value, key: &str) -> Option<String> {
    match args.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Wrap a non-object argument (a bare string from a small model) into the
/// object form under `key`.
pub(crate) fn normalize_args(args: &Value, key: &str) -> Value {
    match args {
        Value::Object(_) => args.clone(),
        Value::Null => json!({}),
        Value::String(s) => {
            // A JSON object serialized as a string is common from small models.
            match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => v,
                _ => json!({ key: s }),
            }
        }
        other => json!({ key: other }),
    }
}
