//! Composition: compiling from an artifact keeps what the new optimizer
//! does not search.
//!
//! `lmc compile ARTIFACT --optimizer X` starts from the artifact's overlay
//! (the *base*). Every optimizer declares what it searches ([`Searches`]);
//! the engine runs each candidate layered over the base with [`layer`], and
//! the winner is written layered the same way, so instructions a MIPRO or
//! SIMBA pass found survive a kNN or bootstrap pass, and demos (fixed or
//! per-input kNN) survive a COPRO or GEPA pass. Candidates are scored as
//! they will be written: the layering happens before every run, not after
//! the search.

use crate::overlay::{Overlay, PredictorState};

/// What an optimizer searches: the parts of a predictor's state its
/// candidates own. The rest comes from the base overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Searches {
    /// Instructions (and field prefixes/descriptions).
    pub instructions: bool,
    /// Demos, fixed or chosen per input (kNN).
    pub demos: bool,
}

impl Searches {
    pub const DEMOS: Searches = Searches {
        instructions: false,
        demos: true,
    };
    pub const INSTRUCTIONS: Searches = Searches {
        instructions: true,
        demos: false,
    };
    pub const BOTH: Searches = Searches {
        instructions: true,
        demos: true,
    };
}

/// `candidate` over `base`: per predictor, the searched parts come from the
/// candidate (an instruction it leaves unset falls back to the base's; an
/// empty demo list stays empty, since zero-shot is a choice), the others
/// from the base.
pub fn layer(base: &Overlay, candidate: &Overlay, searches: Searches) -> Overlay {
    let mut out = Overlay::default();
    let paths = base.predictors.keys().chain(candidate.predictors.keys());
    for path in paths {
        if out.predictors.contains_key(path) {
            continue;
        }
        let b = base.state(path);
        let c = candidate.state(path);
        let mut s = PredictorState::default();
        if searches.instructions {
            s.instructions = c.instructions.or(b.instructions);
            s.fields = b.fields;
            s.fields.extend(c.fields);
        } else {
            s.instructions = b.instructions;
            s.fields = b.fields;
        }
        if searches.demos {
            s.demos = c.demos;
            s.knn = c.knn;
        } else {
            s.demos = b.demos;
            s.knn = b.knn;
        }
        if s != PredictorState::default() {
            out.predictors.insert(path.clone(), s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::Demo;

    fn state(instr: Option<&str>, demos: usize) -> PredictorState {
        PredictorState {
            instructions: instr.map(str::to_string),
            demos: (0..demos)
                .map(|i| Demo {
                    fields: [("x".to_string(), serde_json::json!(i))]
                        .into_iter()
                        .collect(),
                    augmented: false,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn overlay(s: PredictorState) -> Overlay {
        let mut o = Overlay::default();
        o.predictors.insert("p".into(), s);
        o
    }

    #[test]
    fn each_pass_keeps_what_it_does_not_search() {
        let base = overlay(state(Some("found by mipro"), 2));
        // A demo pass: its demos, the base's instruction.
        let l = layer(&base, &overlay(state(None, 3)), Searches::DEMOS);
        assert_eq!(l.state("p").instructions.as_deref(), Some("found by mipro"));
        assert_eq!(l.state("p").demos.len(), 3);
        // Zero-shot is a demo choice: it stays zero-shot.
        let l = layer(&base, &Overlay::default(), Searches::DEMOS);
        assert_eq!(l.state("p").demos.len(), 0);
        // An instruction pass: its instruction, the base's demos.
        let l = layer(
            &base,
            &overlay(state(Some("new"), 0)),
            Searches::INSTRUCTIONS,
        );
        assert_eq!(l.state("p").instructions.as_deref(), Some("new"));
        assert_eq!(l.state("p").demos.len(), 2);
        // Its unchanged start is the base itself.
        assert_eq!(
            layer(&base, &Overlay::default(), Searches::INSTRUCTIONS),
            base
        );
        // No base: the candidate as it is.
        let c = overlay(state(Some("c"), 1));
        assert_eq!(layer(&Overlay::default(), &c, Searches::BOTH), c);
    }
}
