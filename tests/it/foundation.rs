//! Tests for the foundation area: the program file. `lmc check` on the
//! shipped programs and on every invalid fixture (full output pinned by
//! insta snapshots), malformed YAML giving located errors (never a panic),
//! lowering of every node kind, default bindings and graph order, the
//! shorthand, `lmc schema`, and a property that loading arbitrary text
//! never panics.

use lmc::nodes;
use lmc::program::{load, load_str, Binding, NodeKind, RewardSpec};
use lmc::signature::FieldType;
use proptest::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

use crate::support::{lmc, root, run};

fn check(args: &[&str]) -> (i32, String, String) {
    run(lmc().arg("check").args(args))
}

/// `exit`, stdout and stderr together, as a snapshot shows them.
fn transcript(args: &[&str]) -> String {
    let (code, out, err) = check(args);
    format!("exit: {code}\n--- stdout\n{out}--- stderr\n{err}")
}

fn invalid_fixtures() -> Vec<PathBuf> {
    let dir = root().join("tests/fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_program_checks_ok() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("programs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| format!("programs/{}", e.file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let (code, out, err) = check(&args);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(out.lines().count(), files.len(), "{out}");
    let re = regex::Regex::new(
        r"^ok  programs/\S+\.yaml  \S+  \d+ predictors? (\([^)]*\) )? sha256:[0-9a-f]{8}…$",
    )
    .unwrap();
    for line in out.lines() {
        assert!(re.is_match(line), "bad ok line: {line:?}");
    }
}

#[test]
fn sentiment_ok_line_names_the_predictor_and_hash() {
    let (code, out, _) = check(&["programs/sentiment.yaml"]);
    assert_eq!(code, 0);
    let bytes = std::fs::read(root().join("programs/sentiment.yaml")).unwrap();
    let hash = hex::encode(Sha256::digest(&bytes));
    assert_eq!(
        out,
        format!(
            "ok  programs/sentiment.yaml  sentiment  1 predictor (classify)  sha256:{}…\n",
            &hash[..8]
        )
    );
}

#[test]
fn check_a_directory_checks_its_yaml_files() {
    let (code, out, _) = check(&["programs"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ok  programs/sentiment.yaml  sentiment"),
        "{out}"
    );
    let n = std::fs::read_dir(root().join("programs")).unwrap().count();
    assert_eq!(out.lines().count(), n);
}

#[test]
fn check_without_files_uses_the_project_file() {
    let (code, out, err) = check(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("ok  programs/sentiment.yaml  sentiment  1 predictor (classify)"),
        "{out}"
    );
    let (code, out, _) = run(lmc()
        .arg("check")
        .env("LMC_PROGRAM", "tests/fixtures/invalid/cycle.yaml"));
    assert_eq!(code, 2);
    assert!(out.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(lmc().arg("check").current_dir(dir.path()));
    assert_eq!(code, 2);
    assert!(err.contains("no program given"), "{err}");
}

#[test]
fn check_json_reports_each_file() {
    let (code, out, _) = check(&[
        "--json",
        "programs/sentiment.yaml",
        "tests/fixtures/invalid/unknown_node_kind.yaml",
    ]);
    assert_eq!(code, 2);
    let v: Value = serde_json::from_str(&out).expect("JSON on stdout");
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["ok"], true);
    assert_eq!(arr[0]["predictors"][0], "classify");
    assert!(arr[0]["content_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(arr[1]["ok"], false);
    let d = &arr[1]["diagnostics"][0];
    assert_eq!(d["message"], "unknown node kind `predcit`");
    assert_eq!(d["path"], "nodes.answer.kind");
    assert_eq!(d["pos"]["line"], 10);
    assert_eq!(d["hint"], "did you mean `predict`?");
}

#[test]
fn a_valid_and_an_invalid_file_exit_2_with_both_reported() {
    let (code, out, err) = check(&[
        "programs/sentiment.yaml",
        "tests/fixtures/invalid/cycle.yaml",
    ]);
    assert_eq!(code, 2);
    assert!(out.starts_with("ok  programs/sentiment.yaml"));
    assert!(err.contains("cycle"), "{err}");
}

#[test]
fn invalid_fixtures_are_pinned_by_snapshots() {
    let files = invalid_fixtures();
    assert!(files.len() >= 20, "only {} fixtures", files.len());
    for f in files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = transcript(&[&rel]);
        // Every fixture is an input error, located, and never a panic.
        assert!(text.starts_with("exit: 2\n"), "{rel}:\n{text}");
        assert!(!text.contains("panicked"), "{rel}:\n{text}");
        let located = regex::Regex::new(&format!("--> {}:\\d+:\\d+", regex::escape(&rel))).unwrap();
        assert!(located.is_match(&text), "{rel}: no file:line:col\n{text}");
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("check_invalid__{name}"), text);
    }
}

/// Malformed YAML (issue 2: bad indentation, tab, unknown key) gives a
/// located error and exit 2, never a panic.
#[test]
fn issue_2_malformed_yaml_gives_located_errors() {
    let cases = [
        ("bad_indentation.yaml", ":7:", "invalid YAML"),
        ("tab_indentation.yaml", ":6:", "tabs"),
        ("unclosed_quote.yaml", ":3:", "invalid YAML"),
        ("unknown_top_key.yaml", ":8:1", "unknown key `nodse`"),
    ];
    for (file, at, msg) in cases {
        let rel = format!("tests/fixtures/invalid/{file}");
        let (code, out, err) = check(&[&rel]);
        assert_eq!(code, 2, "{file}: {err}");
        assert!(out.is_empty());
        assert!(err.contains(&format!("--> {rel}{at}")), "{file}: {err}");
        assert!(err.contains(msg), "{file}: {err}");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let (code, _, err) = check(&["tests/fixtures/invalid/many_errors.yaml"]);
    assert_eq!(code, 2);
    assert_eq!(err.matches("\nerror: ").count() + 1, 7, "{err}");
    assert!(err.ends_with("error: 6 errors found\n"), "{err}");
    for hint in [
        "did you mean `description`?",
        "did you mean `chain_of_thought`?",
        "did you mean `inputs`?",
        "did you mean `second`?",
    ] {
        assert!(err.contains(hint), "missing {hint}: {err}");
    }
}

#[test]
fn missing_file_is_an_input_error() {
    let (code, _, err) = check(&["programs/nope.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read program file"), "{err}");
    assert!(err.contains("programs/nope.yaml"), "{err}");
}

#[test]
fn sentiment_lowers_to_the_expected_program() {
    let path = root().join("programs/sentiment.yaml");
    let p = load(&path).unwrap();
    assert_eq!(p.name, "sentiment");
    assert_eq!(p.nodes.len(), 1);
    let preds = p.predictors();
    assert_eq!(preds.len(), 1);
    assert_eq!(preds[0].path, "classify");
    let sig = &preds[0].signature;
    assert_eq!(sig.inputs[0].name, "sentence");
    assert_eq!(
        sig.outputs[0].ty,
        FieldType::Enum {
            values: vec!["positive".into(), "negative".into()]
        }
    );
    assert_eq!(
        p.nodes[0].inputs,
        vec![(
            "sentence".to_string(),
            Binding::ProgramInput("sentence".into())
        )]
    );
    assert_eq!(p.output_fields[0].name, "sentiment");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(p.content_hash, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(p.source.as_bytes(), &bytes[..]);
    let dev = p.datasets.dev.clone().unwrap();
    assert!(dev.is_absolute() && dev.exists(), "{dev:?}");
    assert!(p.datasets.train.clone().unwrap().exists());
    assert_eq!(
        p.datasets.columns.get("label").map(String::as_str),
        Some("sentiment")
    );
    assert_eq!(p.metric.as_ref().unwrap()["type"], "exact_match");
    assert!(p.lm.is_none());
}

/// Every node kind, written out of graph order, with default bindings.
const ALL_KINDS: &str = r#"
name: all_kinds
tools:
  db: {kind: sqlite, path: ../datasets/spider/database/concert_singer/concert_singer.sqlite, max_rows: 5}
  wiki: {kind: retrieve, corpus: ../datasets/hotpotqa/corpus.jsonl, k: 4}
signatures:
  qa:
    instructions: Answer.
    inputs:
      question: str
      passages: {type: "list[str]", description: found passages}
    outputs:
      answer: {type: str, prefix: "Answer:"}
inputs:
  question: str
nodes:
  final:
    kind: best_of_n
    signature: "question, summary: list[str] -> verdict: bool"
    inputs: {summary: summarize.summary}
    reward: {type: non_empty, field: verdict}
  summarize:
    kind: map
    signature: "passages: str -> summary"
    chain_of_thought: true
    over: passages
    inputs: {passages: search.passages}
  agent:
    kind: react
    signature: "question -> sql"
    tools: [db]
  tables:
    kind: tool
    tool: db
    operation: list_tables
  run_sql:
    kind: tool
    tool: db
    operation: query
    inputs: {sql: agent.sql, note: {value: 3}}
  search:
    kind: retrieve
    tool: wiki
    inputs: {query: input.question}
  think:
    kind: chain_of_thought
    signature: qa
  fix:
    kind: refine
    signature: "question, answer -> sql"
    inputs: {answer: think.answer}
    n: 2
    threshold: 0.5
    reward: {type: tool_ok, tool: db, field: sql}
outputs:
  verdict: final.verdict
  answer: think.answer
  rows: run_sql.result
metric: [{type: exact_match, field: answer, weight: 2}, {type: f1, field: answer}]
"#;

fn at_programs_dir() -> PathBuf {
    root().join("programs/all_kinds.yaml")
}

#[test]
fn every_node_kind_lowers_with_outputs_and_graph_order() {
    let p = load_str(ALL_KINDS, &at_programs_dir()).unwrap_or_else(|d| panic!("{d}"));
    let order: Vec<&str> = p.nodes.iter().map(|n| n.name.as_str()).collect();
    let pos = |n: &str| order.iter().position(|o| *o == n).unwrap();
    assert!(pos("search") < pos("think"));
    assert!(pos("search") < pos("summarize"));
    assert!(pos("summarize") < pos("final"));
    assert!(pos("agent") < pos("run_sql"));
    assert!(pos("think") < pos("fix"));

    let node = |n: &str| p.node(n).unwrap();
    let out_names =
        |n: &str| -> Vec<String> { node(n).outputs.iter().map(|f| f.name.clone()).collect() };
    assert_eq!(out_names("think"), ["reasoning", "answer"]);
    assert_eq!(node("think").outputs[1].prefix.as_deref(), Some("Answer:"));
    assert_eq!(out_names("search"), ["passages"]);
    assert_eq!(
        node("search").outputs[0].ty,
        FieldType::List {
            item: Box::new(FieldType::String)
        }
    );
    assert!(matches!(
        node("search").kind,
        NodeKind::Retrieve(nodes::retrieve::Retrieve { k: 4, .. })
    ));
    assert_eq!(out_names("run_sql"), ["result", "ok"]);
    assert_eq!(node("run_sql").outputs[1].ty, FieldType::Bool);
    assert_eq!(
        node("run_sql").inputs[1].1,
        Binding::Literal(serde_json::json!(3))
    );
    assert_eq!(out_names("summarize"), ["reasoning", "summary"]);
    assert!(node("summarize")
        .outputs
        .iter()
        .all(|f| matches!(f.ty, FieldType::List { .. })));
    assert_eq!(out_names("agent"), ["sql"]);
    match &node("agent").kind {
        NodeKind::React(nodes::react::React {
            tools, max_iters, ..
        }) => {
            assert_eq!(tools, &["db".to_string()]);
            assert_eq!(*max_iters, 5);
        }
        k => panic!("{k:?}"),
    }
    match &node("fix").kind {
        NodeKind::Refine(nodes::refine::Refine {
            n,
            threshold,
            advise,
            reward,
            chain_of_thought,
            ..
        }) => {
            assert_eq!(
                (*n, *threshold, *advise, *chain_of_thought),
                (2, 0.5, true, false)
            );
            assert_eq!(
                reward,
                &RewardSpec::ToolOk {
                    tool: "db".into(),
                    field: "sql".into()
                }
            );
        }
        k => panic!("{k:?}"),
    }
    assert!(matches!(
        node("final").kind,
        NodeKind::Refine(nodes::refine::Refine {
            advise: false,
            n: 3,
            ..
        })
    ));
    // Default bindings: `think.passages` is the unique earlier `passages`.
    let think_inputs = &node("think").inputs;
    assert_eq!(think_inputs[0].1, Binding::ProgramInput("question".into()));
    assert_eq!(
        think_inputs[1].1,
        Binding::NodeOutput {
            node: "search".into(),
            field: "passages".into()
        }
    );
    let preds: Vec<String> = p.predictors().into_iter().map(|r| r.path).collect();
    for want in [
        "agent.react",
        "agent.extract",
        "think",
        "fix",
        "summarize",
        "final",
    ] {
        assert!(preds.contains(&want.to_string()), "{preds:?}");
    }
    // Tool paths are stored absolute.
    let db = p.tools.iter().find(|t| t.name == "db").unwrap();
    let path = db.config["path"].as_str().unwrap();
    assert!(
        Path::new(path).is_absolute() && Path::new(path).exists(),
        "{path}"
    );
    assert!(p.metric.as_ref().unwrap().is_array());
}

#[test]
fn shorthand_accepts_dspy_types() {
    let src = r#"
name: s
inputs: {question: str, context: "list[str]"}
nodes:
  a:
    kind: predict
    signature: "question, context: list[str] -> label: Literal['yes', 'no'], n: Optional[int], score: float"
outputs: {label: a.label, n: a.n}
"#;
    let p = load_str(src, &at_programs_dir()).unwrap_or_else(|d| panic!("{d}"));
    let outs = &p.nodes[0].outputs;
    assert_eq!(
        outs[0].ty,
        FieldType::Enum {
            values: vec!["yes".into(), "no".into()]
        }
    );
    assert_eq!(
        outs[1].ty,
        FieldType::Optional {
            inner: Box::new(FieldType::Int)
        }
    );
    assert_eq!(outs[2].ty, FieldType::Float);
    assert_eq!(
        p.output_fields[1].ty,
        FieldType::Optional {
            inner: Box::new(FieldType::Int)
        }
    );
}

#[test]
fn json_fields_carry_their_schema() {
    let src = r#"
name: j
signatures:
  extract:
    inputs: {text: str}
    outputs:
      person: {type: json, schema: {type: object, properties: {name: {type: string}}, required: [name]}}
inputs: {text: str}
nodes:
  extract: {kind: predict, signature: extract}
outputs: {person: extract.person}
"#;
    let p = load_str(src, &at_programs_dir()).unwrap_or_else(|d| panic!("{d}"));
    match &p.nodes[0].outputs[0].ty {
        FieldType::Json { schema: Some(s) } => assert_eq!(s["required"][0], "name"),
        t => panic!("{t:?}"),
    }
}

#[test]
fn schema_is_draft_2020_12_and_describes_the_format() {
    let (code, out, _) = run(lmc().arg("schema"));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let props = v["properties"].as_object().unwrap();
    for key in lmc::spec::PROGRAM_KEYS {
        assert!(props.contains_key(*key), "schema lacks `{key}`");
        assert!(
            props[*key].get("description").is_some(),
            "`{key}` undocumented"
        );
    }
    let kinds = v["$defs"]["node"]["properties"]["kind"]["enum"]
        .as_array()
        .unwrap();
    assert_eq!(kinds.len(), lmc::spec::NODE_KINDS.len());
}

/// Issue 16: every LM-calling kind takes `lm` (a named LM), lowered into
/// `Node.lm`; a kind that calls no LM refuses it like any misplaced key.
#[test]
fn issue16_lm_is_a_key_of_lm_calling_kinds_only() {
    let src = "name: t\nlms: {small: {model: tiny}}\ninputs: {q: str}\nnodes:\n  a: {kind: chain_of_thought, signature: \"q -> x\", lm: small}\n  b: {kind: predict, signature: \"q -> y\"}\noutputs: {x: a.x, y: b.y}\n";
    let p = load_str(src, Path::new("t.yaml")).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.node("a").unwrap().lm.as_deref(), Some("small"));
    assert_eq!(p.node("b").unwrap().lm, None);
    let (calls_lm, no_lm): (Vec<&&lmc::nodes::KindInfo>, Vec<_>) =
        lmc::nodes::REGISTRY.iter().partition(|k| k.calls_lm);
    assert!(calls_lm.iter().all(|k| k.all_keys().contains(&"lm")));
    assert!(no_lm.iter().all(|k| !k.all_keys().contains(&"lm")));
    let bad = "name: t\nlms: {small: {model: tiny}}\ntools: {d: {kind: sqlite, path: x.db}}\ninputs: {q: str}\nnodes:\n  r: {kind: tool, tool: d, lm: small}\noutputs: {x: r.result}\n";
    let err = load_str(bad, Path::new("t.yaml")).unwrap_err().to_string();
    assert!(
        err.contains("`lm` does not apply to a `tool` node"),
        "{err}"
    );
}

/// docs/program-format.md carries the node kind table `lmc schema --kinds`
/// generates from the registry, unchanged.
#[test]
fn docs_node_kind_table_is_the_registry_table() {
    let (code, out, err) = run(lmc().args(["schema", "--kinds"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2 + lmc::spec::NODE_KINDS.len());
    let doc = std::fs::read_to_string(root().join("docs/program-format.md")).unwrap();
    let begin = "<!-- generated by `lmc schema --kinds`: begin -->\n";
    let end = "<!-- generated by `lmc schema --kinds`: end -->";
    let a = doc.find(begin).expect("begin marker") + begin.len();
    let b = doc.find(end).expect("end marker");
    assert_eq!(
        doc[a..b].trim_end(),
        out.trim_end(),
        "regenerate the table in docs/program-format.md with `lmc schema --kinds`"
    );
}

/// Structural check of the shipped programs against the schema: every
/// top-level key and every node key is one the schema declares.
#[test]
fn shipped_programs_use_only_schema_keys() {
    let (_, out, _) = run(lmc().arg("schema"));
    let schema: Value = serde_json::from_str(&out).unwrap();
    let top = schema["properties"].as_object().unwrap();
    let node_props = schema["$defs"]["node"]["properties"].as_object().unwrap();
    for e in std::fs::read_dir(root().join("programs")).unwrap() {
        let path = e.unwrap().path();
        let p = load(&path).unwrap_or_else(|d| panic!("{d}"));
        let doc = lmc::yaml::parse(&p.source).unwrap().root.to_json();
        for (k, _) in doc.as_object().unwrap() {
            assert!(top.contains_key(k), "{path:?}: `{k}`");
        }
        for (_, n) in doc["nodes"].as_object().unwrap() {
            for (k, _) in n.as_object().unwrap() {
                assert!(node_props.contains_key(k), "{path:?}: node key `{k}`");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Lowering arbitrary text never panics.
    #[test]
    fn lowering_arbitrary_text_never_panics(s in "\\PC*") {
        let _ = load_str(&s, Path::new("x.yaml"));
    }

    /// Nor does lowering a real program with a span of it replaced by
    /// YAML-ish noise (indentation, colons, brackets, tabs, quotes).
    #[test]
    fn lowering_mutated_programs_never_panics(
        start in 0usize..2000,
        len in 0usize..40,
        noise in "[ \\t:\\-\\[\\]{}'\",.>|a-z\\n]{0,20}",
    ) {
        let src = ALL_KINDS;
        let a = start.min(src.len());
        let b = (a + len).min(src.len());
        if src.is_char_boundary(a) && src.is_char_boundary(b) {
            let mutated = format!("{}{}{}", &src[..a], noise, &src[b..]);
            let r = load_str(&mutated, &at_programs_dir());
            if let Err(d) = r {
                prop_assert!(!d.is_empty());
                prop_assert!(!d.to_string().is_empty());
            }
        }
    }
}
