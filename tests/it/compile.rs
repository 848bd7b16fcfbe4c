//! Tests for the compile area: every optimizer against a scripted LM with a
//! known optimum, multi-stage bootstrapping, budgets, dry-run projection,
//! resume from the cache, artifact determinism and the DSPy round trip.
//!
//! The scripted LM answers a question "question N about TOPIC" correctly
//! only when the prompt holds a demo about the same topic and at most three
//! demos in all (more confuse it). So zero-shot scores 0, a prompt with
//! sixteen labeled demos scores 0, and the optimum (1.0 on a valset about
//! cats and dogs) needs a small demo set covering both topics.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, run};

const TOPICS: [(&str, &str); 4] = [
    ("cats", "red"),
    ("dogs", "green"),
    ("fish", "blue"),
    ("birds", "yellow"),
];

const SINGLE: &str = r#"name: topics
signatures:
  answer:
    instructions: Answer with the colour of the question's topic.
    inputs:
      question: {type: str}
    outputs:
      answer: {type: "enum[red, green, blue, yellow]"}
inputs:
  question: str
nodes:
  answer:
    kind: predict
    signature: answer
outputs:
  answer: answer.answer
metric: {type: exact_match, field: answer}
datasets:
  train: train.csv
  dev: dev.csv
"#;

const TWO_STAGE: &str = r#"name: twostage
signatures:
  find: "question -> topic"
  answer:
    inputs:
      question: {type: str}
      topic: {type: str}
    outputs:
      answer: {type: "enum[red, green, blue, yellow]"}
inputs:
  question: str
nodes:
  find:
    kind: predict
    signature: find
  answer:
    kind: chain_of_thought
    signature: answer
outputs:
  answer: answer.answer
metric: {type: exact_match, field: answer}
datasets:
  train: train.csv
  dev: dev.csv
"#;

fn colour(topic: &str) -> &'static str {
    TOPICS
        .iter()
        .find(|(t, _)| *t == topic)
        .map(|(_, c)| *c)
        .unwrap_or("red")
}

fn wrong(topic: &str) -> &'static str {
    let i = TOPICS.iter().position(|(t, _)| *t == topic).unwrap_or(0);
    TOPICS[(i + 1) % TOPICS.len()].1
}

/// The scripted LM (see the module docs). Handles both programs.
fn oracle(req: &StubRequest) -> StubReply {
    // The input section runs on into the adapter's closing request, so
    // take the word after "about" rather than the last word.
    let question = req.input("question").unwrap_or_default();
    let topic = question
        .split("about ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    let outputs = req
        .system()
        .split("Your output fields are:")
        .nth(1)
        .unwrap_or("")
        .to_string();
    if !outputs.contains("`answer`") {
        return StubReply::Ok(format!(
            "[[ ## topic ## ]]\n{topic}\n\n[[ ## completed ## ]]"
        ));
    }
    let users: Vec<&(String, String)> = req.messages.iter().filter(|(r, _)| r == "user").collect();
    let demos = &users[..users.len().saturating_sub(1)];
    let same = demos
        .iter()
        .any(|(_, c)| c.contains(&format!("about {topic}")));
    let answer = if same && demos.len() <= 3 {
        colour(&topic)
    } else {
        wrong(&topic)
    };
    let reasoning = if outputs.contains("`reasoning`") {
        format!("[[ ## reasoning ## ]]\nIt is about {topic}.\n\n")
    } else {
        String::new()
    };
    StubReply::Ok(format!(
        "{reasoning}[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
    ))
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// Train: 3 questions per topic; dev: 2 about cats, 2 about dogs.
    fn new(program: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prog.yaml"), program).expect("write program");
        let mut train = String::from("question,answer\n");
        let mut n = 0;
        for round in 0..3 {
            for (t, c) in TOPICS {
                n += 1;
                let _ = round;
                train.push_str(&format!("question {n} about {t},{c}\n"));
            }
        }
        std::fs::write(dir.path().join("train.csv"), train).expect("write train");
        let mut dev = String::from("question,answer\n");
        for (i, (t, c)) in [TOPICS[0], TOPICS[1], TOPICS[0], TOPICS[1]]
            .iter()
            .enumerate()
        {
            dev.push_str(&format!("question {} about {t},{c}\n", 100 + i));
        }
        std::fs::write(dir.path().join("dev.csv"), dev).expect("write dev");
        Project { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `lmc compile prog.yaml` against `stub` with cache directory `cache`.
    fn compile(&self, stub: &StubServer, cache: &str, out: &str, extra: &[&str]) -> Command {
        let mut c = lmc();
        c.current_dir(self.dir.path())
            .arg("compile")
            .arg(self.path("prog.yaml"))
            .args(["--provider", "openai", "--model", "stub", "--base-url"])
            .arg(stub.url())
            .args(["--quiet", "--json", "-o"])
            .arg(self.path(out))
            .args(extra)
            .env("LMC_CACHE_DIR", self.path(cache))
            .env_remove("OPENAI_API_KEY")
            .env_remove("LMC_BASE_URL")
            .env_remove("LMC_PROVIDER");
        c
    }

    fn artifact(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.path(name)).expect("artifact written");
        serde_json::from_str(&text).expect("artifact is JSON")
    }
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"))
}

/// The best valset score among the candidates an artifact's search scored.
fn best_candidate(a: &Value) -> f64 {
    a["lineage"]["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|c| c["score"].as_f64())
        .fold(f64::NEG_INFINITY, f64::max)
}

#[test]
fn every_optimizer_keeps_its_best_candidate_and_random_search_finds_the_optimum() {
    let p = Project::new(SINGLE);
    let stub = StubServer::start(oracle);
    let runs: [(&str, &[&str]); 4] = [
        ("labeled_few_shot", &["--opt", "k=2"]),
        ("bootstrap_few_shot", &["--opt", "max_labeled_demos=3"]),
        (
            "bootstrap_random_search",
            &[
                "--opt",
                "max_labeled_demos=3",
                "--opt",
                "max_bootstrapped_demos=3",
                "--opt",
                "num_candidate_programs=8",
            ],
        ),
        ("knn_few_shot", &["--opt", "k=3"]),
    ];
    let mut scores = Vec::new();
    for (opt, extra) in runs {
        let out = format!("{opt}.json");
        let (code, stdout, stderr) = run(p
            .compile(&stub, "c", &out, extra)
            .args(["--optimizer", opt]));
        assert_eq!(code, 0, "{opt}: {stderr}");
        let summary = json(&stdout);
        let a = p.artifact(&out);
        assert_eq!(a["format"], "lmc.artifact");
        assert_eq!(a["lineage"]["optimizer"], opt);
        let dev = a["lineage"]["dev_score"].as_f64().expect("dev score");
        assert_eq!(summary["dev_score"].as_f64(), Some(dev));
        assert!(
            dev >= best_candidate(&a),
            "{opt}: winner {dev} is worse than a candidate it scored: {}",
            a["lineage"]["history"]
        );
        scores.push((opt, dev, a));
    }
    // The search: zero-shot scores 0, and the optimum (1.0) exists among
    // the candidates; random search must end on it.
    let (_, rs, a) = &scores[2];
    let history = a["lineage"]["history"].as_array().unwrap();
    assert_eq!(history[0]["origin"], "zero_shot");
    assert_eq!(history[0]["score"].as_f64(), Some(0.0));
    assert_eq!(a["lineage"]["baseline_score"].as_f64(), Some(0.0));
    assert_eq!(*rs, 1.0, "random search missed the optimum: {history:?}");
    // kNN picks same-topic demos per input, so it reaches the optimum too.
    assert_eq!(scores[3].1, 1.0);
    assert_eq!(
        scores[3].2["predictors"]["answer"]["knn"]["pool"]
            .as_array()
            .map(|p| p.len()),
        Some(12)
    );
    // Two labeled demos can cover at most what was sampled; the artifact
    // holds exactly k of them.
    assert_eq!(
        scores[0].2["predictors"]["answer"]["demos"]
            .as_array()
            .map(|d| d.len()),
        Some(2)
    );
}

#[test]
fn multi_stage_bootstrap_produces_demos_for_every_predictor() {
    let p = Project::new(TWO_STAGE);
    let stub = StubServer::start(oracle);
    let (code, _, stderr) = run(p
        .compile(&stub, "c", "out.json", &["--opt", "max_labeled_demos=3"])
        .args(["--optimizer", "bootstrap_few_shot"]));
    assert_eq!(code, 0, "{stderr}");
    let a = p.artifact("out.json");
    for path in ["find", "answer"] {
        let demos = a["predictors"][path]["demos"]
            .as_array()
            .unwrap_or_else(|| panic!("no demos for {path}: {}", a["predictors"]));
        let augmented: Vec<&Value> = demos.iter().filter(|d| d["augmented"] == true).collect();
        assert!(!augmented.is_empty(), "{path}: no bootstrapped demo");
        // A bootstrapped demo holds the step's inputs and outputs.
        let d = &augmented[0]["fields"];
        assert!(d["question"].is_string(), "{path}: {d}");
        if path == "find" {
            assert!(d["topic"].is_string(), "{d}");
        } else {
            assert!(
                d["topic"].is_string() && d["reasoning"].is_string() && d["answer"].is_string(),
                "{d}"
            );
        }
    }
}

#[test]
fn budget_cap_stops_cleanly_with_the_best_so_far() {
    let p = Project::new(SINGLE);
    let stub = StubServer::start(oracle);
    let (code, stdout, stderr) = run(p
        .compile(&stub, "c", "out.json", &["--max-lm-calls", "10"])
        .args([
            "--optimizer",
            "bootstrap_random_search",
            "--opt",
            "max_labeled_demos=3",
        ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stub.requests() <= 10, "{} calls made", stub.requests());
    assert!(stderr.contains("budget"), "{stderr}");
    assert_eq!(json(&stdout)["budget_exhausted"], true);
    let a = p.artifact("out.json");
    assert_eq!(a["lineage"]["budget_exhausted"], true);
}

#[test]
fn dry_run_projection_matches_the_calls_made() {
    let p = Project::new(SINGLE);
    let stub = StubServer::start(oracle);
    for (opt, extra) in [
        ("labeled_few_shot", vec!["--opt", "k=3"]),
        (
            "bootstrap_few_shot",
            vec![
                "--opt",
                "max_bootstrapped_demos=12",
                "--opt",
                "max_labeled_demos=3",
            ],
        ),
    ] {
        let cache = format!("cache-{opt}");
        let (code, stdout, stderr) = run(p.compile(&stub, &cache, "out.json", &extra).args([
            "--optimizer",
            opt,
            "--dry-run",
        ]));
        assert_eq!(code, 0, "{stderr}");
        let proj = json(&stdout);
        assert_eq!(proj["exact"], true, "{proj}");
        let before = stub.requests();
        assert!(!p.path("out.json").exists(), "dry run wrote an artifact");
        let (code, _, stderr) = run(p
            .compile(&stub, &cache, "out.json", &extra)
            .args(["--optimizer", opt]));
        assert_eq!(code, 0, "{stderr}");
        let made = (stub.requests() - before) as u64;
        assert_eq!(proj["lm_calls"].as_u64(), Some(made), "{opt}: {proj}");
        std::fs::remove_file(p.path("out.json")).unwrap();
    }
}

#[test]
fn resumed_compile_repeats_no_call_and_writes_identical_bytes() {
    let p = Project::new(SINGLE);
    let stub = StubServer::start(oracle);
    let args = [
        "--optimizer",
        "bootstrap_random_search",
        "--opt",
        "max_labeled_demos=3",
        "--opt",
        "num_candidate_programs=4",
    ];
    // A full run on a fresh cache: the reference call count.
    let (code, _, stderr) = run(p.compile(&stub, "full", "full.json", &[]).args(args));
    assert_eq!(code, 0, "{stderr}");
    let full_calls = stub.requests();
    assert!(full_calls > 10);

    // Interrupted (a budget stands in for Ctrl-C), then resumed. One call
    // at a time while interrupted: a call in flight when a run is killed
    // has no reply to cache, so with concurrency N up to N-1 calls may be
    // repeated after a real interruption.
    let before = stub.requests();
    let (code, _, stderr) = run(p
        .compile(
            &stub,
            "r",
            "r1.json",
            &["--max-lm-calls", "7", "--concurrency", "1"],
        )
        .args(args));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(p.compile(&stub, "r", "r2.json", &[]).args(args));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stub.requests() - before,
        full_calls,
        "interrupted + resumed compile must make exactly the calls of one full compile"
    );

    // A third run on the warm cache calls nothing and writes the same
    // artifact as the resumed one, apart from the execution fields.
    let before = stub.requests();
    let (code, _, stderr) = run(p.compile(&stub, "r", "r3.json", &[]).args(args));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stub.requests(), before, "a warm re-run called the LM");
    let strip = |name: &str| {
        let text = std::fs::read_to_string(p.path(name)).unwrap();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v["created_at"] = Value::Null;
        v["lineage"]["run"] = Value::Null;
        serde_json::to_string_pretty(&v).unwrap()
    };
    assert_eq!(strip("r2.json"), strip("r3.json"));
    assert_eq!(strip("full.json"), strip("r3.json"));
    // Byte for byte: cut the execution fields out of the text itself.
    let raw = |name: &str| {
        let text = std::fs::read_to_string(p.path(name)).unwrap();
        let mut out = String::new();
        let mut skipping = false;
        for line in text.lines() {
            if line.trim_start().starts_with("\"run\": {") {
                skipping = true;
            }
            if !skipping && !line.contains("\"created_at\"") {
                out.push_str(line);
                out.push('\n');
            }
            if skipping && line.trim_start().starts_with('}') {
                skipping = false;
            }
        }
        out
    };
    assert_eq!(raw("r2.json"), raw("r3.json"));
}

#[test]
fn dspy_export_import_round_trip() {
    let p = Project::new(TWO_STAGE);
    let stub = StubServer::start(oracle);
    let (code, _, stderr) = run(p
        .compile(&stub, "c", "a.json", &["--opt", "max_labeled_demos=3"])
        .args(["--optimizer", "bootstrap_few_shot"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(lmc()
        .arg("export")
        .arg(p.path("a.json"))
        .args(["--format", "dspy", "-o"])
        .arg(p.path("dspy.json")));
    assert_eq!(code, 0, "{stderr}");
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("dspy.json")).unwrap()).unwrap();
    // DSPy names: a Predict attribute keeps its name; ChainOfThought holds `.predict`.
    assert!(d["find"]["demos"].is_array(), "{d}");
    let cot = &d["answer.predict"];
    assert_eq!(cot["lm"], Value::Null);
    let fields = cot["signature"]["fields"].as_array().unwrap();
    // question, topic, reasoning, answer
    assert_eq!(fields.len(), 4);
    assert_eq!(fields[0]["prefix"], "Question:");
    assert!(d["metadata"]["dependency_versions"]["dspy"].is_string());
    assert!(cot["demos"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["augmented"] == true));

    let (code, _, stderr) = run(lmc()
        .arg("import")
        .arg(p.path("dspy.json"))
        .arg("--program")
        .arg(p.path("prog.yaml"))
        .arg("-o")
        .arg(p.path("back.json")));
    assert_eq!(code, 0, "{stderr}");
    let a = p.artifact("a.json");
    let back = p.artifact("back.json");
    assert_eq!(a["predictors"], back["predictors"]);
    assert_eq!(back["lineage"]["optimizer"], "import:dspy");
    assert_eq!(
        a["program"]["content_hash"],
        back["program"]["content_hash"]
    );

    // A name the program does not have is an input error naming the known ones.
    std::fs::write(p.path("bad.json"), r#"{"nope.predict": {"demos": []}}"#).unwrap();
    let (code, _, stderr) = run(lmc()
        .arg("import")
        .arg(p.path("bad.json"))
        .arg("--program")
        .arg(p.path("prog.yaml")));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("answer.predict"), "{stderr}");
}

#[test]
fn unknown_optimizer_and_settings_are_input_errors() {
    let p = Project::new(SINGLE);
    let stub = StubServer::start(oracle);
    let (code, _, stderr) = run(p
        .compile(&stub, "c", "o.json", &[])
        .args(["--optimizer", "bootstrap_fewshot"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("did you mean `bootstrap_few_shot`"),
        "{stderr}"
    );
    let (code, _, stderr) = run(p
        .compile(&stub, "c", "o.json", &["--opt", "max_demos=2"])
        .args(["--optimizer", "bootstrap_few_shot"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown setting `max_demos`"), "{stderr}");
    assert_eq!(stub.requests(), 0);
}

#[test]
fn lmc_eval_of_a_knn_artifact_reproduces_the_compile_score() {
    let p = Project::new(SINGLE);
    let stub = StubServer::start(oracle);
    let (code, _, stderr) = run(p
        .compile(&stub, "c", "knn.json", &[])
        .args(["--optimizer", "knn_few_shot"]));
    assert_eq!(code, 0, "{stderr}");
    let a = p.artifact("knn.json");
    // A fresh cache: the artifact alone must pick the same demos per input.
    let (code, stdout, stderr) = run(lmc()
        .current_dir(p.dir.path())
        .arg("eval")
        .arg(p.path("knn.json"))
        .args(["--provider", "openai", "--model", "stub", "--base-url"])
        .arg(stub.url())
        .args(["--quiet", "--json", "--dataset"])
        .arg(p.path("dev.csv"))
        .env("LMC_CACHE_DIR", p.path("fresh"))
        .env_remove("OPENAI_API_KEY"));
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    assert_eq!(
        report["summary"]["mean"].as_f64(),
        a["lineage"]["dev_score"].as_f64()
    );
    assert_eq!(report["summary"]["mean"].as_f64(), Some(1.0));
}
