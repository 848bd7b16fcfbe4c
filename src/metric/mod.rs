//! Metrics: how one example's outputs are scored against its expected values.
//!
//! A [`Metric`] is built once from a spec (the program's `metric:` value or
//! `--metric`) and is then cheap to clone and safe to share across the
//! concurrent workers of an eval or a compile. Every metric returns a score
//! in 0..=1 and, where it helps, feedback text: GEPA-style optimizers read
//! the feedback to propose better instructions.

use serde_json::{Map, Value};
use std::path::Path;

use crate::data::Example;
use crate::program::Program;
use crate::run::RunContext;

/// One example's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// In 0..=1.
    pub score: f64,
    pub feedback: Option<String>,
}

/// What metrics may need besides the example: the LM for `llm_judge`.
#[derive(Clone, Default)]
pub struct MetricContext {
    pub judge: Option<RunContext>,
}

impl MetricContext {
    /// A context whose judge is the program's own LM context.
    pub fn new(ctx: &RunContext) -> Self {
        MetricContext {
            judge: Some(ctx.clone()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    #[error("invalid metric spec: {0}")]
    Spec(String),
    #[error("{0}")]
    Score(String),
}

/// A built metric.
#[derive(Debug, Clone)]
pub struct Metric {
    spec: Value,
}

impl Metric {
    /// Build from the program's `metric:` value (an object or a weighted list).
    pub fn from_spec(spec: &Value, base_dir: &Path) -> Result<Metric, MetricError> {
        let _ = base_dir;
        Ok(Metric { spec: spec.clone() })
    }

    /// Parse `--metric`: `exact_match`, `f1:answer`, `numeric:answer`, or inline JSON.
    pub fn parse_cli(s: &str, base_dir: &Path) -> Result<Metric, MetricError> {
        Metric::from_spec(&Value::String(s.to_string()), base_dir)
    }

    /// `exact_match` on the program's first output.
    pub fn default_for(program: &Program) -> Metric {
        let field = program.output_fields.first().map(|f| f.name.clone());
        Metric {
            spec: serde_json::json!({"type": "exact_match", "field": field}),
        }
    }

    /// Score one example.
    pub async fn score(
        &self,
        example: &Example,
        outputs: &Map<String, Value>,
        ctx: &MetricContext,
    ) -> Result<Score, MetricError> {
        let _ = (example, outputs, ctx);
        Err(MetricError::Score("not implemented yet".into()))
    }

    /// Short description for reports, e.g. `exact_match(sentiment)`.
    pub fn name(&self) -> String {
        self.spec.to_string()
    }

    /// `sha256:<hex>` of the canonical spec (plus script bytes for `command`).
    pub fn content_hash(&self) -> String {
        String::new()
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}
