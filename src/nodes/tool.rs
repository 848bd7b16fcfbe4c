//! `tool`: call a tool directly with the node's bound inputs as arguments
//! (no LM). Outputs `result` (the observation) and `ok`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{Expects, KeyDoc, Kind, KindInfo, Lowered, NodeRun, INPUTS};
use crate::program::lower::NodeLowering;
use crate::run::RunError;
use crate::signature::{Field, FieldType};
use crate::spec::SQLITE_OPERATIONS;
use crate::trace::Trace;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub tool: String,
    pub operation: Option<String>,
}

pub const INFO: KindInfo = KindInfo {
    name: "tool",
    summary:
        "Call a tool with the bound inputs as arguments; outputs `result` and `ok` (no LM call).",
    calls_lm: false,
    keys: &[
        KeyDoc {
            key: "tool",
            required: true,
            schema: || json!({"type": "string", "description": "The tool called."}),
        },
        KeyDoc {
            key: "operation",
            required: false,
            schema: || json!({"type": "string", "description": "The operation (sqlite: list_tables | describe | query)."}),
        },
        INPUTS,
    ],
    lower,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    tool: Option<String>,
    operation: Option<String>,
}

fn lower(nl: &mut NodeLowering<'_, '_>) -> Option<Lowered> {
    let keys: Keys = nl.keys()?;
    let Some(tool) = keys.tool else {
        let p = nl.path.to_string();
        nl.err_key(&p, "a `tool` node needs `tool` (the name of a tool)", None);
        return None;
    };
    let t = nl.tool_ref(&tool, &nl.at("tool"), None)?;
    if let Some(op) = &keys.operation {
        if t.kind == "sqlite" && !SQLITE_OPERATIONS.contains(&op.as_str()) {
            let hint = NodeLowering::suggest(
                op,
                SQLITE_OPERATIONS.iter().copied(),
                format!(
                    "sqlite operations are {}",
                    NodeLowering::list(SQLITE_OPERATIONS)
                ),
            );
            nl.err(
                &nl.at("operation"),
                format!("unknown sqlite operation `{op}`"),
                Some(hint),
            );
            return None;
        }
        // The SQL tool's operations need their argument bound.
        let need: &[&str] = match (t.kind.as_str(), op.as_str()) {
            ("sqlite", "query") => &["sql", "query"],
            ("sqlite", "describe") => &["table", "tables", "table_name"],
            _ => &[],
        };
        if !need.is_empty() && !need.iter().any(|k| nl.spec.inputs.get(k).is_some()) {
            let p = nl.path.to_string();
            nl.err_key(
                &p,
                format!("the `{op}` operation needs an input `{}`", need[0]),
                Some(format!(
                    "bind it under `inputs:`, e.g. `{}: NODE.FIELD`",
                    need[0]
                )),
            );
            return None;
        }
    }
    Some(Lowered::new(
        Tool {
            tool,
            operation: keys.operation,
        },
        vec![
            Field::new("result", FieldType::String),
            Field::new("ok", FieldType::Bool),
        ],
        Expects::FreeForm,
    ))
}

impl Kind for Tool {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }
    async fn run(
        &self,
        cx: &NodeRun<'_>,
        inputs: Map<String, Value>,
        trace: &mut Trace,
    ) -> Result<Map<String, Value>, RunError> {
        crate::run::tool::run_tool(
            cx.ctx,
            cx.name,
            &self.tool,
            self.operation.as_deref(),
            inputs,
            trace,
        )
        .await
    }
}
