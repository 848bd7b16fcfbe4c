//! The graph interpreter: runs a [`Program`] with an [`Overlay`] on one set
//! of inputs and returns the outputs with a full [`Trace`].
//!
//! Everything a run needs is passed in a [`RunContext`] (LM, adapter,
//! sampling, tools, rollout id): there is no global state, so many runs with
//! different overlays can proceed concurrently against one immutable program.
//! Each node runs through its kind (`crate::nodes`); the loops of ReAct,
//! refine, map, multi-chain comparison and tool nodes live in this
//! module's files. The single predictor call (and the context and error
//! types it needs) is `crate::predict`, below this module, so metrics can
//! call a predictor without the graph.

use serde_json::{Map, Value};

use crate::overlay::Overlay;
use crate::program::{Binding, Node, Program};
use crate::trace::Trace;

pub use crate::predict::{call_predictor, LmHandle, RunContext, RunError, DEFAULT_MAX_TOKENS};

pub mod map;
pub mod multichain;
pub mod react;
pub mod refine;
pub mod tool;

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub outputs: Result<Map<String, Value>, RunError>,
    pub trace: Trace,
}

/// Values produced so far: program inputs and every finished node's outputs.
#[derive(Debug, Default, Clone)]
pub struct Scope {
    pub inputs: Map<String, Value>,
    pub nodes: std::collections::HashMap<String, Map<String, Value>>,
}

impl Scope {
    pub fn resolve(&self, b: &Binding) -> Result<Value, RunError> {
        match b {
            Binding::ProgramInput(name) => self
                .inputs
                .get(name)
                .cloned()
                .ok_or_else(|| RunError::MissingInput(name.clone())),
            Binding::NodeOutput { node, field } => self
                .nodes
                .get(node)
                .and_then(|m| m.get(field))
                .cloned()
                .ok_or_else(|| RunError::Node {
                    node: node.clone(),
                    message: format!("produced no field `{field}`"),
                }),
            Binding::Literal(v) => Ok(v.clone()),
        }
    }

    /// The bound inputs of a node, in declaration order.
    pub fn node_inputs(&self, node: &Node) -> Result<Map<String, Value>, RunError> {
        let mut m = Map::new();
        for (name, b) in &node.inputs {
            m.insert(name.clone(), self.resolve(b)?);
        }
        Ok(m)
    }
}

/// Run the program on `inputs`.
pub async fn run_program(
    ctx: &RunContext,
    program: &Program,
    overlay: &Overlay,
    inputs: Map<String, Value>,
) -> RunOutcome {
    let mut trace = Trace::default();
    let outputs = run_inner(ctx, program, overlay, inputs, &mut trace).await;
    RunOutcome { outputs, trace }
}

async fn run_inner(
    ctx: &RunContext,
    program: &Program,
    overlay: &Overlay,
    inputs: Map<String, Value>,
    trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    for f in &program.inputs {
        if !inputs.contains_key(&f.name)
            && !matches!(f.ty, crate::signature::FieldType::Optional { .. })
        {
            return Err(RunError::MissingInput(f.name.clone()));
        }
    }
    let mut scope = Scope {
        inputs,
        nodes: Default::default(),
    };
    for node in &program.nodes {
        let node_inputs = scope.node_inputs(node)?;
        let out = run_node(ctx, program, overlay, node, node_inputs, trace).await?;
        scope.nodes.insert(node.name.clone(), out);
    }
    let mut result = Map::new();
    for (name, b) in &program.outputs {
        result.insert(name.clone(), scope.resolve(b)?);
    }
    Ok(result)
}

async fn run_node(
    ctx: &RunContext,
    program: &Program,
    overlay: &Overlay,
    node: &Node,
    inputs: Map<String, Value>,
    trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    let ctx = &ctx.lm_for(node);
    // The kind's runner gets its typed node; which LM a named `node.lm`
    // selects is the run context's business.
    let cx = crate::nodes::NodeRun {
        ctx,
        program,
        overlay,
        name: &node.name,
        lm: node.lm.as_deref(),
    };
    node.kind.run(&cx, inputs, trace).await
}
