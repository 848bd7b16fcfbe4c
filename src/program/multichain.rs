//! The signatures a `multi_chain_comparison` node derives from the user's
//! signature (DSPy's `MultiChainComparison` semantics): the attempt
//! predictor is the chain-of-thought form of the signature, and the compare
//! predictor reads the original inputs plus one `reasoning_attempt_I` input
//! per attempt and writes a `rationale` first, then the original outputs.
//!
//! Field names, prefixes and descriptions are DSPy's, so rendered prompts
//! and exported state match what DSPy builds for the same signature.

use crate::signature::{Field, FieldType, Signature};

/// The compare predictor's first output.
pub const RATIONALE_FIELD: &str = "rationale";

/// The compare predictor's input carrying attempt `i` (1-based).
pub fn attempt_field(i: u32) -> String {
    format!("reasoning_attempt_{i}")
}

/// The attempt predictor's signature: the user's, with `reasoning` first.
pub fn attempt_signature(user: &Signature) -> Signature {
    user.with_reasoning()
}

/// The compare signature: user inputs + `reasoning_attempt_1..n` ->
/// `rationale` + user outputs. DSPy builds it with `append`/`prepend`,
/// which keep the original signature's instructions; so when the user wrote
/// none, the instruction is the original's default objective (naming only
/// the user's fields), not one recomputed over the extended field lists.
pub fn compare_signature(user: &Signature, n: u32) -> Signature {
    let mut inputs = user.inputs.clone();
    for i in 1..=n {
        let mut f = Field::new(attempt_field(i), FieldType::String);
        f.prefix = Some(format!("Student Attempt #{i}:"));
        f.description = Some("${reasoning attempt}".into());
        inputs.push(f);
    }
    let mut rationale = Field::new(RATIONALE_FIELD, FieldType::String);
    rationale.prefix =
        Some("Accurate Reasoning: Thank you everyone. Let's now holistically".into());
    rationale.description = Some("${corrected reasoning}".into());
    let mut outputs = vec![rationale];
    outputs.extend(user.outputs.iter().cloned());
    Signature {
        instructions: Some(user.objective()),
        inputs,
        outputs,
    }
}
