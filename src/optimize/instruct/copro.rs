//! COPRO: coordinate ascent over instructions (and output prefixes), one
//! predictor at a time, DSPy's semantics.
//!
//! For every predictor the proposer first writes `breadth - 1` variations of
//! its instruction (the original stays a candidate). Unlike DSPy's, every
//! proposal request is grounded in what the program and data show — the
//! program's steps, the module's fields and types (its output space) and a
//! few training examples, as MIPRO's proposer is — and the requests of one
//! round really differ: each slot gets its own tip and sees what the round
//! already proposed. (DSPy asks for `n` completions of one request; lmc's
//! LM layer has no `n`, and requests differing only in a rollout id reach a
//! deterministic server identical: 29 calls gave one distinct candidate.) Then, `depth` times: for
//! each predictor in graph order, every new candidate is scored on the
//! evaluation set with the other predictors at their current best, and the
//! best is kept; the proposer then sees the attempts so far with their scores
//! (lowest first) and writes `breadth` new candidates. The best overlay ever
//! scored wins; the starting program is the first candidate scored, so the
//! result never scores below it.

use std::collections::BTreeMap;

use crate::artifact::CandidateRecord;
use crate::optimize::{Engine, Estimate, OptimizeError, Optimizer, Outcome, Shape};
use crate::overlay::Overlay;
use crate::program::Program;

use super::engine::{finish, proposer, train_view, EngineEvaluator};
use super::propose::{describe_module, describe_program, CoproGrounding, Proposer, TIPS};
use super::{
    current_instruction, instruction_diff, mean, record, Evaluator, History, SearchError,
    SearchResult, Split,
};

crate::optimizer_settings! {
    /// COPRO's settings (DSPy's defaults).
    pub struct CoproSettings {
        /// Candidates per predictor per round (the current instruction counts as one).
        breadth: usize = 10, min 2;
        /// Rounds of refinement.
        depth: usize = 3, min 1;
        /// The proposer's sampling temperature.
        init_temperature: f64 = 1.4, min 0.0, max 2.0;
    }
}

/// Training examples shown to the proposer (as MIPRO's dataset view, fewer:
/// they are repeated in every proposal request).
const EXAMPLES_SHOWN: usize = 5;

/// DSPy's COPRO.
pub struct Copro;

#[async_trait::async_trait]
impl Optimizer for Copro {
    type Settings = CoproSettings;
    const NAME: &'static str = "copro";
    const SEARCHES: crate::optimize::Searches = crate::optimize::Searches::INSTRUCTIONS;
    const DSPY: &'static str = "COPRO";
    const ABOUT: &'static str =
        "coordinate ascent over proposed instructions, one predictor at a time";
    const PROMPT_LM: bool = true;

    fn project(&self, s: &CoproSettings, shape: &Shape<'_>) -> Estimate {
        let p = shape.program.predictors().len() as u64;
        let (b, d, v) = (s.breadth as u64, s.depth as u64, shape.n_val as u64);
        let proposals = p * (b - 1) + (d - 1) * p * b;
        Estimate {
            phases: vec![("evaluating".into(), v + proposals * v)],
            extra_calls: proposals,
            exact: false,
        }
    }

    async fn compile(
        &self,
        s: &CoproSettings,
        engine: &Engine<'_>,
    ) -> Result<Outcome, OptimizeError> {
        let eval = EngineEvaluator { engine };
        let proposer = proposer(engine, s.init_temperature);
        let examples = train_view(engine, EXAMPLES_SHOWN);
        let search = copro(
            engine.program,
            // An artifact's overlay when composing: proposals start from its instructions.
            &engine.start(),
            &eval,
            &examples,
            &proposer,
            s,
        )
        .await;
        finish(engine, Self::NAME, search).await
    }
}

#[derive(Clone)]
struct Attempt {
    instruction: String,
    prefix: Option<String>,
    score: Option<f64>,
}

fn apply(overlay: &Overlay, path: &str, last_output: &str, a: &Attempt) -> Overlay {
    let mut o = overlay.clone();
    let st = o.predictors.entry(path.to_string()).or_default();
    st.instructions = Some(a.instruction.clone());
    if let Some(p) = &a.prefix {
        st.fields.entry(last_output.to_string()).or_default().prefix = Some(p.clone());
    }
    o
}

pub async fn copro(
    program: &Program,
    start: &Overlay,
    eval: &dyn Evaluator,
    examples: &[String],
    proposer: &Proposer,
    cfg: &CoproSettings,
) -> Result<SearchResult, SearchError> {
    let breadth = cfg.breadth.max(2);
    let all: Vec<usize> = (0..eval.len(Split::Val)).collect();
    let mut history = History::new(eval);
    let baseline_score = mean(&eval.evaluate(start, Split::Val, &all).await?);
    history.push(CandidateRecord {
        full_score: Some(baseline_score),
        ..record("baseline")
    });
    let mut current = start.clone();
    let mut current_score = baseline_score;
    let (mut best, mut best_score) = (start.clone(), baseline_score);

    let preds = program.predictors();
    let program_desc = describe_program(program);
    let examples = examples.join("\n");
    let modules: BTreeMap<String, String> = preds
        .iter()
        .map(|p| (p.path.clone(), describe_module(p)))
        .collect();
    // Slot `i` of a round gets its own tip and sees the round's earlier
    // proposals, so every request of a round differs (requests that differ
    // only in rollout id reach the server identical).
    let mut attempts: BTreeMap<String, Vec<Attempt>> = BTreeMap::new();
    let mut rollout = 1u64;
    for p in &preds {
        let base = current_instruction(start, p);
        let mut list = vec![Attempt {
            instruction: base.clone(),
            prefix: None,
            score: Some(baseline_score),
        }];
        for slot in 1..breadth {
            if eval.exhausted() {
                break;
            }
            let proposed: Vec<String> = list[1..].iter().map(|a| a.instruction.clone()).collect();
            let g = CoproGrounding {
                program: &program_desc,
                module: &modules[&p.path],
                examples: &examples,
                already_proposed: &proposed,
                tip: TIPS[slot % TIPS.len()].1,
            };
            if let Ok((ins, prefix)) = proposer.basic(&g, &base, rollout).await {
                if !list.iter().any(|a| a.instruction == ins) {
                    list.push(Attempt {
                        instruction: ins,
                        prefix,
                        score: None,
                    });
                }
            }
            rollout += 1;
        }
        attempts.insert(p.path.clone(), list);
    }

    for depth in 0..cfg.depth.max(1) {
        for p in &preds {
            let last_output = p
                .signature
                .outputs
                .last()
                .map(|f| f.name.clone())
                .unwrap_or_default();
            let list = attempts
                .get_mut(&p.path)
                .expect("attempts exist for every predictor");
            // Score this predictor's new candidates with the others at their
            // current best. Attempts scored in an earlier round keep their
            // score (DSPy re-scores them; the difference is only the other
            // predictors' state, and skipping saves a full evaluation each).
            for a in list.iter_mut() {
                if eval.exhausted() {
                    break;
                }
                if a.score.is_some() {
                    continue;
                }
                let cand = apply(&current, &p.path, &last_output, a);
                let s = mean(&eval.evaluate(&cand, Split::Val, &all).await?);
                a.score = Some(s);
                history.push(CandidateRecord {
                    predictor: Some(p.path.clone()),
                    instructions: instruction_diff(&cand, program),
                    full_score: Some(s),
                    ..record("proposal")
                });
                if s > best_score {
                    best_score = s;
                    best = cand;
                }
            }
            if let Some(top) = list.iter().filter(|a| a.score.is_some()).max_by(|a, b| {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(std::cmp::Ordering::Equal)
            }) {
                let s = top.score.unwrap_or(0.0);
                if s >= current_score {
                    current = apply(&current, &p.path, &last_output, top);
                    current_score = s;
                }
            }
        }
        if depth + 1 == cfg.depth.max(1) || eval.exhausted() {
            break;
        }
        for p in &preds {
            let list = attempts
                .get_mut(&p.path)
                .expect("attempts exist for every predictor");
            let mut scored: Vec<(String, Option<String>, f64)> = list
                .iter()
                .filter_map(|a| {
                    a.score
                        .map(|s| (a.instruction.clone(), a.prefix.clone(), s))
                })
                .collect();
            scored.sort_by(|a, b| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal));
            let shown: Vec<_> = scored.iter().rev().take(breadth).rev().cloned().collect();
            let mut fresh = Vec::new();
            for slot in 0..breadth {
                if eval.exhausted() {
                    break;
                }
                let proposed: Vec<String> = fresh
                    .iter()
                    .map(|a: &Attempt| a.instruction.clone())
                    .collect();
                let g = CoproGrounding {
                    program: &program_desc,
                    module: &modules[&p.path],
                    examples: &examples,
                    already_proposed: &proposed,
                    tip: TIPS[slot % TIPS.len()].1,
                };
                if let Ok((ins, prefix)) = proposer.given_attempts(&g, &shown, rollout).await {
                    if !list
                        .iter()
                        .chain(fresh.iter())
                        .any(|a: &Attempt| a.instruction == ins)
                    {
                        fresh.push(Attempt {
                            instruction: ins,
                            prefix,
                            score: None,
                        });
                    }
                }
                rollout += 1;
            }
            // Keep the scored attempts for the next proposal round; only the
            // fresh ones need scoring.
            list.retain(|a| a.score.is_some());
            list.extend(fresh);
        }
    }
    Ok(SearchResult {
        best,
        best_score,
        baseline_score,
        history: history.records,
        plan: BTreeMap::new(),
    })
}
