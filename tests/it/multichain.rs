//! Tests for the `multi_chain_comparison` node kind (DSPy's
//! MultiChainComparison): `n` chain-of-thought attempts then one comparison
//! call, run through the real `lmc` binary against the scripted stub LM;
//! skipped attempts; `lmc check` and its located errors; the comparison
//! prompt pinned as the chat adapter renders it; and bootstrapping demos for
//! both predictor paths. Also its sibling sampler, the `majority` kind
//! (DSPy's `dspy.majority` over `n` completions), added as one file under
//! `src/nodes/` plus its registry line.

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use lmc::adapter::{AdapterKind, Role};
use lmc::program::multichain::compare_signature;
use lmc::run::multichain::{render_attempt, FAILED_ATTEMPT};
use lmc::signature::{Field, FieldType, Signature};

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, run, run_with_stdin};

const PROGRAM: &str = r#"name: mcc
signatures:
  qa:
    inputs:
      question: str
    outputs:
      answer: str
inputs:
  question: str
nodes:
  answer:
    kind: multi_chain_comparison
    signature: qa
    n: 3
outputs:
  rationale: answer.rationale
  answer: answer.answer
"#;

const COMPARE_REPLY: &str = "[[ ## rationale ## ]]\nweigh the attempts: two say 4.\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]";

/// A chain-of-thought reply whose reasoning and answer run over two lines
/// (only the first lines may reach the comparison).
fn attempt_reply(i: usize, answer: &str) -> String {
    format!(
        "[[ ## reasoning ## ]]\nadd two and two, try {i}\nthen check it again\n\n[[ ## answer ## ]]\n{answer}\nsecond line\n\n[[ ## completed ## ]]"
    )
}

/// Whether a request is the comparison call (its system message lists the
/// attempt inputs).
fn is_compare(req: &StubRequest) -> bool {
    req.system().contains("`reasoning_attempt_1`")
}

/// The first line of an input section (`StubRequest::input` runs on into
/// the adapter's closing request).
fn input_line(req: &StubRequest, field: &str) -> String {
    req.input(field)
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(program: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prog.yaml"), program).expect("write program");
        Project { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `lmc run prog.yaml --json` against `stub`, cache in the project.
    fn run_cmd(&self, stub: &StubServer) -> Command {
        let mut c = lmc();
        c.arg("run")
            .arg(self.path("prog.yaml"))
            .args([
                "--provider",
                "openai",
                "--model",
                "stub",
                "--max-retries",
                "0",
            ])
            .args(["--base-url", &stub.url(), "--json"])
            .env("LMC_CACHE_DIR", self.path("cache"))
            .env_remove("OPENAI_API_KEY")
            .env_remove("LMC_BASE_URL")
            .env_remove("LMC_PROVIDER");
        c
    }
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn trace_steps(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("trace written")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["step"].clone())
        .collect()
}

#[test]
fn multichain_runs_n_attempts_then_one_comparison() {
    let p = Project::new(PROGRAM);
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    let stub = StubServer::start(move |req: &StubRequest| {
        if is_compare(req) {
            return StubReply::Ok(COMPARE_REPLY.into());
        }
        let i = seen.fetch_add(1, Ordering::SeqCst) + 1;
        StubReply::Ok(attempt_reply(i, if i == 2 { "5" } else { "4" }))
    });
    let trace = p.path("t.jsonl");
    let (code, out, err) = run(p
        .run_cmd(&stub)
        .args(["--input", "question=What is 2+2?", "--trace"])
        .arg(&trace));
    assert_eq!(code, 0, "stderr: {err}");

    // Three attempts, then the comparison, in that order.
    assert_eq!(stub.requests(), 4);
    let bodies = stub.received();
    let systems: Vec<String> = bodies
        .iter()
        .map(|b| b["messages"][0]["content"].as_str().unwrap().to_string())
        .collect();
    for s in &systems[..3] {
        assert!(
            s.contains("`reasoning`") && !s.contains("`rationale`"),
            "{s}"
        );
    }
    assert!(systems[3].contains("`rationale`"), "{}", systems[3]);
    // The attempts are three distinct samples: the first at the run's
    // temperature, the others at 1.0. Attempts 2 and 3 send identical
    // bodies, so only their distinct rollout ids (part of the cache key)
    // kept the third from being a cache hit of the second.
    let temps: Vec<f64> = bodies
        .iter()
        .map(|b| b["temperature"].as_f64().unwrap())
        .collect();
    assert_eq!(temps, [0.0, 1.0, 1.0, 0.0]);
    assert_eq!(bodies[1]["messages"], bodies[2]["messages"]);

    // Each attempt reaches the comparison in DSPy's words, first lines only.
    let compare = bodies[3]["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    for (i, answer) in [(1, "4"), (2, "5"), (3, "4")] {
        let want = format!(
            "[[ ## reasoning_attempt_{i} ## ]]\n«I'm trying to add two and two, try {i} I'm not sure but my prediction is {answer}»\n\n"
        );
        assert!(compare.contains(&want), "missing {want:?} in:\n{compare}");
    }
    assert!(!compare.contains("second line") && !compare.contains("check it again"));
    assert!(compare.starts_with("[[ ## question ## ]]\nWhat is 2+2?\n\n"));

    // The printed outputs are the comparison's.
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["outputs"],
        json!({"rationale": "weigh the attempts: two say 4.", "answer": "4"})
    );

    // Every call is a traced step under its predictor path, and each
    // attempt's condensed form is recorded.
    let steps = trace_steps(&trace);
    let preds: Vec<&str> = steps
        .iter()
        .filter_map(|s| s["predictor"].as_str())
        .collect();
    assert_eq!(
        preds,
        [
            "answer.attempt",
            "answer.attempt",
            "answer.attempt",
            "answer.compare"
        ]
    );
    let attempts: Vec<&Value> = steps
        .iter()
        .filter(|s| s["kind"] == "chain_attempt")
        .collect();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[1]["outputs"]["skipped"], false);
    assert!(attempts[1]["outputs"]["rendered"]
        .as_str()
        .unwrap()
        .contains("prediction is 5»"));

    // The same run again is served entirely from the cache.
    let (code, again, _) = run(p.run_cmd(&stub).args(["--input", "question=What is 2+2?"]));
    assert_eq!(code, 0);
    assert_eq!(again, out);
    assert_eq!(
        stub.requests(),
        4,
        "the repeated run must be all cache hits"
    );
}

#[test]
fn multichain_skips_failed_attempts_and_still_answers() {
    let p = Project::new(PROGRAM);
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    let stub = StubServer::start(move |req: &StubRequest| {
        if is_compare(req) {
            return StubReply::Ok(COMPARE_REPLY.into());
        }
        match seen.fetch_add(1, Ordering::SeqCst) + 1 {
            // Unparseable: no field markers at all.
            2 => StubReply::Ok("I would rather not use your format.".into()),
            // An LM error (retries are off for this run).
            3 => StubReply::Status(500, None),
            i => StubReply::Ok(attempt_reply(i, "4")),
        }
    });
    let trace = p.path("t.jsonl");
    let (code, out, err) = run(p
        .run_cmd(&stub)
        .args(["--input", "question=What is 2+2?", "--trace"])
        .arg(&trace));
    assert_eq!(code, 0, "stderr: {err}\nstdout: {out}");
    assert_eq!(stub.requests(), 4);
    let lines = json_lines(&out);
    assert_eq!(lines[0]["outputs"]["answer"], "4");

    // The failed slots carry the placeholder; the good attempt is intact.
    let bodies = stub.received();
    let compare = bodies[3]["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(compare.contains(
        "[[ ## reasoning_attempt_1 ## ]]\n«I'm trying to add two and two, try 1 I'm not sure but my prediction is 4»"
    ));
    for i in [2, 3] {
        assert!(
            compare.contains(&format!(
                "[[ ## reasoning_attempt_{i} ## ]]\n{FAILED_ATTEMPT}\n\n"
            )),
            "{compare}"
        );
    }

    // Both failures are in the trace: on the attempt step itself and as a
    // skipped chain_attempt with the reason.
    let steps = trace_steps(&trace);
    let attempt_steps: Vec<&Value> = steps
        .iter()
        .filter(|s| s["predictor"] == "answer.attempt")
        .collect();
    assert_eq!(attempt_steps.len(), 3);
    assert!(attempt_steps[0]["error"].is_null());
    assert!(
        attempt_steps[1]["parse_error"].is_object(),
        "{}",
        attempt_steps[1]
    );
    assert!(
        attempt_steps[2]["error"].is_string(),
        "{}",
        attempt_steps[2]
    );
    let skipped: Vec<&Value> = steps
        .iter()
        .filter(|s| s["kind"] == "chain_attempt" && s["outputs"]["skipped"] == true)
        .collect();
    assert_eq!(skipped.len(), 2);
    assert_eq!(skipped[0]["outputs"]["attempt"], 2);
    assert_eq!(skipped[1]["outputs"]["attempt"], 3);
    assert!(skipped[1]["outputs"]["reason"]
        .as_str()
        .unwrap()
        .contains("500"));
}

#[test]
fn multichain_with_every_attempt_failing_is_a_per_example_error() {
    let p = Project::new(PROGRAM);
    // Questions about "hard" get unparseable attempts; others are fine.
    let stub = StubServer::start(|req: &StubRequest| {
        if is_compare(req) {
            StubReply::Ok(COMPARE_REPLY.into())
        } else if input_line(req, "question").contains("hard") {
            StubReply::Ok("no idea, sorry".into())
        } else {
            StubReply::Ok(attempt_reply(1, "4"))
        }
    });
    let (code, out, err) = run_with_stdin(
        &mut p.run_cmd(&stub),
        "{\"question\": \"a hard one\"}\n{\"question\": \"What is 2+2?\"}\n",
    );
    assert_eq!(code, 3, "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    // The first example fails with the parse error and its raw reply; no
    // comparison was attempted for it (3 attempts, then 3 + 1 for the second).
    let e = lines[0]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", lines[0]));
    assert!(e.contains("answer") || e.contains("reasoning"), "{e}");
    assert_eq!(lines[0]["raw_reply"], "no idea, sorry");
    assert!(lines[0].get("outputs").is_none());
    assert_eq!(lines[1]["outputs"]["answer"], "4");
    assert_eq!(stub.requests(), 7);
}

#[test]
fn multichain_check_lists_both_predictors() {
    let p = Project::new(PROGRAM);
    let file = p.path("prog.yaml");
    let (code, out, err) = run(lmc().arg("check").arg(&file));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("  mcc  2 predictors (answer.attempt, answer.compare)  sha256:"),
        "{out}"
    );
    // inspect renders both, with their kind.
    let (code, out, err) = run(lmc().arg("inspect").arg(&file));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("=== answer.attempt (multi_chain_comparison) ==="),
        "{out}"
    );
    assert!(
        out.contains("=== answer.compare (multi_chain_comparison) ==="),
        "{out}"
    );
    assert!(
        out.contains("[[ ## reasoning_attempt_3 ## ]]\n{reasoning_attempt_3}"),
        "{out}"
    );
}

#[test]
fn multichain_invalid_settings_are_located_errors() {
    // n: 0, a missing signature, a key of another kind, and a signature
    // whose field the comparison would shadow: all reported at once.
    let bad = r#"name: bad
inputs:
  question: str
nodes:
  a:
    kind: multi_chain_comparison
    signature: "question -> answer"
    n: 0
  b:
    kind: multi_chain_comparison
    threshold: 0.5
  c:
    kind: multi_chain_comparison
    signature: "question -> rationale, answer"
outputs:
  answer: a.answer
"#;
    let p = Project::new(bad);
    let (code, out, err) = run(lmc().arg("check").arg(p.path("prog.yaml")));
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("`n` must be at least 1"), "{err}");
    assert!(err.contains("prog.yaml:8:"), "{err}");
    assert!(
        err.contains("a `multi_chain_comparison` node needs a `signature`"),
        "{err}"
    );
    assert!(
        err.contains("`threshold` does not apply to a `multi_chain_comparison` node"),
        "{err}"
    );
    assert!(
        err.contains("adds a `rationale` output; the signature already has one"),
        "{err}"
    );
    assert!(err.contains("error: 4 errors found"), "{err}");
}

fn qa_signature() -> Signature {
    Signature {
        instructions: None,
        inputs: vec![Field::new("question", FieldType::String)],
        outputs: vec![Field::new("answer", FieldType::String)],
    }
}

#[test]
fn multichain_compare_prompt_golden() {
    let sig = compare_signature(&qa_signature(), 3);
    let mut inputs = Map::new();
    inputs.insert("question".into(), json!("What is 2+2?"));
    let attempt = |reasoning: &str, answer: Value| {
        let mut out = Map::new();
        out.insert("reasoning".into(), json!(reasoning));
        out.insert("answer".into(), answer);
        render_attempt(&out, "answer")
    };
    inputs.insert(
        "reasoning_attempt_1".into(),
        json!(attempt("  add 2 and 2.\nThat is 4.", json!("4"))),
    );
    inputs.insert(
        "reasoning_attempt_2".into(),
        json!(attempt("count up from 2 twice", json!("5\nmaybe"))),
    );
    inputs.insert("reasoning_attempt_3".into(), json!(FAILED_ATTEMPT));
    let msgs = AdapterKind::Chat.render(&sig, &[], &inputs);
    let mut text = String::new();
    for m in &msgs {
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        text.push_str(&format!("--- {role} ---\n{}\n", m.content));
    }
    insta::assert_snapshot!("multichain_compare_prompt", text);
}

#[test]
fn multichain_attempt_rendering_follows_dspy() {
    let mut out = Map::new();
    out.insert("reasoning".into(), json!("\n  think hard  \nmore"));
    out.insert("answer".into(), json!(42));
    out.insert("note".into(), json!("ignored"));
    // The last output of the user signature is the one shown; non-text
    // values print as Python's str() would.
    assert_eq!(
        render_attempt(&out, "answer"),
        "«I'm trying to think hard I'm not sure but my prediction is 42»"
    );
    out.insert("answer".into(), json!(true));
    assert_eq!(
        render_attempt(&out, "answer"),
        "«I'm trying to think hard I'm not sure but my prediction is True»"
    );
}

const COMPILE_PROGRAM: &str = r#"name: mcc
signatures:
  qa:
    inputs:
      question: str
    outputs:
      answer: str
inputs:
  question: str
nodes:
  answer:
    kind: multi_chain_comparison
    signature: qa
    n: 2
outputs:
  answer: answer.answer
metric: {type: exact_match, field: answer}
datasets:
  train: train.csv
  dev: dev.csv
"#;

#[test]
fn multichain_bootstrap_yields_demos_for_attempt_and_compare() {
    let p = Project::new(COMPILE_PROGRAM);
    std::fs::write(
        p.path("train.csv"),
        "question,answer\nq1,a1\nq2,a2\nq3,a3\n",
    )
    .unwrap();
    std::fs::write(p.path("dev.csv"), "question,answer\nq4,a4\n").unwrap();
    // Always right: the answer is the question's number after `a`.
    let stub = StubServer::start(|req: &StubRequest| {
        let q = input_line(req, "question");
        let a = q.replace('q', "a");
        if is_compare(req) {
            StubReply::Ok(format!(
                "[[ ## rationale ## ]]\nboth agree\n\n[[ ## answer ## ]]\n{a}\n\n[[ ## completed ## ]]"
            ))
        } else {
            StubReply::Ok(format!(
                "[[ ## reasoning ## ]]\nread {q}\n\n[[ ## answer ## ]]\n{a}\n\n[[ ## completed ## ]]"
            ))
        }
    });
    let (code, _, err) = run(lmc()
        .current_dir(p.dir.path())
        .arg("compile")
        .arg(p.path("prog.yaml"))
        .args(["--provider", "openai", "--model", "stub", "--base-url"])
        .arg(stub.url())
        .args([
            "--optimizer",
            "bootstrap_few_shot",
            "--quiet",
            "--json",
            "-o",
        ])
        .arg(p.path("out.json"))
        .args([
            "--opt",
            "max_bootstrapped_demos=2",
            "--opt",
            "max_labeled_demos=2",
        ])
        .env("LMC_CACHE_DIR", p.path("cache"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("LMC_BASE_URL")
        .env_remove("LMC_PROVIDER"));
    assert_eq!(code, 0, "{err}");
    let a: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("out.json")).unwrap()).unwrap();
    for path in ["answer.attempt", "answer.compare"] {
        let demos = a["predictors"][path]["demos"]
            .as_array()
            .unwrap_or_else(|| panic!("no demos for {path}: {}", a["predictors"]));
        let boot: Vec<&Value> = demos.iter().filter(|d| d["augmented"] == true).collect();
        assert_eq!(boot.len(), 2, "{path}: {demos:?}");
        let d = &boot[0]["fields"];
        assert_eq!(d["question"], "q1", "{path}: {d}");
        assert_eq!(d["answer"], "a1", "{path}: {d}");
        if path == "answer.attempt" {
            assert_eq!(d["reasoning"], "read q1", "{d}");
        } else {
            assert_eq!(d["rationale"], "both agree", "{d}");
            assert_eq!(
                d["reasoning_attempt_2"],
                "«I'm trying to read q1 I'm not sure but my prediction is a1»",
                "{d}"
            );
        }
    }
    // The exported DSPy state names them as a DSPy module holding a
    // ChainOfThought and a MultiChainComparison would.
    let (code, exported, err) = run(lmc().arg("export").arg(p.path("out.json")));
    assert_eq!(code, 0, "{err}");
    let d: Value = serde_json::from_str(&exported).unwrap();
    assert!(d.get("answer.attempt.predict").is_some(), "{d}");
    let compare = &d["answer.compare.predict"]["signature"]["fields"];
    assert_eq!(compare[1]["prefix"], "Student Attempt #1:", "{compare}");
    assert_eq!(
        compare[3]["prefix"],
        "Accurate Reasoning: Thank you everyone. Let's now holistically"
    );
}

const MAJORITY: &str = r#"name: vote
inputs:
  question: str
nodes:
  answer:
    kind: majority
    signature: "question -> answer"
outputs:
  answer: answer.answer
"#;

/// `majority` samples `n` (default 5) answers at rising temperature and
/// outputs the first attempt whose normalized answer got most votes.
#[test]
fn majority_outputs_the_most_common_normalized_answer() {
    let p = Project::new(MAJORITY);
    // Attempts run concurrently: reply by temperature, not arrival order.
    let stub = StubServer::start(|req: &StubRequest| {
        let t = req.body["temperature"].as_f64().unwrap_or(-1.0);
        let answer = match (t * 10.0).round() as i64 {
            0 => "Lyon",
            6 => "paris",
            7 => "The Paris.",
            8 => "lyon",
            _ => "Paris",
        };
        StubReply::Ok(format!(
            "[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
        ))
    });
    let trace = p.path("t.jsonl");
    let (code, out, err) = run(p
        .run_cmd(&stub)
        .args(["--input", "question=Capital of France?", "--trace"])
        .arg(&trace));
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(stub.requests(), 5);
    let mut temps: Vec<f64> = stub
        .received()
        .iter()
        .map(|b| (b["temperature"].as_f64().unwrap() * 10.0).round() / 10.0)
        .collect();
    temps.sort_by(f64::total_cmp);
    assert_eq!(temps, [0.0, 0.6, 0.7, 0.8, 0.9]);
    // paris / the paris / Paris (3) beat Lyon / lyon (2); the first
    // attempt that said it (at 0.6) is the output, as written.
    let lines = json_lines(&out);
    assert_eq!(lines[0]["outputs"], json!({"answer": "paris"}));
    let steps = trace_steps(&trace);
    assert_eq!(
        steps.iter().filter(|s| s["predictor"] == "answer").count(),
        5
    );
    let vote = steps.last().unwrap();
    assert_eq!(vote["kind"], "majority_vote");
    assert_eq!(vote["inputs"]["votes"], json!({"lyon": 2, "paris": 3}));

    // Derived from the registry: check, inspect, schema and key checks.
    let file = p.path("prog.yaml");
    let (code, out, err) = run(lmc().arg("check").arg(&file));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 predictor"), "{out}");
    let (_, out, _) = run(lmc().arg("inspect").arg(&file));
    assert!(out.contains("=== answer (majority) ==="), "{out}");
    let (_, out, _) = run(lmc().arg("schema"));
    assert!(out.contains("dspy.majority"), "{out}");
    std::fs::write(
        &file,
        MAJORITY.replace("    signature:", "    over: x\n    n: 0\n    signature:"),
    )
    .unwrap();
    let (code, _, err) = run(lmc().arg("check").arg(&file));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`over` does not apply to a `majority` node"),
        "{err}"
    );
    assert!(err.contains("`n` must be at least 1"), "{err}");
}
