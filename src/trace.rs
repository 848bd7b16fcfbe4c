//! Traces: what happened during one program run, step by step.
//!
//! Every module step (predictor call, tool call, retrieval, refine attempt)
//! is recorded with its inputs, outputs and, for LM calls, the messages,
//! raw reply, tokens, latency and cache status. Bootstrapping turns
//! successful traces into demos keyed by predictor path; `--trace` writes
//! them as JSONL; `lmc trace show` renders them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::adapter::{Message, ParseError};
use crate::lm::choice::ChoiceScores;
use crate::lm::Usage;

/// One LM call as made (request messages) and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmCallRecord {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// A reasoning model's thinking (`<think>` or the server's separate
    /// reasoning field), kept out of parsing and recorded here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    pub usage: Usage,
    pub latency_s: f64,
    pub cache_hit: bool,
    pub retries: u32,
    #[serde(default)]
    pub cost: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Enum values decided by likelihood: every value's probability (raw,
    /// and calibrated where asked), in reply order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<ChoiceScores>,
}

/// One tool invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    pub tool: String,
    pub args: Value,
    pub observation: String,
    pub is_error: bool,
}

/// One module step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Graph node name.
    pub node: String,
    /// Predictor path for LM steps (`classify`, `agent.react`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<String>,
    /// What kind of step: `predict`, `tool`, `retrieve`, `refine_attempt`, ...
    pub kind: String,
    pub inputs: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lm: Option<LmCallRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolCallRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<ParseError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// All steps of one run, in execution order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub steps: Vec<Step>,
}

impl Trace {
    pub fn usage(&self) -> Usage {
        let mut u = Usage::default();
        for s in &self.steps {
            if let Some(lm) = &s.lm {
                u += lm.usage;
            }
        }
        u
    }

    pub fn lm_calls(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.lm.as_ref().is_some_and(|l| !l.cache_hit))
            .count()
    }

    pub fn cost(&self) -> f64 {
        self.steps
            .iter()
            .filter_map(|s| s.lm.as_ref())
            .map(|l| l.cost)
            .sum()
    }

    pub fn cache_hits(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.lm.as_ref().is_some_and(|l| l.cache_hit))
            .count()
    }

    /// The first parse failure, if any (its raw reply is kept).
    pub fn parse_error(&self) -> Option<&ParseError> {
        self.steps.iter().find_map(|s| s.parse_error.as_ref())
    }
}
