//! Issue #17: DSPy's own adapter test cases that turn a reply into typed
//! values, run through the real `lmc run` against a stub that returns the
//! exact reply (tests/fixtures/adapter/dspy-parse-cases.json), plus the
//! things around parsing the cases cannot show: the thinking recorded in the
//! trace, one LM call per example, no retries on null content, defaults in
//! `inspect` and `schema`, and defaults checked at load.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, root, run};

fn cases() -> Vec<Value> {
    let path = root().join("tests/fixtures/adapter/dspy-parse-cases.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

/// The one-predictor program of a case, written as JSON (which is YAML).
fn program(case: &Value) -> String {
    let inputs = case
        .get("inputs")
        .cloned()
        .unwrap_or_else(|| json!({"question": "str"}));
    let outputs = case["outputs"].as_object().unwrap();
    let kind = case
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("predict");
    let bound: Map<String, Value> = outputs
        .keys()
        // Chain of thought adds `reasoning`; the program exposes the rest.
        .map(|k| (k.clone(), json!(format!("p.{k}"))))
        .collect();
    json!({
        "name": "case",
        "signatures": {"s": {"inputs": inputs, "outputs": outputs}},
        "inputs": inputs,
        "nodes": {"p": {"kind": kind, "signature": "s"}},
        "outputs": bound,
    })
    .to_string()
}

/// The stub's answer to a case: its reply as content, or its whole body.
fn reply(case: &Value) -> StubReply {
    match case.get("body") {
        Some(body) => StubReply::Raw(200, body.to_string()),
        None => StubReply::Ok(case["reply"].as_str().unwrap().to_string()),
    }
}

/// Run one case; `Ok(values)` or `Err(error text)`.
fn run_case(stub: &StubServer, dir: &Path, case: &Value) -> Result<Value, String> {
    let id = case["id"].as_str().unwrap();
    let file = dir.join(format!("{id}.yaml"));
    std::fs::write(&file, program(case)).unwrap();
    let mut cmd = lmc();
    cmd.env("LMC_CACHE_DIR", dir.join("cache"))
        .arg("run")
        .arg(&file)
        .args(["--provider", "openai", "--model", id, "--base-url"])
        .arg(stub.url())
        .args(["--adapter", case["adapter"].as_str().unwrap()])
        .args(["--no-cache", "--max-retries", "0", "--json"]);
    let inputs = case.get("inputs").and_then(Value::as_object);
    for name in inputs.map_or(vec!["question".to_string()], |m| {
        m.keys().cloned().collect()
    }) {
        cmd.args(["--input", &format!("{name}=some input")]);
    }
    let (code, out, err) = run(&mut cmd);
    let line: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| {
        panic!("{id}: stdout is not one JSON line ({e}): {out}\nstderr: {err}")
    });
    match code {
        0 => Ok(line["outputs"].clone()),
        3 => Err(line["error"].as_str().unwrap_or_default().to_string()),
        other => panic!("{id}: exit {other}, stderr: {err}"),
    }
}

fn matches(got: &Result<Value, String>, want: &Value) -> bool {
    match (got, want.get("values"), want.get("error")) {
        (Ok(v), Some(values), _) => v == values,
        (Err(e), _, Some(Value::String(s))) => e.contains(s.as_str()),
        (Err(_), _, Some(Value::Bool(true))) => true,
        _ => false,
    }
}

#[test]
fn issue17_dspy_adapter_cases_through_the_real_binary() {
    let cases = cases();
    let by_model: HashMap<String, StubReply> = cases
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), reply(c)))
        .collect();
    let stub = StubServer::start(move |req: &StubRequest| {
        by_model
            .get(&req.model)
            .cloned()
            .unwrap_or(StubReply::Status(404, None))
    });
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let (mut dspy_total, mut agree, mut shape) = (0, 0, 0);
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        let got = run_case(&stub, dir.path(), case);
        if !matches(&got, &case["expect"]) {
            failures.push(format!("{id}: got {got:?}, want {}", case["expect"]));
        }
        if case["from"] == "issue #17" {
            continue;
        }
        dspy_total += 1;
        match case.get("dspy") {
            None => agree += 1,
            Some(d) => {
                assert!(
                    matches!(case["difference"].as_str(), Some("deliberate" | "shape"))
                        && case["why"].as_str().is_some_and(|w| w.len() > 20),
                    "{id}: a difference needs its kind and reason"
                );
                assert!(
                    !matches(&got, d),
                    "{id}: lmc now gives DSPy's result; drop the recorded difference"
                );
                if case["difference"] == "shape" {
                    shape += 1;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // One LM call per case: no second (JSON-fallback) call, no retries.
    assert_eq!(stub.requests(), cases.len());
    eprintln!(
        "{agree} of {dspy_total} DSPy cases agree ({} counting shape-only differences)",
        agree + shape
    );
    // The docs state the same figures and list every difference.
    let doc = std::fs::read_to_string(root().join("docs/parsing.md")).unwrap();
    let figure = format!("{agree} of {dspy_total}");
    assert!(
        doc.contains(&figure),
        "docs/parsing.md must state `{figure}`"
    );
    for case in cases.iter().filter(|c| c.get("dspy").is_some()) {
        let id = case["id"].as_str().unwrap();
        assert!(
            doc.contains(&format!("`{id}`")),
            "docs/parsing.md must table `{id}`"
        );
    }
}

/// The program of one case by id, for the targeted tests below.
fn case(id: &str) -> Value {
    cases().into_iter().find(|c| c["id"] == id).unwrap()
}

#[test]
fn issue17_thinking_is_kept_out_of_parsing_and_recorded_in_the_trace() {
    let think = case("issue17-think-quoting-the-format");
    let separate = case("chat-native-reasoning");
    let stub = StubServer::start({
        let (a, b) = (reply(&think), reply(&separate));
        move |req: &StubRequest| {
            if req.model == "a" {
                a.clone()
            } else {
                b.clone()
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    for (model, c, thought) in [
        ("a", &think, "Maybe Lyon?"),
        ("b", &separate, "Step-by-step thinking"),
    ] {
        let file = dir.path().join(format!("{model}.yaml"));
        std::fs::write(&file, program(c)).unwrap();
        let trace = dir.path().join(format!("{model}.jsonl"));
        let (code, out, err) = run(lmc()
            .env("LMC_CACHE_DIR", dir.path().join("cache"))
            .arg("run")
            .arg(&file)
            .args(["--provider", "openai", "--model", model, "--base-url"])
            .arg(stub.url())
            .args(["--input", "question=capital of France?", "--trace"])
            .arg(&trace));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("answer: Paris"), "{out}");
        let line: Value =
            serde_json::from_str(std::fs::read_to_string(&trace).unwrap().trim()).unwrap();
        let lm = &line["step"]["lm"];
        assert!(lm["reasoning"].as_str().unwrap().contains(thought), "{lm}");
        assert!(!lm["reasoning"].as_str().unwrap().contains("<think>"));
        assert_eq!(line["step"]["outputs"]["answer"], "Paris");
        let (code, shown, err) = run(lmc().args(["trace", "show"]).arg(&trace));
        assert_eq!(code, 0, "{err}");
        assert!(shown.contains("out answer = Paris"), "{shown}");
        assert!(
            shown.contains("thinking: ") && shown.contains(thought),
            "{shown}"
        );
    }
    // A second run is a cache hit that still carries the separate reasoning.
    let (code, out, _) = run(lmc()
        .env("LMC_CACHE_DIR", dir.path().join("cache"))
        .arg("run")
        .arg(dir.path().join("b.yaml"))
        .args(["--provider", "openai", "--model", "b", "--base-url"])
        .arg(stub.url())
        .args(["--input", "question=capital of France?", "--json"]));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["outputs"]["reasoning"],
        "Step-by-step thinking about the capital of France"
    );
    assert_eq!(stub.requests(), 2);
}

#[test]
fn issue17_null_content_is_a_parse_failure_with_the_raw_reply_and_no_retry() {
    let stub = StubServer::start(|_| {
        StubReply::Raw(200, r#"{"choices":[{"message":{"content":null}}]}"#.into())
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, program(&case("chat-null-content"))).unwrap();
    let started = std::time::Instant::now();
    let (code, _, err) = run(lmc()
        .env("LMC_CACHE_DIR", dir.path().join("cache"))
        .arg("run")
        .arg(&file)
        .args(["--provider", "openai", "--model", "m", "--base-url"])
        .arg(stub.url())
        .args(["--input", "question=q"]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("could not parse field `*`: the reply is empty"),
        "{err}"
    );
    assert!(err.contains("raw reply:"), "{err}");
    assert_eq!(stub.requests(), 1, "null content must not be retried");
    assert!(started.elapsed().as_secs() < 5);
}

const DEFAULTS: &str = r#"name: defaults
signatures:
  s:
    inputs:
      question: str
    outputs:
      answer: str
      note: {type: "optional[str]", default: No note}
      tags: {type: "list[str]", default: []}
inputs:
  question: str
nodes:
  p: {kind: predict, signature: s}
outputs:
  answer: p.answer
"#;

#[test]
fn issue17_output_defaults_show_in_inspect_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.yaml");
    std::fs::write(&file, DEFAULTS).unwrap();
    let (code, out, err) = run(lmc().arg("inspect").arg(&file));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(r#"defaults: note = "No note", tags = []"#),
        "{out}"
    );
    let (code, out, _) = run(lmc().arg("inspect").arg(&file).arg("--json"));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["defaults"], json!({"note": "No note", "tags": []}));
    let (code, out, _) = run(lmc().arg("schema"));
    assert_eq!(code, 0);
    let schema: Value = serde_json::from_str(&out).unwrap();
    let field = &schema["$defs"]["field"]["anyOf"][1]["properties"]["default"];
    assert!(
        field["description"]
            .as_str()
            .unwrap()
            .contains("Output fields only"),
        "{field}"
    );
}

#[test]
fn issue17_a_default_of_the_wrong_type_is_a_located_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let bad = DEFAULTS
        .replace("default: []", "default: not a list")
        .replace(
            "question: str\n    outputs",
            "question: {type: str, default: x}\n    outputs",
        );
    std::fs::write(&file, bad).unwrap();
    let (code, _, err) = run(lmc().arg("check").arg(&file));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.yaml:9:"), "{err}");
    assert!(err.contains("the default is not a `list[str]`"), "{err}");
    assert!(err.contains("bad.yaml:5:"), "{err}");
    assert!(
        err.contains("`default` applies only to output fields"),
        "{err}"
    );
}

mod roundtrip {
    //! Issue #17's property: for any signature and any values, the demo
    //! reply lmc renders parses back to the same values, with and without a
    //! reasoning model's `<think>` block (one that quotes the format) in
    //! front, under both adapters.

    use lmc::adapter::{chat, json, parse, Role};
    use lmc::overlay::Demo;
    use lmc::signature::{Field, FieldType, Signature};
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    fn text() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9 ,.!?'\"()-]{0,24}(\n[A-Za-z0-9 ,.]{1,12})?"
            .prop_map(|s| s.trim().to_string())
    }

    fn typed_value() -> impl Strategy<Value = (FieldType, Value)> {
        let boxed = |t: FieldType| Box::new(t);
        prop_oneof![
            text().prop_map(|s| (FieldType::String, json!(s))),
            any::<i64>().prop_map(|i| (FieldType::Int, json!(i))),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| (FieldType::Float, json!(f))),
            any::<bool>().prop_map(|b| (FieldType::Bool, json!(b))),
            prop::sample::select(vec!["positive", "negative", "neutral"]).prop_map(|v| {
                let values = vec!["positive".into(), "negative".into(), "neutral".into()];
                (FieldType::Enum { values }, json!(v))
            }),
            vec(text(), 0..4).prop_map(move |v| (
                FieldType::List {
                    item: boxed(FieldType::String)
                },
                json!(v)
            )),
            vec(any::<i32>(), 0..4).prop_map(move |v| (
                FieldType::List {
                    item: boxed(FieldType::Int)
                },
                json!(v)
            )),
            proptest::option::of(any::<i32>()).prop_map(move |o| (
                FieldType::Optional {
                    inner: boxed(FieldType::Int)
                },
                json!(o)
            )),
            proptest::option::of(
                "[a-z]{1,8}".prop_filter("not a null word", |s| s != "none" && s != "null")
            )
            .prop_map(move |o| (
                FieldType::Optional {
                    inner: boxed(FieldType::String)
                },
                json!(o)
            )),
            btree_map(
                "[a-z]{1,6}",
                prop_oneof![
                    text().prop_map(Value::from),
                    any::<i32>().prop_map(Value::from),
                    any::<bool>().prop_map(Value::from),
                ],
                0..4
            )
            .prop_map(|m| (
                FieldType::Json { schema: None },
                Value::Object(m.into_iter().collect())
            )),
        ]
    }

    /// Distinct output names (including `reasoning`, which must come from
    /// its own section, never from the thinking) with a type and value each.
    fn outputs() -> impl Strategy<Value = Vec<(String, FieldType, Value)>> {
        let names = vec![
            "answer",
            "score",
            "tags",
            "label",
            "note",
            "count",
            "reasoning",
            "data",
        ];
        prop::sample::subsequence(names, 1..=4).prop_flat_map(|names| {
            let n = names.len();
            vec(typed_value(), n).prop_map(move |tv| {
                names
                    .iter()
                    .zip(tv)
                    .map(|(name, (t, v))| (name.to_string(), t, v))
                    .collect()
            })
        })
    }

    fn thinking() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-z ]{0,20}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn issue17_rendered_demo_replies_parse_back(outs in outputs(), think in thinking(), as_json in any::<bool>()) {
            let sig = Signature {
                instructions: None,
                inputs: vec![Field::new("question", FieldType::String)],
                outputs: outs.iter().map(|(n, t, _)| Field::new(n.clone(), t.clone())).collect(),
            };
            let expected: Map<String, Value> =
                outs.iter().map(|(n, _, v)| (n.clone(), v.clone())).collect();
            let mut fields = expected.clone();
            fields.insert("question".into(), json!("q"));
            let demo = Demo { fields, augmented: false };
            let messages = if as_json {
                json::render(&sig, &[demo], &Map::new())
            } else {
                chat::render(&sig, &[demo], &Map::new())
            };
            let reply = &messages.iter().find(|m| m.role == Role::Assistant).unwrap().content;
            let reply = match &think {
                // The thinking quotes the format and a wrong answer.
                Some(t) => format!(
                    "<think>{t} Format: [[ ## {0} ## ]] then {{\"{0}\": \"Lyon\"}}?</think>\n{reply}",
                    outs[0].0
                ),
                None => reply.clone(),
            };
            let parsed = if as_json {
                parse::parse_json(&sig, &reply)
            } else {
                parse::parse_chat(&sig, &reply)
            };
            prop_assert_eq!(parsed, Ok(expected), "reply:\n{}", reply);
        }
    }
}
