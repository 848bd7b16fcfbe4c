//! `llm_judge`: an LM grades the output, returning a score and feedback.
//!
//! The judge is an ordinary signature (question, expected, prediction →
//! score: float, feedback: str) run through the same predictor call as any
//! program node, so it goes through the same adapter, typed parsing, cache
//! and usage accounting. It is for outputs no rule can check (summaries,
//! explanations); its feedback is what GEPA-style optimizers read.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{value_text, MetricContext, MetricError, Score};
use crate::data::Example;
use crate::overlay::Overlay;
use crate::predict::call_predictor;
use crate::signature::{Field, FieldType, Signature};
use crate::trace::Trace;

const DEFAULT_INSTRUCTIONS: &str = "Judge how well the prediction answers the question, using the expected answer as the reference. Give a score from 0.0 (wrong or unusable) to 1.0 (fully correct and complete), and brief feedback that names what is wrong or missing.";

/// The judge's predictor path in traces.
pub const JUDGE_PATH: &str = "metric.judge";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JudgeOptions {
    /// Replaces the judge's default instructions (the grading rubric).
    #[serde(default)]
    instructions: Option<String>,
    /// The named LM (`lms:`) that judges, instead of the program's own.
    #[serde(default)]
    lm: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct LlmJudge {
    signature: Signature,
    lm: Option<String>,
}

fn field(name: &str, ty: FieldType, desc: &str) -> Field {
    let mut f = Field::new(name, ty);
    f.description = Some(desc.into());
    f
}

/// The judge signature (public so docs and tests can show it).
pub fn judge_signature(instructions: Option<&str>) -> Signature {
    Signature {
        instructions: Some(instructions.unwrap_or(DEFAULT_INSTRUCTIONS).to_string()),
        inputs: vec![
            field("question", FieldType::String, "the task's input"),
            field("expected", FieldType::String, "the reference answer"),
            field("prediction", FieldType::String, "the answer to judge"),
        ],
        outputs: vec![
            field("score", FieldType::Float, "a number from 0.0 to 1.0"),
            field(
                "feedback",
                FieldType::String,
                "what is wrong or missing, in one or two sentences",
            ),
        ],
    }
}

impl LlmJudge {
    pub fn new(o: JudgeOptions) -> Self {
        LlmJudge {
            signature: judge_signature(o.instructions.as_deref()),
            lm: o.lm,
        }
    }

    /// The named LM this judge calls, if any.
    pub fn lm(&self) -> Option<&str> {
        self.lm.as_deref()
    }

    pub async fn score(
        &self,
        ex: &Example,
        pred: &Value,
        gold: Option<&Value>,
        ctx: &MetricContext,
    ) -> Result<Score, MetricError> {
        let Some(run) = &ctx.judge else {
            return Err(MetricError::Score(
                "llm_judge needs an LM, and none was given to the metric".into(),
            ));
        };
        let mut inputs = Map::new();
        inputs.insert("question".into(), Value::String(question_text(&ex.inputs)));
        inputs.insert(
            "expected".into(),
            Value::String(
                gold.map(value_text)
                    .unwrap_or_else(|| "(no reference answer)".into()),
            ),
        );
        inputs.insert("prediction".into(), Value::String(value_text(pred)));
        let mut trace = Trace::default();
        // A judge that names an LM grades with it (a stronger model than
        // the program's, typically); the rest of the context is shared.
        let run = &run.with_lm(self.lm.as_deref());
        let out = call_predictor(
            run,
            &Overlay::default(),
            JUDGE_PATH,
            JUDGE_PATH,
            &self.signature,
            &inputs,
            run.rollout_id,
            &mut trace,
        )
        .await
        .map_err(|e| MetricError::Score(format!("llm_judge: {e}")))?;
        let score = out.get("score").and_then(Value::as_f64).ok_or_else(|| {
            MetricError::Score("llm_judge: the judge gave no numeric score".into())
        })?;
        if !score.is_finite() {
            return Err(MetricError::Score(format!(
                "llm_judge: score {score} is not a number"
            )));
        }
        let feedback = out
            .get("feedback")
            .map(value_text)
            .filter(|s| !s.trim().is_empty());
        Ok(Score::new(score.clamp(0.0, 1.0), feedback))
    }
}

/// One input: its text. Several: `name: text` lines.
fn question_text(inputs: &Map<String, Value>) -> String {
    if inputs.len() == 1 {
        return inputs.values().next().map(value_text).unwrap_or_default();
    }
    inputs
        .iter()
        .map(|(k, v)| format!("{k}: {}", value_text(v)))
        .collect::<Vec<_>>()
        .join("\n")
}
