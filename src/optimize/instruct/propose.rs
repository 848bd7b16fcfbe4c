//! The proposer: asks the prompt LM (`--prompt-lm`, default the task LM) to
//! write instructions. Each request is an ordinary lmc signature run through
//! the same adapter, cache and trace machinery as the task, so proposals are
//! cached, replayable and counted. Distinct rollout ids make repeated
//! proposals for the same input differ at temperature > 0 while staying
//! reproducible from the cache.

use serde_json::{json, Map, Value};

use crate::overlay::Overlay;
use crate::run::{call_predictor, RunContext};
use crate::signature::{Field, FieldType, Signature};
use crate::trace::Trace;

use super::SearchError;

/// Tips MIPROv2's grounded proposer draws from at random (one per proposal).
pub const TIPS: &[(&str, &str)] = &[
    ("none", ""),
    ("creative", "Don't be afraid to be creative when writing the instruction."),
    ("simple", "Keep the instruction clear and concise."),
    ("description", "Make sure the instruction is very informative and descriptive."),
    ("high_stakes", "The instruction should describe a high-stakes scenario in which the model must solve the task correctly."),
    ("persona", "Include a persona in the instruction that is relevant to the task (e.g. \"You are a ...\")."),
];

pub struct Proposer {
    ctx: RunContext,
}

fn text_field(name: &str, desc: &str) -> Field {
    let mut f = Field::new(name, FieldType::String);
    if !desc.is_empty() {
        f.description = Some(desc.to_string());
    }
    f
}

/// Clean a proposed instruction: trim, drop wrapping quotes/backticks.
pub fn clean(text: &str) -> Option<String> {
    let mut t = text.trim();
    for (open, close) in [("\"", "\""), ("'", "'"), ("`", "`"), ("“", "”")] {
        if t.len() >= 2 && t.starts_with(open) && t.ends_with(close) {
            t = t[open.len()..t.len() - close.len()].trim();
        }
    }
    // A small proposer can answer with adapter markers or numbering instead
    // of prose (seen with the 135M default: "[## 1]\n[## 2]..."). Such text
    // would corrupt the prompt structure it is pasted into: reject it, and
    // anything with fewer than three words.
    let markers = ["[[", "]]", "[##", "##]"];
    let words = t
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphabetic))
        .count();
    if words < 3 || markers.iter().any(|m| t.contains(m)) {
        None
    } else {
        Some(t.to_string())
    }
}

impl Proposer {
    /// `ctx` runs the prompt LM; its temperature is used for proposals.
    pub fn new(ctx: RunContext) -> Self {
        Proposer { ctx }
    }

    async fn ask(
        &self,
        path: &str,
        sig: &Signature,
        inputs: Map<String, Value>,
        rollout: u64,
    ) -> Result<Map<String, Value>, SearchError> {
        let mut trace = Trace::default();
        call_predictor(
            &self.ctx,
            &Overlay::default(),
            "proposer",
            path,
            sig,
            &inputs,
            Some(rollout),
            &mut trace,
        )
        .await
        .map_err(|e| SearchError::Propose(e.to_string()))
    }

    fn output(out: &Map<String, Value>, name: &str) -> Result<String, SearchError> {
        out.get(name)
            .and_then(Value::as_str)
            .and_then(clean)
            .ok_or_else(|| SearchError::Propose(format!("the proposal had no usable `{name}`")))
    }

    /// COPRO's two proposal outputs: the instruction and an output prefix.
    fn instruction_and_prefix(
        out: &Map<String, Value>,
    ) -> Result<(String, Option<String>), SearchError> {
        let prefix = out
            .get("proposed_prefix_for_output_field")
            .and_then(Value::as_str)
            .and_then(clean);
        Ok((Self::output(out, "proposed_instruction")?, prefix))
    }

    /// COPRO's first step: a better version of `instruction`, plus an
    /// output prefix, grounded in the program, the module's fields (its
    /// output space) and a few training examples. `previous` lists what
    /// this round already proposed and `tip` differs per slot, so the
    /// requests of one round really differ (a deterministic server, or a
    /// cache keyed on the request, would otherwise give one text for all).
    pub async fn basic(
        &self,
        g: &CoproGrounding<'_>,
        instruction: &str,
        rollout: u64,
    ) -> Result<(String, Option<String>), SearchError> {
        let sig = Signature {
            instructions: Some(
                "You improve instructions for language models. Read the task instruction below and write a better one: \
                 specific about what to produce, free of ambiguity, and likely to lead a model to correct answers. \
                 Use the program and module descriptions (including the allowed output values) and the training \
                 examples to make it specific to this task, make it differ from the instructions already proposed, \
                 and follow the tip if one is given. Also propose a short prefix that should precede the output field."
                    .into(),
            ),
            inputs: vec![
                text_field("program_description", ""),
                text_field("module_description", "the step's input and output fields with their types"),
                text_field("training_examples", "inputs and expected outputs of a few training examples"),
                text_field("basic_instruction", "the current instruction"),
                text_field("already_proposed", "instructions proposed so far in this round"),
                text_field("tip", ""),
            ],
            outputs: vec![
                text_field("proposed_instruction", "the improved instruction"),
                text_field("proposed_prefix_for_output_field", "a short prefix for the output, ending with a colon"),
            ],
        };
        let mut inputs = g.inputs();
        inputs.insert("basic_instruction".into(), json!(instruction));
        let out = self.ask("proposer.basic", &sig, inputs, rollout).await?;
        Self::instruction_and_prefix(&out)
    }

    /// COPRO's refinement: a new instruction given earlier attempts and
    /// their scores (listed in increasing order of score), grounded as
    /// [`Proposer::basic`].
    pub async fn given_attempts(
        &self,
        g: &CoproGrounding<'_>,
        attempts: &[(String, Option<String>, f64)],
        rollout: u64,
    ) -> Result<(String, Option<String>), SearchError> {
        let listed: Vec<Value> = attempts
            .iter()
            .enumerate()
            .map(|(i, (ins, pre, score))| {
                Value::String(format!(
                    "Instruction #{n}: {ins}\nPrefix #{n}: {}\nResulting score #{n}: {score:.3}",
                    pre.clone().unwrap_or_default(),
                    n = i + 1
                ))
            })
            .collect();
        let sig = Signature {
            instructions: Some(
                "You improve instructions for language models. Below are instructions tried for one task, each with the \
                 validation score it reached, from lowest to highest. Study what the better ones do differently, then \
                 write a new instruction (and output prefix) that should score higher than all of them. Use the program \
                 and module descriptions (including the allowed output values) and the training examples, make it \
                 differ from the instructions already proposed, and follow the tip if one is given."
                    .into(),
            ),
            inputs: vec![
                text_field("program_description", ""),
                text_field("module_description", "the step's input and output fields with their types"),
                text_field("training_examples", "inputs and expected outputs of a few training examples"),
                Field::new("attempted_instructions", FieldType::List { item: Box::new(FieldType::String) }),
                text_field("already_proposed", "instructions proposed so far in this round"),
                text_field("tip", ""),
            ],
            outputs: vec![
                text_field("proposed_instruction", "the new instruction"),
                text_field("proposed_prefix_for_output_field", "a short prefix for the output, ending with a colon"),
            ],
        };
        let mut inputs = g.inputs();
        inputs.insert("attempted_instructions".into(), json!(listed));
        let out = self
            .ask("proposer.given_attempts", &sig, inputs, rollout)
            .await?;
        Self::instruction_and_prefix(&out)
    }

    /// MIPROv2's data-aware step: a short description of the dataset from a
    /// sample of its examples.
    pub async fn dataset_summary(
        &self,
        examples: &[String],
        rollout: u64,
    ) -> Result<String, SearchError> {
        let sig = Signature {
            instructions: Some(
                "Here are examples from a dataset. Describe the dataset in a few sentences: what the inputs are, what \
                 the expected outputs look like, and any patterns that matter for solving the task."
                    .into(),
            ),
            inputs: vec![Field::new("examples", FieldType::List { item: Box::new(FieldType::String) })],
            outputs: vec![text_field("summary", "a short description of the dataset")],
        };
        let out = self
            .ask(
                "proposer.dataset",
                &sig,
                json_map(json!({"examples": examples})),
                rollout,
            )
            .await?;
        Self::output(&out, "summary")
    }

    /// MIPROv2's grounded proposer: an instruction for one predictor, given
    /// the dataset, the program, the module, demos, earlier proposals and a tip.
    pub async fn grounded(&self, g: &Grounding<'_>, rollout: u64) -> Result<String, SearchError> {
        let sig = Signature {
            instructions: Some(
                "Write the instruction for one step of a language-model program. Use the dataset description, the \
                 program and module descriptions and the example task demonstrations to make the instruction specific to \
                 this task. Follow the tip if one is given. Reply with the instruction only."
                    .into(),
            ),
            inputs: vec![
                text_field("dataset_description", ""),
                text_field("program_description", ""),
                text_field("module_description", ""),
                text_field("task_demos", ""),
                text_field("previous_instructions", ""),
                text_field("basic_instruction", ""),
                text_field("tip", ""),
            ],
            outputs: vec![text_field("proposed_instruction", "the instruction for this module")],
        };
        let inputs = json_map(json!({
            "dataset_description": g.dataset,
            "program_description": g.program,
            "module_description": g.module,
            "task_demos": if g.demos.is_empty() { "No task demos provided." } else { g.demos },
            "previous_instructions": g.previous.join("\n"),
            "basic_instruction": g.basic,
            "tip": g.tip,
        }));
        let out = self.ask("proposer.grounded", &sig, inputs, rollout).await?;
        Self::output(&out, "proposed_instruction")
    }

    /// GEPA's reflection: a rewritten instruction given examples of the
    /// predictor's inputs, outputs and the metric's feedback.
    pub async fn reflect(
        &self,
        instruction: &str,
        examples_with_feedback: &str,
        rollout: u64,
    ) -> Result<String, SearchError> {
        let sig = Signature {
            instructions: Some(
                "An assistant was given the instruction below for a task. The examples show inputs it received, what it \
                 produced, and feedback on each output. Identify what the assistant misunderstood or missed — including \
                 task-specific facts the feedback reveals — and write a new, complete instruction that fixes those \
                 problems while keeping what worked. Reply with the new instruction only."
                    .into(),
            ),
            inputs: vec![text_field("current_instruction", ""), text_field("examples_with_feedback", "")],
            outputs: vec![text_field("new_instruction", "the improved instruction")],
        };
        let inputs = json_map(
            json!({"current_instruction": instruction, "examples_with_feedback": examples_with_feedback}),
        );
        let out = self.ask("proposer.reflect", &sig, inputs, rollout).await?;
        Self::output(&out, "new_instruction")
    }
}

/// What COPRO's proposer is told besides the instruction: the program, the
/// module (its fields and types: the output space), training examples, what
/// this round already proposed and a tip that differs per slot.
pub struct CoproGrounding<'a> {
    pub program: &'a str,
    pub module: &'a str,
    pub examples: &'a str,
    pub already_proposed: &'a [String],
    pub tip: &'a str,
}

impl CoproGrounding<'_> {
    fn inputs(&self) -> Map<String, Value> {
        json_map(json!({
            "program_description": self.program,
            "module_description": self.module,
            "training_examples": if self.examples.is_empty() { "No examples." } else { self.examples },
            "already_proposed": if self.already_proposed.is_empty() {
                "None yet.".to_string()
            } else {
                self.already_proposed.join("\n")
            },
            "tip": self.tip,
        }))
    }
}

/// What the grounded proposer is told about one predictor.
pub struct Grounding<'a> {
    pub dataset: &'a str,
    pub program: &'a str,
    pub module: &'a str,
    pub demos: &'a str,
    pub previous: &'a [String],
    pub basic: &'a str,
    pub tip: &'a str,
}

fn json_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A plain-text description of a program for the grounded proposer: its
/// name, description and each node with its kind and signature.
pub fn describe_program(program: &crate::program::Program) -> String {
    let mut s = format!("Program `{}`", program.name);
    if let Some(d) = &program.description {
        s.push_str(&format!(": {d}"));
    }
    s.push_str("\nSteps:\n");
    for p in program.predictors() {
        s.push_str(&format!("- {}\n", describe_module(&p)));
    }
    s
}

/// One predictor as `path: inputs -> outputs (instruction)`.
pub fn describe_module(p: &crate::program::PredictorRef) -> String {
    let names = |fs: &[Field]| {
        fs.iter()
            .map(|f| format!("{}: {}", f.name, f.ty.lmc_name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{}: {} -> {} ({})",
        p.path,
        names(&p.signature.inputs),
        names(&p.signature.outputs),
        p.signature.objective()
    )
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn clean_strips_quotes_and_rejects_marker_soup() {
        assert_eq!(
            clean("  \"Classify the sentence.\" ").as_deref(),
            Some("Classify the sentence.")
        );
        assert_eq!(clean("[## 1]\n[## 2]\n[## 3]"), None);
        assert_eq!(clean("Use [[ ## sentiment ## ]] always"), None);
        assert_eq!(clean("ok"), None);
    }
}
