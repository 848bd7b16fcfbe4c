//! Search checkpoints: the state a long search needs to continue where it
//! stopped, as data.
//!
//! The response cache makes a re-run of an interrupted compile free of paid
//! calls, but the re-run still replays every evaluation from the start. A
//! checkpoint skips that: a resumable search (MIPROv2 after each trial,
//! GEPA after each iteration) hands the engine its own state — trials and
//! their scores, the candidate pool and its frontier scores, the history,
//! the positions of its seeded random streams — and the engine adds its
//! books (request tallies, full valset scores, the best candidate so far)
//! before passing it to the [`Hook`] the caller installed (the CLI writes
//! it atomically next to the artifact). A search resumed from a checkpoint
//! continues with the same random draws, so it ends where an uninterrupted
//! run with the same seed would. A checkpoint is only ever taken between
//! two steps and never by a stopped engine, so it holds no step cut short.
//!
//! This file owns the shared types; the searches own their state types and
//! the CLI (`cli::checkpoint`) owns the file, its key and its validation.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::artifact::CandidateRecord;
use crate::lm::Usage;
use crate::overlay::Overlay;

use super::engine::Scored;

/// Receives each checkpoint a search takes.
pub type Hook = Box<dyn Fn(SearchState) + Send + Sync>;

/// One checkpoint of a running search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchState {
    /// What a step is for this search (`trial`, `iteration`).
    pub unit: String,
    /// Steps finished, and the number planned (an upper bound for searches
    /// that may stop early).
    pub done: usize,
    pub total: usize,
    /// The search's own state (its type is private to the search).
    pub state: serde_json::Value,
    pub books: Books,
}

/// What the engine has counted and kept so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Books {
    /// LM requests (cache hits included) and their tokens, for the lineage.
    pub requests: u64,
    pub usage: Usage,
    /// The engine's own history (the instruction searches keep theirs in
    /// their state until they finish).
    pub history: Vec<CandidateRecord>,
    /// Valset scores by overlay hash: a candidate scored before the
    /// checkpoint is not scored again.
    pub scores: BTreeMap<String, Scored>,
    /// The best candidate fully scored (what an interrupt keeps).
    pub best_scored: Option<(Overlay, Scored)>,
    /// The best score reported to the progress display.
    pub best: Option<f64>,
}

impl SearchState {
    /// The best full valset score the books hold, for the resume message.
    pub fn best_score(&self) -> Option<f64> {
        self.books
            .best_scored
            .as_ref()
            .map(|(_, s)| s.mean)
            .or(self.books.best)
    }
}

/// A seeded stream's position, so a resumed search draws what the
/// uninterrupted one would have drawn next.
pub fn rng_pos(rng: &rand_chacha::ChaCha8Rng) -> u64 {
    rng.get_word_pos() as u64
}

/// A stream seeded with `seed`, moved to `pos`.
pub fn rng_at(seed: u64, pos: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    r.set_word_pos(pos as u128);
    r
}
