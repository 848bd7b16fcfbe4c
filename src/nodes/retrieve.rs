//! `retrieve`: the top `k` passages for a `query` from a `retrieve` tool
//! (BM25 over a JSONL corpus), without an LM call. Outputs `passages`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{Expects, KeyDoc, Kind, KindInfo, Lowered, NodeRun, INPUTS};
use crate::program::lower::NodeLowering;
use crate::run::RunError;
use crate::signature::{Field, FieldType};
use crate::trace::Trace;

/// Passages returned when neither the node nor the tool sets `k`.
pub const DEFAULT_K: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieve {
    pub tool: String,
    pub k: usize,
}

pub const INFO: KindInfo = KindInfo {
    name: "retrieve",
    summary: "The top `k` passages for the bound `query` from a `retrieve` tool; outputs `passages` (no LM call).",
    calls_lm: false,
    keys: &[
        KeyDoc {
            key: "tool",
            required: true,
            schema: || json!({"type": "string", "description": "The `retrieve` tool used."}),
        },
        KeyDoc {
            key: "k",
            required: false,
            schema: || json!({"type": "integer", "minimum": 1, "description": format!("Passages returned (default: the tool's k, else {DEFAULT_K}).")}),
        },
        INPUTS,
    ],
    lower,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    tool: Option<String>,
    k: Option<usize>,
}

fn lower(nl: &mut NodeLowering<'_, '_>) -> Option<Lowered> {
    let keys: Keys = nl.keys()?;
    let Some(tool) = keys.tool else {
        let p = nl.path.to_string();
        nl.err_key(
            &p,
            "a `retrieve` node needs `tool` (a `retrieve` tool)",
            Some("e.g. `tool: wiki` with `wiki: {kind: retrieve, corpus: corpus.jsonl}` under `tools:`".into()),
        );
        return None;
    };
    let t = nl.tool_ref(&tool, &nl.at("tool"), Some("retrieve"))?;
    let k = match keys.k {
        Some(0) => {
            nl.err(&nl.at("k"), "`k` must be at least 1", None);
            return None;
        }
        Some(k) => k,
        None => t
            .config
            .get("k")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_K, |k| k as usize),
    };
    Some(Lowered::new(
        Retrieve { tool, k },
        vec![Field::new(
            "passages",
            FieldType::List {
                item: Box::new(FieldType::String),
            },
        )],
        Expects::Fields(vec![Field::new("query", FieldType::String)]),
    ))
}

impl Kind for Retrieve {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }
    async fn run(
        &self,
        cx: &NodeRun<'_>,
        inputs: Map<String, Value>,
        trace: &mut Trace,
    ) -> Result<Map<String, Value>, RunError> {
        crate::run::tool::run_retrieve(cx.ctx, cx.name, &self.tool, self.k, inputs, trace)
    }
}
