//! (under construction: the react module kind)
use crate::overlay::Overlay;
use crate::program::{Node, Program};
use crate::run::{RunContext, RunError};
use crate::trace::Trace;
use serde_json::{Map, Value};

pub async fn run_react(
    _ctx: &RunContext,
    _program: &Program,
    _overlay: &Overlay,
    node: &Node,
    _inputs: Map<String, Value>,
    _trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    Err(RunError::Node {
        node: node.name.clone(),
        message: "the react module kind is not available in this build".into(),
    })
}
