//! (under construction: tool and retrieve nodes)
use crate::program::{Node, Program};
use crate::run::{RunContext, RunError};
use crate::trace::Trace;
use serde_json::{Map, Value};

pub async fn run_tool_node(
    _ctx: &RunContext,
    _program: &Program,
    node: &Node,
    _inputs: Map<String, Value>,
    _trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    Err(RunError::Node {
        node: node.name.clone(),
        message: "tool nodes are not available in this build".into(),
    })
}
