//! The program file as written: serde structs, nothing resolved.
//!
//! `spec` is the first stage of the data flow (DESIGN.md): it mirrors the
//! YAML one-to-one so that lowering (`program::lower`) can check every
//! reference and type against a typed view. Every struct denies unknown
//! fields (a node keeps its kind's own keys for the kind to read); the key
//! sets below, and each node kind's keys from the registry in
//! `crate::nodes`, are what lowering walks the YAML tree against to report
//! *all* unknown keys at once with did-you-mean hints (serde alone stops at
//! the first). Keep the key sets and the structs in sync: a unit test
//! deserializes a file that uses every key.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use crate::program::LmConfig;

/// A YAML mapping kept in the order written (node order, field order),
/// with a name index: lowering looks names up once per reference, and a
/// linear scan there made loading quadratic in the number of nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<T> {
    entries: Vec<(String, T)>,
    /// Name -> position of its first entry.
    index: HashMap<String, usize>,
}

impl<T> Default for OrderedMap<T> {
    fn default() -> Self {
        OrderedMap::from_vec(Vec::new())
    }
}

impl<T> OrderedMap<T> {
    pub fn from_vec(entries: Vec<(String, T)>) -> Self {
        let mut index = HashMap::with_capacity(entries.len());
        for (i, (k, _)) in entries.iter().enumerate() {
            index.entry(k.clone()).or_insert(i);
        }
        OrderedMap { entries, index }
    }
    pub fn get(&self, key: &str) -> Option<&T> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }
    pub fn iter(&self) -> impl Iterator<Item = &(String, T)> {
        self.entries.iter()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OrderedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, T>()? {
                    out.push((k, v));
                }
                Ok(OrderedMap::from_vec(out))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(OrderedMap::default())
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// The whole program file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub lm: Option<LmConfig>,
    /// Named LMs nodes, optimizer roles and metrics can pick by name.
    #[serde(default)]
    pub lms: OrderedMap<LmConfig>,
    #[serde(default)]
    pub signatures: OrderedMap<SignatureSpec>,
    #[serde(default)]
    pub inputs: OrderedMap<FieldSpec>,
    #[serde(default)]
    pub nodes: OrderedMap<NodeSpec>,
    #[serde(default)]
    pub outputs: OrderedMap<String>,
    /// Kept as written; `metric` parses it.
    #[serde(default)]
    pub metric: Option<Value>,
    #[serde(default)]
    pub datasets: Option<DatasetsSpec>,
    #[serde(default)]
    pub tools: OrderedMap<ToolSpecIn>,
    /// `lmc compile`'s default optimizer and settings; checked by
    /// `program::compile_section`.
    #[serde(default)]
    pub compile: Option<Value>,
}

/// A signature: a named reference, a shorthand string, or written out.
/// (In `signatures:` a string is always shorthand; in a node, a string
/// containing `->` is shorthand and any other string names a signature.)
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a signature name, a shorthand string like `question -> answer`, or a mapping {instructions, inputs, outputs}"
)]
pub enum SignatureSpec {
    Text(String),
    Full(SignatureBody),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureBody {
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub inputs: OrderedMap<FieldSpec>,
    #[serde(default)]
    pub outputs: OrderedMap<FieldSpec>,
}

/// A field: a type string, or a mapping with the type and its description.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a type string like `str` or a mapping {type, description, prefix, schema, default}"
)]
pub enum FieldSpec {
    Type(String),
    Full(FieldBody),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldBody {
    /// Defaults to `str` (or `json` when `schema` is given).
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    /// A JSON Schema for `json` fields.
    #[serde(default)]
    pub schema: Option<Value>,
    /// Outputs only: the value when the reply leaves the field out.
    #[serde(default)]
    pub default: Option<Value>,
}

/// One node of the graph: the keys lowering itself reads, and the rest as
/// written. Which keys a `kind` accepts comes from the node kind registry
/// (`crate::nodes`), checked against the YAML tree before serde runs (so
/// `keys` holds only the kind's own keys); each kind deserializes `keys`
/// into its own typed struct, so a new key needs no field here.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeSpec {
    pub kind: String,
    #[serde(default)]
    pub signature: Option<SignatureSpec>,
    #[serde(default)]
    pub inputs: OrderedMap<BindingSpec>,
    /// The named LM of an LM-calling node.
    #[serde(default)]
    pub lm: Option<String>,
    /// refine / best_of_n: its `expected` binding is resolved with the others.
    #[serde(default)]
    pub reward: Option<RewardSpecIn>,
    /// The kind's own keys, as written.
    #[serde(flatten)]
    pub keys: Map<String, Value>,
}

/// Where a value comes from: `input.NAME`, `NODE.FIELD`, or a literal.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a binding: `input.NAME`, `NODE.FIELD`, or {value: <literal>}"
)]
pub enum BindingSpec {
    Ref(String),
    Literal(LiteralSpec),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiteralSpec {
    pub value: Value,
}

/// The reward of a refine / best_of_n node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSpecIn {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub metric: Option<Value>,
    #[serde(default)]
    pub expected: Option<BindingSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetsSpec {
    #[serde(default)]
    pub train: Option<String>,
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(default)]
    pub test: Option<String>,
    #[serde(default)]
    pub columns: OrderedMap<String>,
}

/// A tool as written: its kind plus kind-specific settings.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolSpecIn {
    pub kind: String,
    #[serde(flatten)]
    pub config: Map<String, Value>,
}

// ---- key sets (walked by lowering for all-at-once unknown-key errors) ----

pub const PROGRAM_KEYS: &[&str] = &[
    "name",
    "description",
    "lm",
    "lms",
    "signatures",
    "inputs",
    "nodes",
    "outputs",
    "metric",
    "datasets",
    "tools",
    "compile",
];
pub const SIGNATURE_KEYS: &[&str] = &["instructions", "inputs", "outputs"];
pub const FIELD_KEYS: &[&str] = &["type", "description", "prefix", "schema", "default"];
pub const LITERAL_KEYS: &[&str] = &["value"];
pub const REWARD_KEYS: &[&str] = &["type", "field", "tool", "metric", "expected"];
pub const REWARD_TYPES: &[&str] = &["non_empty", "tool_ok", "metric"];
pub const DATASETS_KEYS: &[&str] = &["train", "dev", "test", "columns"];

/// Node kinds, their keys and the keys every kind accepts come from the
/// node kind registry (`crate::nodes`), one entry per kind.
pub use crate::nodes::{ALL_KEYS as ALL_NODE_KEYS, NAMES as NODE_KINDS};

/// The keys a node of `kind` accepts (`None` for an unknown kind).
pub fn node_keys(kind: &str) -> Option<Vec<&'static str>> {
    crate::nodes::info(kind).map(|k| k.all_keys())
}

pub const TOOL_KINDS: &[&str] = &["sqlite", "retrieve", "command"];

/// The keys a tool of `kind` accepts (`None` for an unknown kind).
pub fn tool_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "sqlite" => &[
            "kind",
            "description",
            "path",
            "max_rows",
            "timeout_ms",
            "max_chars",
            "max_value_bytes",
        ],
        "retrieve" => &["kind", "description", "corpus", "k", "max_chars"],
        "command" => &[
            "kind",
            "description",
            "command",
            "args",
            "enabled",
            "cwd",
            "timeout_ms",
            "max_chars",
        ],
        _ => return None,
    })
}

/// Tool settings that are file paths (resolved against the program file).
pub const TOOL_PATH_KEYS: &[&str] = &["path", "corpus", "cwd"];

/// sqlite operations a `tool` node may name.
pub const SQLITE_OPERATIONS: &[&str] = &["list_tables", "describe", "query"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_key_deserializes() {
        let v = serde_json::json!({
            "name": "x", "description": "d", "lm": {"max_tokens": 3}, "lms": {"small": {"model": "m"}},
            "signatures": {"s": {"instructions": "i", "inputs": {"a": {"type": "str", "description": "d", "prefix": "p", "schema": {}}}, "outputs": {"b": {"type": "int", "default": 0}}},
                           "t": "a -> b"},
            "inputs": {"a": "str"},
            "nodes": {"n": {"kind": "refine", "signature": "s", "inputs": {"a": "input.a", "z": {"value": 1}},
                            "tools": [], "max_iters": 1, "tool": "t", "k": 1, "operation": "query",
                            "chain_of_thought": true, "n": 2, "threshold": 0.5, "over": "a", "lm": "small",
                            "reward": {"type": "metric", "field": "b", "tool": "t", "metric": {}, "expected": "input.a"}}},
            "outputs": {"b": "n.b"},
            "metric": {"type": "exact_match"},
            "datasets": {"train": "a", "dev": "b", "test": "c", "columns": {"x": "y"}},
            "tools": {"t": {"kind": "sqlite", "path": "p"}},
            "compile": {"optimizer": "mipro", "settings": {"num_trials": 8}}
        });
        for k in PROGRAM_KEYS {
            assert!(v.get(k).is_some(), "{k}");
        }
        for k in ALL_NODE_KEYS.iter() {
            assert!(v["nodes"]["n"].get(k).is_some(), "{k}");
        }
        let spec: ProgramSpec = serde_json::from_value(v).unwrap();
        assert_eq!(spec.nodes.iter().next().unwrap().1.inputs.iter().count(), 2);
        assert!(matches!(
            spec.signatures.get("t"),
            Some(SignatureSpec::Text(_))
        ));
    }
}
