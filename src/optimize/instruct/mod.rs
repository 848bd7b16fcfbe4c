//! Instruction search: optimizers that rewrite each predictor's instruction
//! with a proposer LM and keep what scores best — COPRO (coordinate ascent
//! over proposals conditioned on scored attempts), MIPROv2 (grounded
//! proposals + a seeded TPE search over instruction × demo-set choices on
//! minibatches) and GEPA (reflective evolution over a per-instance Pareto
//! frontier, with system-aware merges).
//!
//! The algorithms here are pure control flow over two narrow interfaces: an
//! [`Evaluator`] that scores an overlay on dataset examples, and a
//! [`propose::Proposer`] that asks the prompt LM for text. That keeps them
//! deterministic under a seed and testable against a scripted LM. Each
//! records its candidates in a [`History`] of the artifact's own record
//! type (reported to the engine's progress as they are made), and every
//! one keeps the starting program as a candidate scored on the full
//! validation set, so the winner never scores below it there.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::artifact::CandidateRecord;
use crate::overlay::Overlay;
use crate::trace::Trace;

pub mod copro;
pub mod engine;
pub mod gepa;
pub mod mipro;
pub mod propose;
pub mod tpe;

pub use crate::optimize::engine::Split;

/// One example's outcome under a candidate.
#[derive(Debug, Clone, Default)]
pub struct ExampleScore {
    pub score: f64,
    pub feedback: Option<String>,
    pub inputs: Map<String, Value>,
    pub expected: Map<String, Value>,
    pub outputs: Option<Map<String, Value>>,
    /// Run error (LM failure or unparseable reply), kept for reflection.
    pub error: Option<String>,
    pub trace: Option<Trace>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    #[error("evaluation failed: {0}")]
    Eval(String),
    #[error("the proposer LM failed: {0}")]
    Propose(String),
    #[error("{0}")]
    Config(String),
}

/// Scores overlays on the train or validation examples.
#[async_trait::async_trait]
pub trait Evaluator: Send + Sync {
    /// One score per index, in the order of `indices`.
    async fn evaluate(
        &self,
        overlay: &Overlay,
        split: Split,
        indices: &[usize],
    ) -> Result<Vec<ExampleScore>, SearchError>;
    fn len(&self, split: Split) -> usize;
    /// Whether the budget (LM calls, tokens, cost) is spent; searches stop
    /// cleanly and return the best so far.
    fn exhausted(&self) -> bool {
        false
    }
    /// A candidate was recorded (progress: the engine shows the best so far).
    fn candidate(&self, _record: &CandidateRecord) {}
    /// Whether checkpoints are taken (a search builds its state only then).
    fn checkpointing(&self) -> bool {
        false
    }
    /// Take a checkpoint after `done` of `total` steps of `unit` with the
    /// search's `state` ([`crate::optimize::checkpoint`]).
    fn checkpoint(&self, _unit: &str, _done: usize, _total: usize, _state: Value) {}
}

/// Mean score of a batch (0 for an empty batch).
pub fn mean(scores: &[ExampleScore]) -> f64 {
    if scores.is_empty() {
        0.0
    } else {
        scores.iter().map(|s| s.score).sum::<f64>() / scores.len() as f64
    }
}

/// The search's history: each record gets the next id, its full score as
/// its `score`, and is reported (best so far) the moment it is made.
pub struct History<'a> {
    eval: &'a dyn Evaluator,
    pub records: Vec<CandidateRecord>,
}

impl<'a> History<'a> {
    pub fn new(eval: &'a dyn Evaluator) -> Self {
        History {
            eval,
            records: Vec::new(),
        }
    }

    /// Record `rec` (its id and score filled in); returns its id.
    pub fn push(&mut self, mut rec: CandidateRecord) -> usize {
        rec.id = self.records.len();
        rec.score = rec.full_score;
        self.eval.candidate(&rec);
        self.records.push(rec);
        self.records.len() - 1
    }

    /// A history that continues `records` (a resumed search's).
    pub fn resumed(eval: &'a dyn Evaluator, records: Vec<CandidateRecord>) -> Self {
        History { eval, records }
    }

    pub fn last(&self) -> Option<&CandidateRecord> {
        self.records.last()
    }
}

/// A history record of `origin` (fill in the rest with struct update syntax).
pub fn record(origin: &str) -> CandidateRecord {
    CandidateRecord {
        origin: origin.to_string(),
        ..Default::default()
    }
}

/// What an instruction search returns.
#[derive(Debug, Clone)]
pub struct SearchResult {
    pub best: Overlay,
    /// Full validation score of `best`.
    pub best_score: f64,
    /// Full validation score of the starting overlay.
    pub baseline_score: f64,
    pub history: Vec<CandidateRecord>,
    /// Figures the search derived (trial plan), for the lineage.
    pub plan: BTreeMap<String, serde_json::Value>,
}

/// The instructions of `overlay` that differ from the program's, by path.
pub fn instruction_diff(
    overlay: &Overlay,
    program: &crate::program::Program,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in program.predictors() {
        if let Some(i) = overlay.get(&p.path).and_then(|s| s.instructions.clone()) {
            if Some(&i) != p.signature.instructions.as_ref() {
                out.insert(p.path.clone(), i);
            }
        }
    }
    out
}

/// `overlay` with predictor `path`'s instruction replaced.
pub fn with_instruction(overlay: &Overlay, path: &str, instruction: &str) -> Overlay {
    let mut o = overlay.clone();
    o.predictors
        .entry(path.to_string())
        .or_default()
        .instructions = Some(instruction.to_string());
    o
}

/// The effective instruction of a predictor under an overlay.
pub fn current_instruction(overlay: &Overlay, pred: &crate::program::PredictorRef) -> String {
    overlay.state(&pred.path).apply(&pred.signature).objective()
}
