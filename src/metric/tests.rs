//! Unit tests of the metric building blocks (normalisation, token F1,
//! number parsing, reply parsing) and of spec validation. Metrics scored
//! end to end on examples are in tests/it/metric.rs.

use serde_json::json;
use std::path::Path;

use super::numeric::parse_number;
use super::sql::strip_fences;
use super::text::{normalize, token_f1};
use super::*;

#[test]
fn normalize_follows_dspy() {
    assert_eq!(normalize("The  Eiffel Tower."), "eiffel tower");
    assert_eq!(normalize("An apple, a day!"), "apple day");
    // Articles only as whole words.
    assert_eq!(normalize("Theater"), "theater");
    // NFD: composed and decomposed accents compare equal.
    assert_eq!(normalize("Café"), normalize("Cafe\u{301}"));
}

#[test]
fn token_f1_is_squad_f1() {
    assert_eq!(token_f1("the cat sat", "cat sat"), 1.0);
    // pred {a?} -> "cat on mat" vs "cat sat on mat": p=3/3, r=3/4.
    let f = token_f1("cat on the mat", "cat sat on the mat");
    assert!((f - 2.0 * 1.0 * 0.75 / 1.75).abs() < 1e-12, "{f}");
    assert_eq!(token_f1("dog", "cat"), 0.0);
    assert_eq!(token_f1("", ""), 1.0);
    assert_eq!(token_f1("", "cat"), 0.0);
    // Repeated tokens count once per occurrence in the gold.
    let f = token_f1("cat cat", "cat");
    assert!((f - 2.0 * 0.5 / 1.5).abs() < 1e-12, "{f}");
}

#[test]
fn numbers_parse_like_gsm8k_graders() {
    assert_eq!(parse_number("Janet sells 9 eggs ... #### 18"), Some(18.0));
    assert_eq!(parse_number("#### 1,234"), Some(1234.0));
    assert_eq!(parse_number("so she makes $18 a day."), Some(18.0));
    assert_eq!(parse_number("It costs $1,200.50 in total"), Some(1200.5));
    assert_eq!(parse_number("the answer is -3"), Some(-3.0));
    assert_eq!(parse_number("pages 3-5"), Some(5.0));
    assert_eq!(parse_number("about .5 of it"), Some(0.5));
    assert_eq!(parse_number("no digits here"), None);
    assert_eq!(parse_number("42."), Some(42.0));
}

#[test]
fn sql_fences_and_semicolons_are_stripped() {
    assert_eq!(strip_fences("```sql\nSELECT 1;\n```"), "SELECT 1");
    assert_eq!(strip_fences("  SELECT 1 ;; "), "SELECT 1");
}

#[test]
fn command_replies_parse() {
    let p = super::command::parse_reply_for_test;
    assert_eq!(p("0.5").unwrap().score, 0.5);
    assert_eq!(p("true").unwrap().score, 1.0);
    let s = p(r#"{"score": 0.25, "feedback": "half wrong"}"#).unwrap();
    assert_eq!((s.score, s.feedback.as_deref()), (0.25, Some("half wrong")));
    assert!(p("1.5").unwrap_err().contains("outside"));
    assert!(p("great").unwrap_err().contains("expected one JSON line"));
    assert!(p(r#"{"feedback": "x"}"#).unwrap_err().contains("score"));
}

fn err(spec: serde_json::Value) -> String {
    Metric::from_spec(&spec, Path::new("."))
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_specs_are_rejected_with_hints() {
    assert!(err(json!({"type": "exact_mtch"})).contains("did you mean `exact_match`?"));
    assert_eq!(
        err(json!({"type": "f1", "feild": "answer"})),
        "invalid metric: f1: unknown key `feild` (did you mean `field`?); f1 takes: type, field, expected"
    );
    assert!(err(json!({"type": "numeric", "rel_tl": 1})).contains(
        "(did you mean `rel_tol`?); numeric takes: type, field, expected, rel_tol, abs_tol"
    ));
    assert!(err(json!({"field": "x"})).contains("missing `type`"));
    assert!(err(json!({"type": "regex", "pattern": "("})).contains("invalid pattern"));
    assert!(err(json!({"type": "numeric", "rel_tol": -1})).contains("rel_tol"));
    assert!(err(json!([{"type": "f1", "weight": -2}])).contains("weight"));
    assert!(err(json!([{"type": "f1", "weight": 0}])).contains("must not all be 0"));
    assert!(err(json!({"type": "sql_execution"})).contains("databases"));
    assert!(err(json!({"type": "command", "command": []})).contains("empty"));
    assert!(err(json!({"type": "f1", "weight": 1})).contains("only meaningful inside a list"));
}

#[test]
fn names_and_hashes() {
    let base = Path::new(".");
    let a = Metric::from_spec(&json!({"type": "f1", "field": "answer"}), base).unwrap();
    let b = Metric::parse_cli("f1:answer", base).unwrap();
    let c = Metric::parse_cli(r#"{"field": "answer", "type": "f1"}"#, base).unwrap();
    let y = Metric::parse_cli("{type: f1, field: answer}", base).unwrap();
    assert_eq!(a.content_hash(), y.content_hash());
    assert!(Metric::parse_cli("{type: f1, field", base).is_err());
    assert_eq!(a.name(), "f1(answer)");
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(a.content_hash(), c.content_hash());
    assert!(a.content_hash().starts_with("sha256:"));
    let d = Metric::parse_cli("exact_match:answer", base).unwrap();
    assert_ne!(a.content_hash(), d.content_hash());
    let w = Metric::from_spec(
        &json!([{"type": "exact_match", "field": "a", "weight": 3}, {"type": "f1", "field": "a"}]),
        base,
    )
    .unwrap();
    assert_eq!(w.name(), "0.75*exact_match(a) + 0.25*f1(a)");
}

#[tokio::test]
async fn score_value_scores_one_value() {
    let m = Metric::parse_cli("exact_match", Path::new(".")).unwrap();
    let ctx = MetricContext::default();
    let s = m
        .score_value("answer", &json!("Paris"), Some(&json!("paris")), &ctx)
        .await
        .unwrap();
    assert_eq!(s.score, 1.0);
    let err = m.score_value("answer", &json!("Paris"), None, &ctx).await;
    assert!(err.is_err());
}

#[test]
fn metrics_and_their_futures_can_cross_threads() {
    fn shared<T: Send + Sync + Clone>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let m = Metric::parse_cli("exact_match", Path::new(".")).unwrap();
    shared(&m);
    let ex = crate::data::Example {
        index: 0,
        row: 1,
        inputs: Default::default(),
        expected: Default::default(),
        extra: Default::default(),
    };
    let outputs = serde_json::Map::new();
    let ctx = MetricContext::default();
    // Optimizers spawn scoring onto tokio tasks: the future must be Send.
    send(m.score(&ex, &outputs, &ctx));
}
