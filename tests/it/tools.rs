//! Tests for the tools area: the read-only SQLite tool (the essay's "never
//! write to the database", enforced in code), BM25 retrieval, command tools,
//! and the ReAct / refine / best_of_n / map / tool / retrieve module kinds run
//! against the scripted stub LM server (tests/support/stub.rs) through the
//! real HTTP backend, so every request is what a real server would see.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lmc::lm::http::{HttpConfig, HttpLm};
use lmc::nodes;
use lmc::overlay::Overlay;
use lmc::program::{Binding, Node, NodeKind, Program, RewardSpec, ToolSpec};
use lmc::run::{run_program, RunContext};
use lmc::signature::{Field, FieldType, Signature};
use lmc::tools::Toolbox;

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, root, run};

// ---------- helpers ----------

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).expect("read db")))
}

/// A private copy of the shipped concert_singer database.
fn db_copy(dir: &Path) -> PathBuf {
    let src = root().join("datasets/spider/database/concert_singer/concert_singer.sqlite");
    let dst = dir.join("concert_singer.sqlite");
    std::fs::copy(&src, &dst).expect("copy db");
    dst
}

fn sqlite_spec(name: &str, path: &Path, extra: Value) -> ToolSpec {
    let mut config: std::collections::BTreeMap<String, Value> = Default::default();
    config.insert("path".into(), json!(path.to_string_lossy()));
    if let Value::Object(m) = extra {
        for (k, v) in m {
            config.insert(k, v);
        }
    }
    ToolSpec {
        name: name.into(),
        kind: "sqlite".into(),
        config,
    }
}

fn spec(name: &str, kind: &str, config: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        kind: kind.into(),
        config: config
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn sig(inputs: &[(&str, FieldType)], outputs: &[(&str, FieldType)]) -> Signature {
    Signature {
        instructions: None,
        inputs: inputs
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone()))
            .collect(),
        outputs: outputs
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone()))
            .collect(),
    }
}

fn program(
    inputs: &[&str],
    nodes: Vec<Node>,
    outputs: &[(&str, &str, &str)],
    tools: Vec<ToolSpec>,
) -> Program {
    Program {
        name: "t".into(),
        description: None,
        content_hash: "0".into(),
        source_path: None,
        source: String::new(),
        inputs: inputs
            .iter()
            .map(|n| Field::new(*n, FieldType::String))
            .collect(),
        outputs: outputs
            .iter()
            .map(|(o, n, f)| {
                (
                    o.to_string(),
                    Binding::NodeOutput {
                        node: n.to_string(),
                        field: f.to_string(),
                    },
                )
            })
            .collect(),
        output_fields: vec![],
        nodes,
        lm: None,
        lms: Default::default(),
        metric: None,
        datasets: Default::default(),
        tools,
        compile: None,
    }
}

fn input(name: &str) -> Binding {
    Binding::ProgramInput(name.into())
}

fn ctx(stub: &StubServer, toolbox: Toolbox) -> RunContext {
    let mut cfg = HttpConfig::new("stub", vec![stub.url()]);
    cfg.max_retries = 0;
    let lm = HttpLm::new(cfg).expect("http lm");
    let mut c = RunContext::new(Arc::new(lm));
    c.tools = Arc::new(toolbox);
    c
}

fn inputs(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

/// A chat-adapter reply with the given output fields.
fn reply(fields: &[(&str, &str)]) -> StubReply {
    let mut s = String::new();
    for (k, v) in fields {
        s.push_str(&format!("[[ ## {k} ## ]]\n{v}\n\n"));
    }
    s.push_str("[[ ## completed ## ]]");
    StubReply::Ok(s)
}

fn react_step(thought: &str, tool: &str, args: Value) -> StubReply {
    reply(&[
        ("next_thought", thought),
        ("next_tool_name", tool),
        ("next_tool_args", &args.to_string()),
    ])
}

/// The value of the LAST input field of the request (the one the chat
/// adapter renders just before "Respond with the corresponding output
/// fields"). The stub's own `input()` stops at the next `[[ ## ` marker,
/// which a ReAct trajectory itself contains.
fn last_input(req: &StubRequest, field: &str) -> Option<String> {
    let text = req.last_user();
    let marker = format!("[[ ## {field} ## ]]");
    let start = text.find(&marker)? + marker.len();
    let rest = &text[start..];
    let end = rest
        .find("Respond with the corresponding output fields")
        .unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

/// How many completed ReAct steps the request's trajectory holds.
fn trajectory_len(req: &StubRequest) -> usize {
    last_input(req, "trajectory")
        .map(|t| t.matches("[[ ## observation_").count())
        .unwrap_or(0)
}

fn is_react_step(req: &StubRequest) -> bool {
    req.system().contains("next_tool_name")
}

// ---------- the read-only guarantee ----------

const WRITES: &[&str] = &[
    "DROP TABLE singer",
    "INSERT INTO singer (Singer_ID, Name) VALUES (99, 'Mallory')",
    "UPDATE singer SET Age = 1",
    "DELETE FROM singer",
    "CREATE TABLE notes (x int)",
    "ALTER TABLE singer ADD COLUMN evil int",
    "PRAGMA query_only = OFF",
    "ATTACH DATABASE 'other.sqlite' AS other",
    "SELECT 1; DROP TABLE singer",
    "VACUUM",
    "REPLACE INTO stadium (Stadium_ID) VALUES (1)",
];

#[test]
fn sqlite_tool_refuses_every_write_and_the_file_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let before = sha256(&db);
    let tb = Toolbox::open_specs(&[sqlite_spec("db", &db, json!({}))]).expect("open");
    let rt = rt();
    for sql in WRITES {
        let o = rt.block_on(tb.call("db", &json!({"operation": "query", "sql": sql})));
        assert!(o.is_error, "`{sql}` was not refused: {}", o.observation);
        assert!(
            o.observation.contains("read-only") || o.observation.contains("SQL error"),
            "`{sql}`: {}",
            o.observation
        );
    }
    // Reads still work after all those attempts, and see the original data.
    let o = rt.block_on(tb.call("db", &json!({"sql": "SELECT count(*) AS n FROM singer"})));
    assert!(!o.is_error, "{}", o.observation);
    assert_eq!(o.observation, "n\n6");
    drop(tb);
    assert_eq!(sha256(&db), before, "the database file changed");
    assert!(!dir.path().join("other.sqlite").exists());
}

#[test]
fn react_agent_emitting_drop_insert_update_cannot_change_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let before = sha256(&db);
    // The scripted "model" tries a write at every step, then finishes.
    let stub = StubServer::start(|req: &StubRequest| {
        if !is_react_step(req) {
            return reply(&[("reasoning", "the writes failed"), ("answer", "6")]);
        }
        match trajectory_len(req) {
            0 => react_step(
                "drop it",
                "db",
                json!({"operation": "query", "sql": "DROP TABLE singer"}),
            ),
            1 => react_step(
                "insert",
                "db",
                json!({"sql": "INSERT INTO singer (Singer_ID) VALUES (7)"}),
            ),
            2 => react_step("update", "db", json!({"sql": "UPDATE singer SET Age = 0"})),
            _ => react_step("done", "finish", json!({})),
        }
    });
    let tb = Toolbox::open_specs(&[sqlite_spec("db", &db, json!({}))]).unwrap();
    let p = program(
        &["question"],
        vec![Node {
            name: "agent".into(),
            kind: NodeKind::React(nodes::react::React {
                signature: sig(
                    &[("question", FieldType::String)],
                    &[("answer", FieldType::String)],
                ),
                tools: vec!["db".into()],
                max_iters: 6,
            }),
            inputs: vec![("question".into(), input("question"))],
            outputs: vec![Field::new("answer", FieldType::String)],
            lm: None,
        }],
        &[("answer", "agent", "answer")],
        vec![],
    );
    let c = ctx(&stub, tb);
    let res = rt().block_on(run_program(
        &c,
        &p,
        &Overlay::default(),
        inputs(&[("question", "How many singers?")]),
    ));
    let outputs = res.outputs.expect("run ok");
    assert_eq!(outputs["answer"], json!("6"));
    let tool_steps: Vec<_> = res
        .trace
        .steps
        .iter()
        .filter_map(|s| s.tool.as_ref())
        .collect();
    assert_eq!(tool_steps.len(), 3);
    for t in &tool_steps {
        assert!(t.is_error, "a write was not refused: {}", t.observation);
        assert!(t.observation.contains("read-only"), "{}", t.observation);
    }
    drop(c);
    assert_eq!(sha256(&db), before, "the database file changed");
}

#[test]
fn sqlite_tool_limits_rows_and_time_and_reports_sql_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let tb = Toolbox::open_specs(&[sqlite_spec(
        "db",
        &db,
        json!({"max_rows": 3, "timeout_ms": 200}),
    )])
    .unwrap();
    let rt = rt();
    // Row limit: a 6x6 cross join has 36 rows; 3 come back, and the cut is said.
    let o = rt.block_on(tb.call(
        "db",
        &json!({"sql": "SELECT a.Name FROM singer a, singer b"}),
    ));
    assert!(!o.is_error);
    let lines: Vec<&str> = o.observation.lines().collect();
    assert_eq!(lines.len(), 5, "{}", o.observation); // header + 3 rows + note
    assert!(lines[4].contains("limited to 3 rows"));
    // Time limit: an endless recursive CTE is interrupted, promptly.
    let t0 = std::time::Instant::now();
    let o = rt.block_on(tb.call(
        "db",
        &json!({"sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"}),
    ));
    assert!(o.is_error);
    assert!(o.observation.contains("time limit"), "{}", o.observation);
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    // Errors are observations, with the database's message.
    let o = rt.block_on(tb.call("db", &json!({"sql": "SELECT nope FROM singer"})));
    assert!(o.is_error);
    assert!(
        o.observation.contains("no such column"),
        "{}",
        o.observation
    );
    // list_tables and describe.
    let o = rt.block_on(tb.call("db", &json!({"operation": "list_tables"})));
    assert_eq!(o.observation, "concert, singer, singer_in_concert, stadium");
    let o = rt.block_on(tb.call(
        "db",
        &json!({"operation": "describe", "table": ["singer", "ghost"]}),
    ));
    assert!(o.observation.contains("CREATE TABLE") && o.observation.contains("Singer_ID"));
    assert!(o.observation.contains("no such table: ghost"));
}

#[test]
fn opening_a_missing_database_is_a_config_error() {
    let err = Toolbox::open_specs(&[sqlite_spec(
        "db",
        Path::new("/nonexistent/x.sqlite"),
        json!({}),
    )])
    .expect_err("must fail");
    assert!(err.to_string().contains("/nonexistent/x.sqlite"), "{err}");
}

// ---------- retrieval ----------

#[test]
fn bm25_ranks_the_most_specific_passage_first() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    std::fs::write(
        &corpus,
        [
            json!({"title": "Ed Wood", "text": "Edward Davis Wood Jr. was an American filmmaker."}),
            json!({"title": "Scott Derrickson", "text": "Scott Derrickson is an American director, screenwriter and producer."}),
            json!({"title": "Woodson, Arkansas", "text": "Woodson is a census-designated place in Pulaski County, Arkansas."}),
            json!({"title": "Doctor Strange", "text": "Doctor Strange is a 2016 film directed by Scott Derrickson."}),
        ]
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n"),
    )
    .unwrap();
    let tb = Toolbox::open_specs(&[spec(
        "wiki",
        "retrieve",
        json!({"corpus": corpus.to_string_lossy(), "k": 2}),
    )])
    .unwrap();
    let hits = tb
        .retrieve("wiki", "Scott Derrickson director", None)
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits[0].starts_with("Scott Derrickson |"), "{hits:?}");
    assert!(hits[1].starts_with("Doctor Strange |"), "{hits:?}");
    let hits = tb.retrieve("wiki", "Pulaski County", Some(5)).unwrap();
    assert_eq!(
        hits,
        vec![
            "Woodson, Arkansas | Woodson is a census-designated place in Pulaski County, Arkansas."
        ]
    );
    // As a tool call: numbered passages; an empty query is an error observation.
    let o = rt().block_on(tb.call("wiki", &json!({"query": "filmmaker"})));
    assert!(
        o.observation.starts_with("[1] Ed Wood |"),
        "{}",
        o.observation
    );
    let o = rt().block_on(tb.call("wiki", &json!({"query": " "})));
    assert!(o.is_error);
}

#[test]
fn the_shipped_hotpotqa_corpus_finds_gold_paragraphs() {
    let corpus = root().join("datasets/hotpotqa/corpus.jsonl");
    let tb = Toolbox::open_specs(&[spec(
        "wiki",
        "retrieve",
        json!({"corpus": corpus.to_string_lossy(), "k": 3}),
    )])
    .unwrap();
    let hits = tb.retrieve("wiki", "Scott Derrickson", None).unwrap();
    assert!(
        hits.iter().any(|h| h.starts_with("Scott Derrickson |")),
        "{hits:?}"
    );
}

// ---------- command tools ----------

#[test]
fn command_tools_are_refused_unless_enabled_and_speak_json_on_stdin() {
    let off = Toolbox::open_specs(&[spec("echo", "command", json!({"command": ["cat"]}))]);
    let err = off.expect_err("disabled command must not open");
    assert!(err.to_string().contains("enabled: true"), "{err}");

    let tb = Toolbox::open_specs(&[
        spec(
            "echo",
            "command",
            json!({"command": ["cat"], "enabled": true}),
        ),
        spec(
            "fail",
            "command",
            json!({"command": ["sh", "-c", "echo boom >&2; exit 3"], "enabled": true}),
        ),
    ])
    .unwrap();
    let rt = rt();
    let o = rt.block_on(tb.call("echo", &json!({"x": 1})));
    assert!(!o.is_error);
    assert_eq!(
        serde_json::from_str::<Value>(&o.observation).unwrap(),
        json!({"x": 1})
    );
    let o = rt.block_on(tb.call("fail", &json!({})));
    assert!(o.is_error);
    assert!(o.observation.contains("boom"), "{}", o.observation);
}

// ---------- ReAct ----------

fn react_program(max_iters: u32) -> Program {
    program(
        &["question"],
        vec![Node {
            name: "agent".into(),
            kind: NodeKind::React(nodes::react::React {
                signature: sig(
                    &[("question", FieldType::String)],
                    &[("answer", FieldType::String)],
                ),
                tools: vec!["db".into()],
                max_iters,
            }),
            inputs: vec![("question".into(), input("question"))],
            outputs: vec![Field::new("answer", FieldType::String)],
            lm: None,
        }],
        &[("answer", "agent", "answer")],
        vec![],
    )
}

#[test]
fn react_selects_tools_sees_observations_and_errors_then_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let stub = StubServer::start(|req: &StubRequest| {
        if !is_react_step(req) {
            // The extract step must see the whole trajectory.
            let t = last_input(req, "trajectory").unwrap_or_default();
            let ok = t.contains("concert, singer")
                && t.contains("Execution error in db")
                && t.contains("count(*)\n6");
            return reply(&[
                ("reasoning", "read the count"),
                ("answer", if ok { "6" } else { "?" }),
            ]);
        }
        match trajectory_len(req) {
            0 => react_step("see tables", "db", json!({"operation": "list_tables"})),
            1 => react_step(
                "bad column",
                "db",
                json!({"operation": "query", "sql": "SELECT nope FROM singer"}),
            ),
            2 => {
                // The error came back as the observation of step 1.
                let t = last_input(req, "trajectory").unwrap_or_default();
                assert!(
                    t.contains("[[ ## observation_1 ## ]]\nExecution error in db"),
                    "{t}"
                );
                react_step(
                    "count",
                    "db",
                    json!({"operation": "query", "sql": "SELECT count(*) FROM singer"}),
                )
            }
            _ => react_step("done", "finish", json!({})),
        }
    });
    let tb = Toolbox::open_specs(&[sqlite_spec("db", &db, json!({}))]).unwrap();
    let c = ctx(&stub, tb);
    let res = rt().block_on(run_program(
        &c,
        &react_program(5),
        &Overlay::default(),
        inputs(&[("question", "How many singers?")]),
    ));
    assert_eq!(res.outputs.expect("ok")["answer"], json!("6"));
    let paths: Vec<String> = res
        .trace
        .steps
        .iter()
        .map(|s| {
            s.predictor.clone().unwrap_or_else(|| {
                format!(
                    "tool:{}",
                    s.tool.as_ref().map(|t| t.tool.as_str()).unwrap_or("")
                )
            })
        })
        .collect();
    assert_eq!(
        paths,
        vec![
            "agent.react",
            "tool:db",
            "agent.react",
            "tool:db",
            "agent.react",
            "tool:db",
            "agent.react",
            "agent.extract"
        ]
    );
    // The tool list with descriptions is in the step predictor's instructions.
    let first = &res.trace.steps[0].lm.as_ref().unwrap().messages[0].content;
    assert!(first.contains("(1) db, whose description is"), "{first}");
    assert!(first.contains("(2) finish"), "{first}");
    assert_eq!(stub.requests(), 5);
}

#[test]
fn react_stops_at_max_iters_and_still_extracts() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let stub = StubServer::start(|req: &StubRequest| {
        if is_react_step(req) {
            react_step("again", "db", json!({"operation": "list_tables"}))
        } else {
            reply(&[("reasoning", "gave up"), ("answer", "unknown")])
        }
    });
    let tb = Toolbox::open_specs(&[sqlite_spec("db", &db, json!({}))]).unwrap();
    let c = ctx(&stub, tb);
    let res = rt().block_on(run_program(
        &c,
        &react_program(2),
        &Overlay::default(),
        inputs(&[("question", "q")]),
    ));
    assert_eq!(res.outputs.expect("ok")["answer"], json!("unknown"));
    let react_calls = res
        .trace
        .steps
        .iter()
        .filter(|s| s.predictor.as_deref() == Some("agent.react"))
        .count();
    assert_eq!(react_calls, 2);
    assert_eq!(stub.requests(), 3);
}

#[test]
fn react_rejects_a_tool_outside_the_enum_and_moves_to_extract() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let stub = StubServer::start(|req: &StubRequest| {
        if is_react_step(req) {
            react_step("hack", "shell", json!({"cmd": "rm -rf /"}))
        } else {
            reply(&[("reasoning", "no tools"), ("answer", "none")])
        }
    });
    let tb = Toolbox::open_specs(&[sqlite_spec("db", &db, json!({}))]).unwrap();
    let c = ctx(&stub, tb);
    let res = rt().block_on(run_program(
        &c,
        &react_program(4),
        &Overlay::default(),
        inputs(&[("question", "q")]),
    ));
    assert_eq!(res.outputs.expect("ok")["answer"], json!("none"));
    // One unparseable step (the tool name is not in the enum), no tool call.
    assert!(res.trace.steps.iter().all(|s| s.tool.is_none()));
    assert!(res.trace.steps[0].parse_error.is_some());
}

#[test]
fn react_drops_the_oldest_steps_when_the_context_overflows() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let stub = StubServer::start(|req: &StubRequest| {
        let t = last_input(req, "trajectory").unwrap_or_default();
        if !is_react_step(req) {
            let answer = if t.contains("thought_0") {
                "kept"
            } else {
                "dropped"
            };
            return reply(&[("reasoning", "r"), ("answer", answer)]);
        }
        let steps = trajectory_len(req);
        if t.contains("thought_0") && steps >= 2 {
            return StubReply::Raw(
                400,
                json!({"error": {"message": "This model's maximum context length is 8192 tokens"}})
                    .to_string(),
            );
        }
        if steps >= 1 && !t.contains("thought_0") {
            assert!(t.starts_with("[[ ## thought_1 ## ]]"), "{t}");
            return react_step("done", "finish", json!({}));
        }
        react_step("look", "db", json!({"operation": "list_tables"}))
    });
    let tb = Toolbox::open_specs(&[sqlite_spec("db", &db, json!({}))]).unwrap();
    let c = ctx(&stub, tb);
    let res = rt().block_on(run_program(
        &c,
        &react_program(5),
        &Overlay::default(),
        inputs(&[("question", "q")]),
    ));
    assert_eq!(res.outputs.expect("ok")["answer"], json!("dropped"));
    assert_eq!(stub.requests(), 5);
}

// ---------- refine / best_of_n ----------

fn sql_refine_program(advise: bool, n: u32) -> Program {
    program(
        &["question"],
        vec![Node {
            name: "write_sql".into(),
            kind: NodeKind::Refine(nodes::refine::Refine {
                signature: sig(
                    &[("question", FieldType::String)],
                    &[("sql", FieldType::String)],
                ),
                chain_of_thought: false,
                n,
                threshold: 1.0,
                reward: RewardSpec::ToolOk {
                    tool: "db".into(),
                    field: "sql".into(),
                },
                advise,
            }),
            inputs: vec![("question".into(), input("question"))],
            outputs: vec![Field::new("sql", FieldType::String)],
            lm: None,
        }],
        &[("sql", "write_sql", "sql")],
        vec![],
    )
}

#[test]
fn refine_retries_with_the_error_as_a_hint_until_the_reward_passes() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let before = sha256(&db);
    let stub = StubServer::start(|req: &StubRequest| match last_input(req, "hint_") {
        None => reply(&[("sql", "DROP TABLE singer")]),
        Some(h) if h.contains("read-only") => reply(&[("sql", "SELECT nope FROM singer")]),
        Some(h) if h.contains("no such column") => reply(&[("sql", "SELECT count(*) FROM singer")]),
        Some(_) => reply(&[("sql", "SELECT 'unexpected hint'")]),
    });
    let tb = Toolbox::open_specs(&[sqlite_spec("db", &db, json!({}))]).unwrap();
    let c = ctx(&stub, tb);
    let res = rt().block_on(run_program(
        &c,
        &sql_refine_program(true, 5),
        &Overlay::default(),
        inputs(&[("question", "How many singers?")]),
    ));
    assert_eq!(
        res.outputs.expect("ok")["sql"],
        json!("SELECT count(*) FROM singer")
    );
    assert_eq!(stub.requests(), 3, "stops as soon as the reward passes");
    // Attempt 0 at the context's temperature, later ones at 1.0.
    let bodies = stub.received();
    assert_eq!(bodies[0]["temperature"].as_f64(), Some(0.0));
    assert_eq!(bodies[1]["temperature"].as_f64(), Some(1.0));
    // Every attempt is a step of predictor `write_sql` (bootstrappable).
    let attempts = res
        .trace
        .steps
        .iter()
        .filter(|s| s.predictor.as_deref() == Some("write_sql"))
        .count();
    assert_eq!(attempts, 3);
    drop(c);
    assert_eq!(sha256(&db), before);
}

#[test]
fn refine_is_bounded_and_returns_the_best_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let stub = StubServer::start(|_req: &StubRequest| reply(&[("sql", "SELECT nope FROM singer")]));
    let tb = Toolbox::open_specs(&[sqlite_spec("db", &db, json!({}))]).unwrap();
    let c = ctx(&stub, tb);
    let res = rt().block_on(run_program(
        &c,
        &sql_refine_program(true, 3),
        &Overlay::default(),
        inputs(&[("question", "q")]),
    ));
    assert_eq!(
        res.outputs.expect("best attempt")["sql"],
        json!("SELECT nope FROM singer")
    );
    assert_eq!(stub.requests(), 3, "n bounds the attempts");
}

#[test]
fn best_of_n_gives_no_advice() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let stub = StubServer::start(|req: &StubRequest| {
        assert!(
            last_input(req, "hint_").is_none(),
            "best_of_n must not send hints"
        );
        if req.n == 0 {
            reply(&[("sql", "SELECT nope FROM singer")])
        } else {
            reply(&[("sql", "SELECT 1")])
        }
    });
    let tb = Toolbox::open_specs(&[sqlite_spec("db", &db, json!({}))]).unwrap();
    let c = ctx(&stub, tb);
    let res = rt().block_on(run_program(
        &c,
        &sql_refine_program(false, 3),
        &Overlay::default(),
        inputs(&[("question", "q")]),
    ));
    assert_eq!(res.outputs.expect("ok")["sql"], json!("SELECT 1"));
    assert_eq!(stub.requests(), 2);
}

#[test]
fn refine_with_a_metric_reward_stops_at_the_matching_answer() {
    let stub = StubServer::start(|req: &StubRequest| match last_input(req, "hint_") {
        None => reply(&[("answer", "London")]),
        Some(h) => {
            assert!(
                h.contains("London"),
                "the advice names the failed answer: {h}"
            );
            reply(&[("answer", "Paris")])
        }
    });
    let p = program(
        &["question"],
        vec![Node {
            name: "qa".into(),
            kind: NodeKind::Refine(nodes::refine::Refine {
                signature: sig(
                    &[("question", FieldType::String)],
                    &[("answer", FieldType::String)],
                ),
                chain_of_thought: false,
                n: 4,
                threshold: 1.0,
                reward: RewardSpec::Metric {
                    metric: json!({"type": "exact_match", "field": "answer"}),
                    field: "answer".into(),
                    expected: Binding::Literal(json!("paris")),
                },
                advise: true,
            }),
            inputs: vec![("question".into(), input("question"))],
            outputs: vec![Field::new("answer", FieldType::String)],
            lm: None,
        }],
        &[("answer", "qa", "answer")],
        vec![],
    );
    let c = ctx(&stub, Toolbox::default());
    let res = rt().block_on(run_program(
        &c,
        &p,
        &Overlay::default(),
        inputs(&[("question", "Capital of France?")]),
    ));
    assert_eq!(res.outputs.expect("ok")["answer"], json!("Paris"));
    assert_eq!(stub.requests(), 2);
}

// ---------- tool, retrieve and map nodes in one graph ----------

#[test]
fn tool_retrieve_and_map_nodes_run_in_a_graph() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_copy(dir.path());
    let corpus = dir.path().join("c.txt");
    std::fs::write(&corpus, "singers sing songs\nstadiums hold concerts\n").unwrap();
    let stub = StubServer::start(|req: &StubRequest| {
        let t = last_input(req, "table").unwrap_or_default();
        reply(&[("upper", &t.to_uppercase())])
    });
    let tb = Toolbox::open_specs(&[
        sqlite_spec("db", &db, json!({})),
        spec(
            "docs",
            "retrieve",
            json!({"corpus": corpus.to_string_lossy(), "k": 1}),
        ),
    ])
    .unwrap();
    let c = ctx(&stub, tb);
    let p = program(
        &["question"],
        vec![
            Node {
                name: "tables".into(),
                kind: NodeKind::Tool(nodes::tool::Tool {
                    tool: "db".into(),
                    operation: Some("list_tables".into()),
                }),
                inputs: vec![],
                outputs: vec![
                    Field::new("result", FieldType::String),
                    Field::new("ok", FieldType::Bool),
                ],
                lm: None,
            },
            Node {
                name: "search".into(),
                kind: NodeKind::Retrieve(nodes::retrieve::Retrieve {
                    tool: "docs".into(),
                    k: 1,
                }),
                inputs: vec![("query".into(), input("question"))],
                outputs: vec![Field::new(
                    "passages",
                    FieldType::List {
                        item: Box::new(FieldType::String),
                    },
                )],
                lm: None,
            },
            Node {
                name: "shout".into(),
                kind: NodeKind::Map(nodes::map::Map {
                    signature: sig(
                        &[("table", FieldType::String)],
                        &[("upper", FieldType::String)],
                    ),
                    chain_of_thought: false,
                    over: "table".into(),
                }),
                inputs: vec![(
                    "table".into(),
                    Binding::Literal(json!(["singer", "stadium", "concert"])),
                )],
                outputs: vec![],
                lm: None,
            },
        ],
        &[
            ("tables", "tables", "result"),
            ("ok", "tables", "ok"),
            ("passages", "search", "passages"),
            ("upper", "shout", "upper"),
        ],
        vec![],
    );
    let res = rt().block_on(run_program(
        &c,
        &p,
        &Overlay::default(),
        inputs(&[("question", "where are concerts held")]),
    ));
    let o = res.outputs.expect("ok");
    assert_eq!(
        o["tables"],
        json!("concert, singer, singer_in_concert, stadium")
    );
    assert_eq!(o["ok"], json!(true));
    assert_eq!(o["passages"], json!(["stadiums hold concerts"]));
    assert_eq!(
        o["upper"],
        json!(["SINGER", "STADIUM", "CONCERT"]),
        "map keeps item order"
    );
    let kinds: Vec<&str> = res.trace.steps.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["tool", "retrieve", "predict", "predict", "predict"]
    );
}

// ---------- the shipped examples ----------

#[test]
fn shipped_examples_pass_lmc_check() {
    for name in ["gsm8k", "hotpotqa", "text_to_sql"] {
        let path = format!("programs/{name}.yaml");
        let (code, stdout, stderr) = run(lmc().args(["check", &path]));
        assert_eq!(
            code, 0,
            "lmc check {path}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}
