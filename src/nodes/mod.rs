//! Node kinds, each registered once.
//!
//! A node kind is one file under `src/nodes/`: a typed node (what lowering
//! produces and the runner receives), a [`KindInfo`] per YAML name (its keys
//! with their schemas, defaults and descriptions, whether it calls an LM, and
//! its lowering), and a [`Kind`] implementation (its predictors with their
//! DSPy names, its LM-call count, its runner). The [`registry!`] list at the
//! bottom of this file is the only other place a kind is named: it builds
//! [`NodeKind`] (the closed enum the lowered program stores) and [`REGISTRY`]
//! (what spec key checks, `lmc schema`, `inspect`, `export`, cost
//! projections and `run` derive from). Before this, a kind was spelled out
//! in ten files and only some of those edits were enforced by the compiler.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::LazyLock;

use crate::overlay::Overlay;
use crate::program::lower::NodeLowering;
use crate::program::Program;
use crate::run::{RunContext, RunError};
use crate::signature::{Field, Signature};
use crate::trace::Trace;

pub mod majority;
pub mod map;
pub mod multichain;
pub mod predict;
pub mod react;
pub mod refine;
pub mod retrieve;
pub mod tool;

/// One key a node kind accepts, with its JSON Schema (type, default,
/// description) for `lmc schema` and the docs.
pub struct KeyDoc {
    pub key: &'static str,
    pub required: bool,
    /// The key's JSON Schema; its `description` and `default` are what
    /// `lmc schema` and docs/program-format.md show.
    pub schema: fn() -> Value,
}

/// A node kind as the YAML names it.
pub struct KindInfo {
    /// The value of `kind:`.
    pub name: &'static str,
    /// One sentence for `lmc schema` and the docs.
    pub summary: &'static str,
    /// Whether the kind calls an LM (then it takes the common `lm` key).
    pub calls_lm: bool,
    /// Its keys besides `kind` (and `lm`), in the order error hints list them.
    pub keys: &'static [KeyDoc],
    /// Lower a node of this kind (its keys, signature, tools), or report
    /// why not through the lowering context and return `None`.
    pub lower: fn(&mut NodeLowering<'_, '_>) -> Option<Lowered>,
}

impl KindInfo {
    /// Every key a node of this kind accepts, `kind` first and `lm` last.
    pub fn all_keys(&self) -> Vec<&'static str> {
        let mut keys = vec!["kind"];
        keys.extend(self.keys.iter().map(|k| k.key));
        if self.calls_lm {
            keys.push(LM.key);
        }
        keys
    }

    /// The keys a node of this kind must have, `kind` first.
    pub fn required_keys(&self) -> Vec<&'static str> {
        let mut keys = vec!["kind"];
        keys.extend(self.keys.iter().filter(|k| k.required).map(|k| k.key));
        keys
    }

    fn key_docs(&self) -> impl Iterator<Item = &KeyDoc> {
        self.keys.iter().chain(self.calls_lm.then_some(&LM))
    }
}

/// What lowering a node produces.
pub struct Lowered {
    pub kind: NodeKind,
    /// The fields the node outputs, in order.
    pub outputs: Vec<Field>,
    pub expects: Expects,
    /// For nodes that iterate a list input: its name (its binding must be a list).
    pub over: Option<String>,
}

impl Lowered {
    pub fn new(kind: impl Into<NodeKind>, outputs: Vec<Field>, expects: Expects) -> Lowered {
        Lowered {
            kind: kind.into(),
            outputs,
            expects,
            over: None,
        }
    }
}

/// What a node expects as inputs: named, typed inputs (signature-based and
/// retrieve nodes), or free-form tool arguments.
pub enum Expects {
    Fields(Vec<Field>),
    FreeForm,
}

/// A predictor a node owns.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedPredictor {
    /// Stable path, e.g. `classify` or `agent.react`.
    pub path: String,
    /// The signature as rendered (chain of thought already has `reasoning`).
    pub signature: Signature,
    /// The name DSPy's saved state uses for it (`export`/`import`).
    pub dspy_name: String,
}

/// A predictor DSPy holds as a bare `Predict`: saved under its own path.
pub fn bare(path: String, signature: Signature) -> OwnedPredictor {
    OwnedPredictor {
        dspy_name: path.clone(),
        path,
        signature,
    }
}

/// A path predictor of a node that DSPy wraps in a module (ChainOfThought,
/// Refine, ...): DSPy saves it as `PATH.predict`.
pub fn wrapped(path: String, signature: Signature) -> OwnedPredictor {
    OwnedPredictor {
        dspy_name: format!("{path}.predict"),
        path,
        signature,
    }
}

/// What a runner gets besides its typed node and inputs.
pub struct NodeRun<'a> {
    pub ctx: &'a RunContext,
    pub program: &'a Program,
    pub overlay: &'a Overlay,
    /// The node's name (predictor paths and trace steps start with it).
    pub name: &'a str,
    /// The node's named LM, if it names one (selection belongs to `RunContext`).
    pub lm: Option<&'a str>,
}

/// What every typed node provides beyond its lowering.
pub trait Kind {
    /// The registry entry of this node (refine and best_of_n share a type).
    fn info(&self) -> &'static KindInfo;
    /// The predictors it owns, in order, for node `node` (none by default:
    /// a kind that calls no LM, such as a tool, says nothing).
    fn predictors(&self, _node: &str) -> Vec<OwnedPredictor> {
        Vec::new()
    }
    /// LM calls one run makes, and whether that count is exact (not an
    /// upper bound); by default none, exactly.
    fn calls_per_run(&self) -> (u64, bool) {
        (0, true)
    }
    /// Run the node on its bound inputs, recording every step in `trace`.
    #[allow(async_fn_in_trait)]
    async fn run(
        &self,
        cx: &NodeRun<'_>,
        inputs: Map<String, Value>,
        trace: &mut Trace,
    ) -> Result<Map<String, Value>, RunError>;
}

// ---- keys shared by several kinds ----

pub const SIGNATURE: KeyDoc = KeyDoc {
    key: "signature",
    required: true,
    schema: || json!({"$ref": "#/$defs/signature"}),
};
pub const INPUTS: KeyDoc = KeyDoc {
    key: "inputs",
    required: false,
    schema: || json!({"type": "object", "description": "Signature input -> binding. Unbound inputs default to the program input of the same name, else the unique earlier node output of that name.", "additionalProperties": {"$ref": "#/$defs/binding"}}),
};
/// Every LM-calling kind takes `lm` (a name under `lms:`).
pub const LM: KeyDoc = KeyDoc {
    key: "lm",
    required: false,
    schema: || json!({"type": "string", "description": "The named LM (under `lms:`) this node calls; default: the program's `lm`."}),
};
pub const CHAIN_OF_THOUGHT: KeyDoc = KeyDoc {
    key: "chain_of_thought",
    required: false,
    schema: || json!({"type": "boolean", "default": false, "description": "Add a `reasoning` output first."}),
};

/// Keys every kind that has them documents the same way.
const COMMON: &[&str] = &["signature", "inputs", "lm"];

// ---- derived views ----

/// The entry for `kind:` NAME.
pub fn info(name: &str) -> Option<&'static KindInfo> {
    REGISTRY.iter().copied().find(|k| k.name == name)
}

/// Every kind name, in registry order.
pub static NAMES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| REGISTRY.iter().map(|k| k.name).collect());

/// Every key any kind accepts (checked for nodes whose kind is unknown).
pub static ALL_KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut out: Vec<&'static str> = Vec::new();
    for k in REGISTRY {
        for key in k.all_keys() {
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }
    out
});

/// Kinds that document a key with the same schema.
type KindsWithSchema = (Vec<&'static str>, Value);

/// The JSON Schema of a node: all keys documented (per key, which kinds
/// take it), then one `if kind … then` per kind with its exact keys,
/// defaults and required keys.
pub fn node_schema() -> Value {
    // key -> [(kinds, schema)] grouping kinds whose schema is identical.
    let mut by_key: Vec<(&str, Vec<KindsWithSchema>)> = Vec::new();
    for k in REGISTRY {
        for d in k.key_docs() {
            let schema = (d.schema)();
            let pos = match by_key.iter().position(|(key, _)| *key == d.key) {
                Some(p) => p,
                None => {
                    by_key.push((d.key, Vec::new()));
                    by_key.len() - 1
                }
            };
            let groups = &mut by_key[pos].1;
            match groups.iter_mut().find(|(_, s)| *s == schema) {
                Some((kinds, _)) => kinds.push(k.name),
                None => groups.push((vec![k.name], schema)),
            }
        }
    }
    let mut props = Map::new();
    props.insert(
        "kind".into(),
        json!({"enum": *NAMES, "description": NAMES.join(" | ") + "."}),
    );
    for (key, groups) in by_key {
        let mut merged = groups[0].1.clone();
        if let Some(obj) = merged.as_object_mut() {
            if groups.len() > 1 {
                obj.remove("default");
            }
            let text: Vec<String> = groups
                .iter()
                .filter_map(|(kinds, s)| {
                    let d = s.get("description")?.as_str()?;
                    Some(if COMMON.contains(&key) {
                        d.to_string()
                    } else {
                        // "react: maximum tool-calling steps"
                        let mut c = d.trim_end_matches('.').chars();
                        let first = c.next().map(|f| f.to_lowercase().to_string());
                        format!(
                            "{}: {}{}",
                            kinds.join(" / "),
                            first.unwrap_or_default(),
                            c.as_str()
                        )
                    })
                })
                .collect();
            if !text.is_empty() {
                let mut joined = text.join("; ");
                if !COMMON.contains(&key) {
                    joined.push('.');
                }
                obj.insert("description".into(), Value::String(joined));
            }
        }
        props.insert(key.to_string(), merged);
    }
    let variants: Vec<Value> = REGISTRY
        .iter()
        .map(|k| {
            let mut p = Map::new();
            p.insert("kind".into(), json!({"const": k.name}));
            for d in k.key_docs() {
                p.insert(d.key.to_string(), (d.schema)());
            }
            json!({
                "if": {"properties": {"kind": {"const": k.name}}, "required": ["kind"]},
                "then": {"description": k.summary, "properties": p, "required": k.required_keys(), "additionalProperties": false}
            })
        })
        .collect();
    json!({
        "type": "object",
        "description": "A node of the graph.",
        "required": ["kind"],
        "properties": props,
        "allOf": variants
    })
}

/// The Markdown table of node kinds and their keys (docs/program-format.md
/// carries it; `lmc schema --kinds` prints it, a test keeps them equal).
pub fn kinds_markdown() -> String {
    let mut out = String::from(
        "| kind | LM | keys (required in bold; default) | what it does |\n|---|---|---|---|\n",
    );
    for k in REGISTRY {
        let keys: Vec<String> = k
            .key_docs()
            .map(|d| {
                let s = (d.schema)();
                let name = if d.required {
                    format!("**`{}`**", d.key)
                } else {
                    format!("`{}`", d.key)
                };
                match s.get("default") {
                    Some(v) => format!("{name} ({v})"),
                    None => name,
                }
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            k.name,
            if k.calls_lm { "yes" } else { "no" },
            keys.join(", "),
            k.summary
        ));
    }
    out
}

/// The registry: one line per typed node, with the YAML names it lowers
/// from. It generates [`NodeKind`] and the dispatch to each [`Kind`].
macro_rules! registry {
    ($( $variant:ident($ty:ty) => [$($info:expr),+ $(,)?] ),* $(,)?) => {
        /// What a node does: its kind's typed node.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum NodeKind {
            $( $variant($ty), )*
        }

        /// Every kind, in the order `lmc schema` and the docs list them.
        pub static REGISTRY: &[&KindInfo] = &[ $( $( &$info, )+ )* ];

        $( impl From<$ty> for NodeKind {
            fn from(k: $ty) -> NodeKind { NodeKind::$variant(k) }
        } )*

        impl NodeKind {
            pub fn info(&self) -> &'static KindInfo {
                match self { $( NodeKind::$variant(k) => k.info(), )* }
            }
            pub fn predictors(&self, node: &str) -> Vec<OwnedPredictor> {
                match self { $( NodeKind::$variant(k) => k.predictors(node), )* }
            }
            pub fn calls_per_run(&self) -> (u64, bool) {
                match self { $( NodeKind::$variant(k) => k.calls_per_run(), )* }
            }
            pub async fn run(
                &self,
                cx: &NodeRun<'_>,
                inputs: Map<String, Value>,
                trace: &mut Trace,
            ) -> Result<Map<String, Value>, RunError> {
                match self { $( NodeKind::$variant(k) => k.run(cx, inputs, trace).await, )* }
            }
        }
    };
}

registry! {
    Predict(predict::Predict) => [predict::PREDICT],
    ChainOfThought(predict::ChainOfThought) => [predict::CHAIN_OF_THOUGHT_KIND],
    React(react::React) => [react::INFO],
    Retrieve(retrieve::Retrieve) => [retrieve::INFO],
    Tool(tool::Tool) => [tool::INFO],
    Refine(refine::Refine) => [refine::REFINE, refine::BEST_OF_N],
    Map(map::Map) => [map::INFO],
    MultiChainComparison(multichain::MultiChainComparison) => [multichain::INFO],
    Majority(majority::Majority) => [majority::INFO],
}
