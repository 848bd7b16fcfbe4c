//! What a compile summary says when the search changed nothing: the
//! written artifact is the zero-shot program, and users deserve to know that
//! and why (no candidate beat it on the valset), with the scores, instead of
//! reading a summary that looks like progress.
//!
//! The same goes for the trade-off rows (`--objective`): which objective
//! chose, and score against prompt size and cost for the winner and the
//! runners-up, so a user sees what a cheaper winner gave up, if anything.
//!
//! Kept apart from `compile.rs` (which prints the summary) so each rule is
//! one small function that any summary layout can call.

use crate::artifact::{Artifact, Tradeoff, TradeoffRow};
use crate::program::Program;

/// Whether the artifact's overlay leaves the program as written: no demos,
/// no kNN pool, no instruction or field change on any predictor.
pub fn is_zero_shot(artifact: &Artifact, program: &Program) -> bool {
    artifact.predictors.iter().all(|(path, st)| {
        let same_instructions = match &st.instructions {
            None => true,
            Some(new) => program
                .predictor(path)
                .is_some_and(|r| r.signature.objective() == *new),
        };
        st.demos.is_empty() && st.knn.is_none() && st.fields.is_empty() && same_instructions
    })
}

/// The summary line for a compile that kept the zero-shot program, or
/// `None` when the artifact changes something. Names the best other
/// candidate's score when one was scored.
pub fn kept_zero_shot(artifact: &Artifact, program: &Program) -> Option<String> {
    if !is_zero_shot(artifact, program) {
        return None;
    }
    let l = &artifact.lineage;
    let zero = l.baseline_score.or(l.dev_score);
    let best_other = l
        .history
        .iter()
        .filter(|c| c.origin != "zero_shot")
        .filter_map(|c| c.score.map(|s| (s, c.id, c.origin.as_str())))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let scored = l
        .history
        .iter()
        .filter(|c| c.origin != "zero_shot" && c.score.is_some())
        .count();
    let zero = zero
        .map(|z| format!("zero-shot {z:.4}"))
        .unwrap_or_else(|| "zero-shot not scored".into());
    Some(match best_other {
        Some((s, id, origin)) => format!(
            "kept the zero-shot program: none of {scored} other candidates beat it on the valset ({zero}; best other: candidate {id} ({origin}) {s:.4}); the artifact adds no demos or instructions"
        ),
        None => format!(
            "kept the zero-shot program: no other candidate was scored on the valset ({zero}); the artifact adds no demos or instructions"
        ),
    })
}

/// The summary rows of a trade-off report: the objective, then one row for
/// the winner and each runner-up (score, prompt tokens per call, cost per
/// 1,000 examples where prices are known, how it was made, whether it ties
/// with the best).
pub fn tradeoff_rows(t: &Tradeoff, rows: &mut Vec<(&'static str, String)>) {
    let objective = match &t.unmet {
        Some(why) => format!("{} (not met: {why})", t.objective),
        None => t.objective.clone(),
    };
    rows.push(("objective", objective));
    rows.push(("winner", tradeoff_line(&t.winner)));
    for r in &t.runners_up {
        rows.push(("runner-up", tradeoff_line(r)));
    }
    if t.frontier.len() > 1 {
        let points: Vec<String> = t
            .frontier
            .iter()
            .map(|r| format!("{:.4} @ {:.0}", r.score, r.cost.prompt_tokens_per_call))
            .collect();
        rows.push((
            "frontier",
            format!("score @ prompt tokens/call: {}", points.join(", ")),
        ));
    }
}

fn tradeoff_line(r: &TradeoffRow) -> String {
    let mut line = format!(
        "score {:.4}  {:.0} prompt tokens/call",
        r.score, r.cost.prompt_tokens_per_call
    );
    if let Some(c) = r.cost.per_1k_examples {
        line.push_str(&format!("  ${c:.4} per 1k examples"));
    }
    if let Some(o) = &r.origin {
        line.push_str(&format!("  ({o})"));
    }
    if r.tied_with_best {
        line.push_str("  tied with the best");
    }
    line
}
