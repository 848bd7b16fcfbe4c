//! The signatures ReAct derives from a user signature (DSPy semantics):
//! a step predictor that picks the next thought, tool and JSON arguments
//! from the trajectory so far, and an extract predictor (chain of thought)
//! that reads the finished trajectory and produces the user's outputs.

use crate::signature::{Field, FieldType, Signature};

/// The per-step signature: user inputs + `trajectory` -> `next_thought`,
/// `next_tool_name` (enum of tools plus `finish`), `next_tool_args` (JSON).
pub fn react_signature(user: &Signature, tools: &[String]) -> Signature {
    let mut inputs = user.inputs.clone();
    inputs.push(Field::new("trajectory", FieldType::String));
    let mut names: Vec<String> = tools.to_vec();
    names.push("finish".into());
    let outs: Vec<String> = user
        .outputs
        .iter()
        .map(|f| format!("`{}`", f.name))
        .collect();
    let ins: Vec<String> = user
        .inputs
        .iter()
        .map(|f| format!("`{}`", f.name))
        .collect();
    let mut instr = String::new();
    if let Some(i) = &user.instructions {
        instr.push_str(i);
        instr.push_str("\n\n");
    }
    instr.push_str(&format!(
        "You are an Agent. In each episode, you will be given the fields {} as input. And you can see your past trajectory so far.\n\
         Your goal is to use one or more of the supplied tools to collect any necessary information for producing {}.\n\n\
         To do this, you will interleave next_thought, next_tool_name, and next_tool_args in each turn, and also when finishing the task.\n\
         After each tool call, you receive a resulting observation, which gets appended to your trajectory.\n\n\
         When writing next_thought, you may reason about the current situation and plan for future steps.\n\
         When selecting the next_tool_name and its next_tool_args, the tool must be one of: {}.\n\
         When you are done, select `finish` with empty arguments {{}}.",
        ins.join(", "),
        outs.join(", "),
        names.join(", ")
    ));
    Signature {
        instructions: Some(instr),
        inputs,
        outputs: vec![
            Field::new("next_thought", FieldType::String),
            Field::new("next_tool_name", FieldType::Enum { values: names }),
            Field::new("next_tool_args", FieldType::Json { schema: None }),
        ],
    }
}

/// The final extract signature: user inputs + `trajectory` -> `reasoning` + user outputs.
pub fn extract_signature(user: &Signature) -> Signature {
    let mut inputs = user.inputs.clone();
    inputs.push(Field::new("trajectory", FieldType::String));
    // DSPy builds it from the user's instruction, which for a signature
    // without one is the default objective over the user's own fields.
    Signature {
        instructions: Some(user.objective()),
        inputs,
        outputs: user.outputs.clone(),
    }
    .with_reasoning()
}
