//! Cost-aware selection: which of the candidates scored on the whole
//! valset a compile keeps (`--objective`), and the trade-off report
//! (score, prompt tokens per call, cost per 1,000 examples) for the winner,
//! the runners-up and the Pareto frontier of score against prompt size.
//!
//! It lives beside the engine rather than in any search because every
//! optimizer's whole-valset runs pass through [`Engine::evaluate`], which
//! keeps each candidate's per-example scores and its [`Cost`] here
//! ([`Measured`]); `optimize::compile` then applies the objective once the
//! search returns, so bootstrap, kNN, MIPRO, GEPA and the rest all get it
//! with no code of their own. `score` (the default) keeps the search's
//! choice; `cheapest-tied` keeps, among the candidates not significantly
//! worse than the best (the paired test `lmc eval --baseline` uses, on the
//! same valset rows: McNemar's exact test for 0/1 scores, else a paired
//! bootstrap; one-sided p ≥ 0.05), the one with the fewest prompt tokens
//! per example; `max-prompt-tokens=N` keeps the best candidate whose
//! prompts average at most N tokens per call.

use crate::artifact::{overlay_hash, CandidateRecord, Cost, Tradeoff, TradeoffRow};
use crate::eval::ExampleResult;
use crate::overlay::Overlay;

use super::{Engine, Outcome, Scored};

/// How many runners-up the report lists besides the winner.
const RUNNERS_UP: usize = 4;
/// A candidate whose drop from the best has a one-sided p-value at least
/// this large is tied with the best.
const TIE_P: f64 = 0.05;

/// What a compile optimizes for among the candidates it scored.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Objective {
    /// The search's own choice (the best valset score).
    #[default]
    Score,
    /// The fewest prompt tokens among the candidates tied with the best.
    CheapestTied,
    /// The best score among candidates averaging at most this many prompt
    /// tokens per call.
    MaxPromptTokens(u64),
}

/// The accepted spellings, for errors and help.
pub const SPELLINGS: &str = "score, cheapest-tied, max-prompt-tokens=N";

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "score" => return Ok(Objective::Score),
            "cheapest-tied" => return Ok(Objective::CheapestTied),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("max-prompt-tokens=") {
            return match n.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Objective::MaxPromptTokens(n)),
                _ => Err(format!(
                    "`{s}`: the cap must be a positive whole number of tokens, e.g. max-prompt-tokens=800"
                )),
            };
        }
        Err(format!(
            "unknown objective `{s}`; expected one of: {SPELLINGS}"
        ))
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Objective::Score => write!(f, "score"),
            Objective::CheapestTied => write!(f, "cheapest-tied"),
            Objective::MaxPromptTokens(n) => write!(f, "max-prompt-tokens={n}"),
        }
    }
}

/// A candidate run on the whole valset: its overlay (as the search made
/// it), per-example scores in valset order, and what it cost. Serde so a
/// search checkpoint can carry it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Measured {
    pub overlay: Overlay,
    /// sha256 of `overlay`, as the history records it.
    pub hash: String,
    pub scores: Vec<f64>,
    pub cost: Cost,
}

/// Tokens in `chars` characters of text: the usual four characters a
/// token, rounded up (the dry run's estimate too).
fn tokens(chars: usize) -> f64 {
    chars.div_ceil(4) as f64
}

impl Measured {
    /// Measure `results` (one per valset example, traces kept). The size
    /// comes from the rendered requests, not the metered usage, because a
    /// cache hit meters zero tokens and candidates must compare whatever
    /// the cache held.
    pub fn of(overlay: &Overlay, results: &[ExampleResult], prices: Option<(f64, f64)>) -> Self {
        let (mut calls, mut prompt, mut completion) = (0usize, 0usize, 0usize);
        for r in results {
            let Some(t) = &r.trace else { continue };
            for lm in t.steps.iter().filter_map(|s| s.lm.as_ref()) {
                calls += 1;
                prompt += lm.messages.iter().map(|m| m.content.len()).sum::<usize>();
                completion += lm.reply.as_deref().map_or(0, str::len);
            }
        }
        let n = results.len().max(1) as f64;
        // To a tenth of a token: finer figures are noise in a report.
        let per_call = |chars: usize| {
            if calls == 0 {
                0.0
            } else {
                (tokens(chars) / calls as f64 * 10.0).round() / 10.0
            }
        };
        let mut cost = Cost {
            calls_per_example: calls as f64 / n,
            prompt_tokens_per_call: per_call(prompt),
            completion_tokens_per_call: per_call(completion),
            per_1k_examples: None,
        };
        cost.per_1k_examples = prices.map(|(pp, pc)| {
            1000.0
                * cost.calls_per_example
                * (cost.prompt_tokens_per_call * pp + cost.completion_tokens_per_call * pc)
                / 1e6
        });
        Measured {
            overlay: overlay.clone(),
            hash: overlay_hash(overlay),
            scores: results.iter().map(|r| r.score).collect(),
            cost,
        }
    }

    pub fn mean(&self) -> f64 {
        crate::eval::stats::mean(&self.scores)
    }

    /// Prompt tokens one example costs (every call of the program).
    fn prompt_per_example(&self) -> f64 {
        self.cost.prompt_tokens_per_call * self.cost.calls_per_example
    }

    fn scored(&self) -> Scored {
        let (lo, hi, _) = crate::eval::stats::ci95(&self.scores);
        Scored {
            mean: self.mean(),
            ci95: [lo, hi],
            n: self.scores.len(),
        }
    }
}

/// Whether `c` is not significantly worse than `best` on the same rows.
fn tied(best: &Measured, c: &Measured) -> bool {
    c.mean() >= best.mean()
        || crate::eval::stats::compare_paired(&best.scores, &c.scores).p_value >= TIE_P
}

/// Apply the engine's objective to a finished search: replace the winner
/// when the objective prefers another candidate, record the trade-off on
/// the engine and fill each history record's cost. Candidates are compared
/// as they ran (layered over the base, if any).
pub fn choose(engine: &Engine<'_>, outcome: &mut Outcome) {
    // One entry per overlay as it ran (two searches' candidates may layer
    // to the same thing).
    let mut all: Vec<(String, Measured)> = Vec::new();
    for m in engine.measured() {
        let key = overlay_hash(&engine.layered(&m.overlay));
        if !all.iter().any(|(k, _)| *k == key) {
            all.push((key, m));
        }
    }
    annotate(&mut outcome.history, &all);
    let Some(best_i) = (0..all.len()).reduce(|a, b| {
        if all[b].1.mean() > all[a].1.mean() {
            b
        } else {
            a
        }
    }) else {
        return;
    };
    let searched = overlay_hash(&engine.layered(&outcome.best));
    let searched_i = all.iter().position(|(k, _)| *k == searched);
    let objective = *engine.objective();
    let mut unmet = None;
    let chosen = match objective {
        Objective::Score => searched_i,
        Objective::CheapestTied => (0..all.len())
            .filter(|&i| tied(&all[best_i].1, &all[i].1))
            .reduce(|a, b| {
                let (x, y) = (&all[a].1, &all[b].1);
                let (tx, ty) = (x.prompt_per_example(), y.prompt_per_example());
                if ty < tx || (ty == tx && y.mean() > x.mean()) {
                    b
                } else {
                    a
                }
            }),
        Objective::MaxPromptTokens(cap) => {
            let fits = (0..all.len())
                .filter(|&i| all[i].1.cost.prompt_tokens_per_call <= cap as f64)
                .reduce(|a, b| {
                    if all[b].1.mean() > all[a].1.mean() {
                        b
                    } else {
                        a
                    }
                });
            if fits.is_none() {
                let cheapest = (0..all.len()).reduce(|a, b| {
                    if all[b].1.cost.prompt_tokens_per_call < all[a].1.cost.prompt_tokens_per_call {
                        b
                    } else {
                        a
                    }
                });
                let least = cheapest.map_or(0.0, |i| all[i].1.cost.prompt_tokens_per_call);
                let message = format!(
                    "no candidate averages at most {cap} prompt tokens per call (the smallest averages {least:.0}); kept the smallest"
                );
                engine.reporter.note(&message);
                unmet = Some(message);
                cheapest
            } else {
                fits
            }
        }
    };
    let Some(chosen) = chosen else {
        // The search's winner never ran on the whole valset: nothing to
        // weigh it against.
        return;
    };
    if Some(chosen) != searched_i {
        let m = &all[chosen].1;
        if let Some(s) = searched_i {
            engine.reporter.note(&format!(
                "--objective {objective}: kept a candidate scoring {:.4} at {:.0} prompt tokens per call over the search's choice ({:.4} at {:.0})",
                m.mean(),
                m.cost.prompt_tokens_per_call,
                all[s].1.mean(),
                all[s].1.cost.prompt_tokens_per_call
            ));
        }
        outcome.best = m.overlay.clone();
        outcome.best_score = Some(m.scored());
    }
    engine.set_tradeoff(report(
        objective,
        &all,
        best_i,
        chosen,
        &outcome.history,
        unmet,
    ));
}

/// Fill each record's cost from the candidate it names (by overlay hash).
fn annotate(history: &mut [CandidateRecord], all: &[(String, Measured)]) {
    for r in history.iter_mut() {
        if let Some((_, m)) = all.iter().find(|(_, m)| m.hash == r.overlay_hash) {
            r.prompt_tokens_per_call = Some(m.cost.prompt_tokens_per_call);
            r.cost_per_1k = m.cost.per_1k_examples;
        }
    }
}

fn report(
    objective: Objective,
    all: &[(String, Measured)],
    best: usize,
    chosen: usize,
    history: &[CandidateRecord],
    unmet: Option<String>,
) -> Tradeoff {
    let row = |i: usize| {
        let m = &all[i].1;
        TradeoffRow {
            overlay_hash: all[i].0.clone(),
            origin: history
                .iter()
                .find(|r| r.overlay_hash == m.hash)
                .map(|r| r.origin.clone()),
            score: m.mean(),
            cost: m.cost,
            tied_with_best: tied(&all[best].1, m),
        }
    };
    // Runners-up: best score first, then the smaller prompt, then the
    // earlier candidate.
    let mut order: Vec<usize> = (0..all.len()).filter(|&i| i != chosen).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&all[a].1, &all[b].1);
        y.mean()
            .total_cmp(&x.mean())
            .then(x.prompt_per_example().total_cmp(&y.prompt_per_example()))
            .then(a.cmp(&b))
    });
    // Frontier: by prompt size, keep each candidate that scores above
    // every smaller one.
    let mut by_size: Vec<usize> = (0..all.len()).collect();
    by_size.sort_by(|&a, &b| {
        let (x, y) = (&all[a].1, &all[b].1);
        x.prompt_per_example()
            .total_cmp(&y.prompt_per_example())
            .then(y.mean().total_cmp(&x.mean()))
            .then(a.cmp(&b))
    });
    let mut frontier = Vec::new();
    let mut top = f64::NEG_INFINITY;
    for i in by_size {
        if all[i].1.mean() > top {
            top = all[i].1.mean();
            frontier.push(row(i));
        }
    }
    Tradeoff {
        objective: objective.to_string(),
        winner: row(chosen),
        runners_up: order.into_iter().take(RUNNERS_UP).map(row).collect(),
        frontier,
        unmet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(scores: &[f64], tokens: f64) -> Measured {
        Measured {
            overlay: Overlay::default(),
            hash: String::new(),
            scores: scores.to_vec(),
            cost: Cost {
                calls_per_example: 1.0,
                prompt_tokens_per_call: tokens,
                ..Default::default()
            },
        }
    }

    #[test]
    fn objectives_parse_and_print_back() {
        for s in ["score", "cheapest-tied", "max-prompt-tokens=800"] {
            let o: Objective = s.parse().expect(s);
            assert_eq!(o.to_string(), s);
        }
        let e = "max-prompt-tokens=0".parse::<Objective>().unwrap_err();
        assert!(e.contains("positive"), "{e}");
        let e = "cheapest".parse::<Objective>().unwrap_err();
        assert!(e.contains(SPELLINGS), "{e}");
        assert_eq!(tokens(9), 3.0);
    }

    #[test]
    fn a_tie_is_a_drop_the_paired_test_cannot_tell_from_noise() {
        let best = m(&[1.0; 20], 100.0);
        // One row lost of twenty: McNemar p = 0.5, tied.
        let mut one = vec![1.0; 20];
        one[0] = 0.0;
        assert!(tied(&best, &m(&one, 50.0)));
        // Ten rows lost: p < 0.001, not tied.
        let mut ten = vec![1.0; 20];
        ten[..10].fill(0.0);
        assert!(!tied(&best, &m(&ten, 50.0)));
    }
}
