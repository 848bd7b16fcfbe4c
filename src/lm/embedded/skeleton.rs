//! Jump-forward decoding: which parts of a reply its grammar already fixes,
//! so the engine appends them instead of sampling them one decode step at a
//! time.
//!
//! A chat-adapter reply is mostly fixed text: for SST-2 it is
//! `[[ ## sentiment ## ]]\n` + `positive`|`negative` + `\n\n[[ ## completed ## ]]`,
//! and only the label is a choice. Sampling the markers costs ~20 forward
//! passes per reply for nothing. This module reads the GBNF grammar the
//! request carries (no new request field, so cache keys do not change) into
//! a [`Skeleton`] of segments — literal text, a choice among literal values,
//! or free text — and a [`Tracker`] follows the reply text as it is sampled
//! and says when the rest of a segment is forced: the leading literal is
//! prefilled with the prompt, an enum value is decided as soon as the text
//! sampled so far identifies one value, the literals that follow are added
//! in one batched step, and when nothing but literals is left the reply
//! ends without decoding them at all.
//!
//! The reading is deliberately narrow: only `root` as a sequence of string
//! literals and rule names, with rules that are a literal or alternatives of
//! literals; anything else is free text, and the tracker then stops jumping
//! at the first free segment it cannot see the end of. Free text ends only
//! where the next literal opens a `[[` marker, which the adapter's free-text
//! rules can never contain, so the jump cannot cut a value short. The
//! grammar sampler still sees every token (forced ones are accepted into it
//! and checked first), so the grammar stays the single authority on what a
//! reply may be. Forced text is split the tokenizer's way, which is not
//! always the model's, so the engine by default jumps only in replies
//! without free text (see `Tuning::jump_free_text`).

use std::collections::HashMap;

/// One part of a reply, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Exactly this text.
    Literal(String),
    /// Exactly one of these texts.
    Choice(Vec<String>),
    /// Anything the grammar allows; the model decides where it ends.
    Free,
}

/// The segments of a grammar's `root`, adjacent literals merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Skeleton {
    pub segments: Vec<Segment>,
}

impl Skeleton {
    /// Read a GBNF grammar. A grammar this cannot read yields an empty
    /// skeleton (no jump-forward; decoding is unchanged).
    pub fn from_gbnf(grammar: &str) -> Skeleton {
        let rules = rules(grammar);
        let Some(root) = rules.get("root") else {
            return Skeleton::default();
        };
        let Some(items) = lex(root) else {
            return Skeleton::default();
        };
        let mut segments: Vec<Segment> = Vec::new();
        let mut push = |s: Segment| match (segments.last_mut(), s) {
            (Some(Segment::Literal(a)), Segment::Literal(b)) => a.push_str(&b),
            (_, s) => segments.push(s),
        };
        for item in items {
            match item {
                Item::Lit(s) => push(Segment::Literal(s)),
                Item::Name(name) => push(rule_segment(&rules, &name)),
                // An alternative, group or repetition at the top: the
                // reply's shape from here on is not a plain sequence.
                Item::Bar | Item::Other => {
                    push(Segment::Free);
                    break;
                }
            }
        }
        Skeleton { segments }
    }

    /// Whether some part of the reply is free text.
    pub fn has_free_text(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Free))
    }

    /// Whether jumping forward can save anything (any literal at all).
    pub fn is_useful(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Literal(_) | Segment::Choice(_)))
    }
}

/// What the engine does next for a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Sample the next token from the model.
    Sample,
    /// This text is fixed: append it. With `end`, the reply is then
    /// complete and nothing more needs decoding.
    Force { text: String, end: bool },
}

/// Follows one reply through its skeleton.
#[derive(Debug, Clone)]
pub struct Tracker {
    segments: Vec<Segment>,
    /// Index of the segment being sampled.
    at: usize,
    /// Text sampled so far inside segment `at`.
    text: String,
    /// Stopped jumping (the reply left the skeleton's known shape).
    off: bool,
}

impl Tracker {
    /// A tracker at the start of a reply, and what to do first.
    pub fn start(skeleton: &Skeleton) -> (Tracker, Next) {
        let mut t = Tracker {
            segments: skeleton.segments.clone(),
            at: 0,
            text: String::new(),
            off: !skeleton.is_useful(),
        };
        let next = if t.off {
            Next::Sample
        } else {
            t.forced_from_here(String::new())
        };
        (t, next)
    }

    /// The model sampled a token whose text is `piece`.
    pub fn push(&mut self, piece: &str) -> Next {
        if self.off || self.at >= self.segments.len() {
            self.off = true;
            return Next::Sample;
        }
        self.text.push_str(piece);
        match &self.segments[self.at] {
            Segment::Choice(values) => {
                let mut fits = values.iter().filter(|v| v.starts_with(self.text.as_str()));
                match (fits.next(), fits.next()) {
                    // Exactly one value starts this way: the rest is fixed.
                    (Some(v), None) => {
                        let rest = v[self.text.len()..].to_string();
                        self.advance(1);
                        self.forced_from_here(rest)
                    }
                    (Some(_), Some(_)) => Next::Sample,
                    // The token ran past a value's end (or the grammar was
                    // misread): let the model go on unaided.
                    (None, _) => self.stop(),
                }
            }
            Segment::Free => {
                let Some(Segment::Literal(lit)) = self.segments.get(self.at + 1) else {
                    // Free text to the end: nothing more is forced.
                    return self.stop();
                };
                let Some(anchor) = marker_end(lit) else {
                    return self.stop();
                };
                match literal_started(&self.text, lit, anchor) {
                    Some(Overlap::Within(done)) => {
                        let rest = lit[done..].to_string();
                        self.advance(2);
                        self.forced_from_here(rest)
                    }
                    Some(Overlap::Past) => self.stop(),
                    None => Next::Sample,
                }
            }
            Segment::Literal(_) => self.stop(),
        }
    }

    /// The values of the enum segment the reply has reached, when nothing
    /// of it is written yet (the point where a likelihood choice is made).
    /// None for a choice with an empty value: it would leave nothing to
    /// append and the sequence nothing to decode.
    pub fn choice_values(&self) -> Option<&[String]> {
        if self.off || !self.text.is_empty() {
            return None;
        }
        match self.segments.get(self.at) {
            Some(Segment::Choice(values)) if values.iter().all(|v| !v.is_empty()) => Some(values),
            _ => None,
        }
    }

    /// The engine chose `value` for the current enum segment: it and the
    /// literals after it are fixed.
    pub fn choose(&mut self, value: &str) -> Next {
        self.advance(1);
        self.forced_from_here(value.to_string())
    }

    /// Stop jumping for the rest of this reply.
    pub fn give_up(&mut self) {
        self.off = true;
    }

    fn stop(&mut self) -> Next {
        self.off = true;
        Next::Sample
    }

    fn advance(&mut self, by: usize) {
        self.at += by;
        self.text.clear();
    }

    /// `prefix` plus every literal from segment `at` on, up to the next
    /// segment the model must decide.
    fn forced_from_here(&mut self, mut text: String) -> Next {
        while let Some(Segment::Literal(lit)) = self.segments.get(self.at) {
            text.push_str(lit);
            self.at += 1;
        }
        let end = self.at >= self.segments.len();
        if text.is_empty() && !end {
            Next::Sample
        } else {
            Next::Force { text, end }
        }
    }
}

/// Where `[[` ends inside `lit`, the point from which sampled text can only
/// be this literal (the adapter's free text never contains `[[`).
fn marker_end(lit: &str) -> Option<usize> {
    lit.find("[[").map(|i| i + 2)
}

enum Overlap {
    /// The sampled text ends with `lit[..n]`, n past the marker: n bytes of
    /// the literal are already written.
    Within(usize),
    /// The sampled text runs past the end of the literal.
    Past,
}

/// Whether free text `text` has started literal `lit` (its tail is a prefix
/// of `lit` reaching at least `anchor` bytes into it).
fn literal_started(text: &str, lit: &str, anchor: usize) -> Option<Overlap> {
    for (p, _) in text.char_indices() {
        let tail = &text[p..];
        if tail.len() >= anchor && lit.starts_with(tail) {
            return Some(Overlap::Within(tail.len()));
        }
        if tail.len() > lit.len() && tail.starts_with(lit) {
            return Some(Overlap::Past);
        }
    }
    None
}

/// The segment a rule reference stands for.
fn rule_segment(rules: &HashMap<String, String>, name: &str) -> Segment {
    let Some(body) = rules.get(name) else {
        return Segment::Free;
    };
    let Some(items) = lex(body) else {
        return Segment::Free;
    };
    // `"a" | "b" | ...`: literals separated by bars (lexed as Other).
    let mut values = Vec::new();
    let mut expect_lit = true;
    for item in items {
        match (item, expect_lit) {
            (Item::Lit(s), true) => {
                values.push(s);
                expect_lit = false;
            }
            (Item::Bar, false) => expect_lit = true,
            _ => return Segment::Free,
        }
    }
    if expect_lit || values.is_empty() || values.iter().any(String::is_empty) {
        return Segment::Free;
    }
    if values.len() == 1 {
        return Segment::Literal(values.remove(0));
    }
    Segment::Choice(values)
}

/// `name ::= body` lines; a line without `::=` continues the previous rule.
fn rules(grammar: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    let mut current: Option<String> = None;
    for line in grammar.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if let Some((name, body)) = line.split_once("::=") {
            let name = name.trim().to_string();
            out.insert(name.clone(), body.to_string());
            current = Some(name);
        } else if let Some(body) = current.as_ref().and_then(|n| out.get_mut(n)) {
            body.push(' ');
            body.push_str(line);
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Item {
    Lit(String),
    Name(String),
    Bar,
    /// Groups, repetitions, character classes: not a plain sequence.
    Other,
}

/// The items of a rule body. None when a literal is malformed.
fn lex(body: &str) -> Option<Vec<Item>> {
    let mut items = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '"' => {
                chars.next();
                items.push(Item::Lit(string(&mut chars)?));
            }
            '|' => {
                chars.next();
                items.push(Item::Bar);
            }
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                // A name followed by a repetition is not a single segment.
                match chars.peek() {
                    Some('*' | '+' | '?' | '{') => items.push(Item::Other),
                    _ => items.push(Item::Name(name)),
                }
            }
            _ => {
                items.push(Item::Other);
                chars.next();
            }
        }
    }
    Some(items)
}

/// The rest of a GBNF string literal after its opening quote.
fn string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => break,
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '[' => out.push('['),
                ']' => out.push(']'),
                'x' => {
                    let hex: String = [chars.next()?, chars.next()?].iter().collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    // `"ab"*` and the like: the literal is repeated, not fixed.
    if matches!(chars.peek(), Some('*' | '+' | '?' | '{')) {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::grammar::chat_grammar;
    use crate::signature::{Field, FieldType, Signature};

    fn sig(outputs: Vec<Field>) -> Signature {
        Signature {
            instructions: None,
            inputs: vec![Field::new("sentence", FieldType::String)],
            outputs,
        }
    }

    fn sentiment() -> Signature {
        sig(vec![Field::new(
            "sentiment",
            FieldType::Enum {
                values: vec!["positive".into(), "negative".into()],
            },
        )])
    }

    #[test]
    fn chat_enum_grammar_reads_as_literal_choice_literal() {
        let s = Skeleton::from_gbnf(&chat_grammar(&sentiment(), Some(64)));
        assert_eq!(
            s.segments,
            vec![
                Segment::Literal("[[ ## sentiment ## ]]\n".into()),
                Segment::Choice(vec!["positive".into(), "negative".into()]),
                Segment::Literal("\n\n[[ ## completed ## ]]".into()),
            ]
        );
    }

    #[test]
    fn a_label_is_decided_by_its_first_distinguishing_token() {
        let s = Skeleton::from_gbnf(&chat_grammar(&sentiment(), Some(64)));
        let (mut t, first) = Tracker::start(&s);
        assert_eq!(
            first,
            Next::Force {
                text: "[[ ## sentiment ## ]]\n".into(),
                end: false
            }
        );
        assert_eq!(
            t.push("neg"),
            Next::Force {
                text: "ative\n\n[[ ## completed ## ]]".into(),
                end: true
            }
        );
    }

    #[test]
    fn a_choice_point_offers_every_value_and_choosing_fixes_the_rest() {
        let s = Skeleton::from_gbnf(&chat_grammar(&sentiment(), Some(64)));
        let (mut t, _) = Tracker::start(&s);
        assert_eq!(
            t.choice_values(),
            Some(&["positive".to_string(), "negative".to_string()][..])
        );
        assert_eq!(
            t.choose("negative"),
            Next::Force {
                text: "negative\n\n[[ ## completed ## ]]".into(),
                end: true
            }
        );
        assert_eq!(t.choice_values(), None);
        // Once the model has written part of a value, it is no choice point.
        let (mut t, _) = Tracker::start(&s);
        let _ = t.push("p");
        assert_eq!(t.choice_values(), None);
    }

    #[test]
    fn values_sharing_a_prefix_are_sampled_until_they_part() {
        let s = sig(vec![Field::new(
            "level",
            FieldType::Enum {
                values: vec!["very good".into(), "very bad".into()],
            },
        )]);
        let (mut t, _) = Tracker::start(&Skeleton::from_gbnf(&chat_grammar(&s, None)));
        assert_eq!(t.push("very"), Next::Sample);
        assert_eq!(
            t.push(" b"),
            Next::Force {
                text: "ad\n\n[[ ## completed ## ]]".into(),
                end: true
            }
        );
    }

    #[test]
    fn free_text_ends_only_at_a_marker_then_the_rest_is_forced() {
        let s = sig(vec![
            Field::new("reasoning", FieldType::String),
            Field::new("answer", FieldType::Bool),
        ]);
        let skel = Skeleton::from_gbnf(&chat_grammar(&s, Some(256)));
        assert_eq!(skel.segments[1], Segment::Free);
        let (mut t, first) = Tracker::start(&skel);
        assert!(matches!(first, Next::Force { end: false, .. }));
        assert_eq!(t.push("It is fine.\n\n"), Next::Sample, "no marker yet");
        assert_eq!(t.push("More.\n"), Next::Sample);
        assert_eq!(
            t.push("\n[["),
            Next::Force {
                text: " ## answer ## ]]\n".into(),
                end: false
            }
        );
        assert_eq!(
            t.push("True"),
            Next::Force {
                text: "\n\n[[ ## completed ## ]]".into(),
                end: true
            }
        );
    }

    #[test]
    fn a_token_past_every_value_stops_jumping() {
        let s = Skeleton::from_gbnf(&chat_grammar(&sentiment(), None));
        let (mut t, _) = Tracker::start(&s);
        assert_eq!(t.push("x"), Next::Sample);
        assert_eq!(t.push("positive"), Next::Sample, "stays off");
    }

    #[test]
    fn unreadable_or_plain_grammars_force_nothing() {
        for g in ["", "root ::= [a-z]+", "root ::= (\"a\" | \"b\")*"] {
            let s = Skeleton::from_gbnf(g);
            let (_, next) = Tracker::start(&s);
            assert_eq!(next, Next::Sample, "{g:?}: {s:?}");
        }
    }

    #[test]
    fn a_grammar_of_one_literal_is_forced_whole() {
        let (_, next) = Tracker::start(&Skeleton::from_gbnf("root ::= \"ok\\n\" \"done\""));
        assert_eq!(
            next,
            Next::Force {
                text: "ok\ndone".into(),
                end: true
            }
        );
    }
}
