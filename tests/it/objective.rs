//! Cost-aware selection (issue 14): `lmc compile --objective`. The scripted
//! LM reverses the word (the right answer) whenever its prompt carries at
//! least one demo and echoes it otherwise, so every candidate with demos
//! scores the same 1.0 whatever its demo count while its prompt grows with
//! each demo: ties on score that differ in prompt tokens.

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, run};
use serde_json::Value;
use std::path::Path;

fn reply(req: &StubRequest) -> StubReply {
    let word = req.input("word").unwrap_or_default();
    let word = word.lines().next().unwrap_or("").trim().to_string();
    // System, then a user/assistant pair per demo, then the question.
    let demos = req.messages.len() > 2;
    let answer: String = if demos {
        word.chars().rev().collect()
    } else {
        word
    };
    StubReply::Ok(format!(
        "[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
    ))
}

const PROGRAM: &str = "tests/fixtures/instruction/reverse.yaml";

/// Random search over demo sets of 1 to 4 bootstrapped demos.
fn compile(stub: &StubServer, extra: &[&str]) -> (i32, String, String, Value) {
    compile_program(stub, Path::new(PROGRAM), extra)
}

fn compile_program(
    stub: &StubServer,
    program: &Path,
    extra: &[&str],
) -> (i32, String, String, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("compiled.json");
    let mut cmd = lmc();
    cmd.env("LMC_CACHE_DIR", dir.path().join("cache"))
        .arg("compile")
        .arg(program)
        .args(["--trainset", "tests/fixtures/instruction/words.csv"])
        .args(["--valset", "tests/fixtures/instruction/words.csv"])
        .args(["--optimizer", "bootstrap_random_search", "--seed", "3"])
        .args([
            "--opt",
            "max_labeled_demos=0",
            "--opt",
            "max_bootstrapped_demos=4",
        ])
        .args(["--opt", "num_candidate_programs=4"])
        .args(["--provider", "openai", "--model", "scripted"])
        .args(["--base-url", &stub.url()])
        .arg("-o")
        .arg(&out)
        .args(extra);
    let (code, stdout, stderr) = run(&mut cmd);
    let a = std::fs::read_to_string(&out)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (code, stdout, stderr, a)
}

fn demos(a: &Value) -> usize {
    a["predictors"]["flip"]["demos"]
        .as_array()
        .map_or(0, Vec::len)
}

fn tokens(row: &Value) -> f64 {
    row["cost"]["prompt_tokens_per_call"]
        .as_f64()
        .expect("prompt tokens per call")
}

#[test]
fn issue14_cheapest_tied_keeps_the_smaller_of_two_equal_scores() {
    let stub = StubServer::start(reply);
    let (code, out, err, by_score) = compile(&stub, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err, cheap) = compile(&stub, &["--objective", "cheapest-tied"]);
    assert_eq!(code, 0, "{out}{err}");

    // The search's own choice: the first candidate to reach 1.0.
    let s = &by_score["lineage"]["tradeoff"];
    assert_eq!(s["objective"], "score");
    let chosen = &s["winner"];
    assert_eq!(chosen["score"].as_f64(), Some(1.0), "{s:#}");
    assert_eq!(by_score["lineage"]["dev_score"].as_f64(), Some(1.0));

    // Cost-aware: the same score with a smaller prompt.
    let t = &cheap["lineage"]["tradeoff"];
    assert_eq!(t["objective"], "cheapest-tied");
    let winner = &t["winner"];
    assert_eq!(winner["score"].as_f64(), Some(1.0), "{t:#}");
    assert_eq!(cheap["lineage"]["dev_score"].as_f64(), Some(1.0));
    assert!(
        tokens(winner) < tokens(chosen),
        "cheaper: {} vs {}",
        tokens(winner),
        tokens(chosen)
    );
    assert!(demos(&cheap) < demos(&by_score), "{cheap:#}");
    assert_eq!(winner["tied_with_best"], true);
    // The report shows both: the search's choice is a runner-up.
    let runners = t["runners_up"].as_array().cloned().unwrap_or_default();
    assert!(
        runners.iter().any(
            |r| r["overlay_hash"] == chosen["overlay_hash"] && r["score"].as_f64() == Some(1.0)
        ),
        "{t:#}"
    );
    assert!(out.contains("objective  cheapest-tied"), "{out}");
    let winner_line = format!(
        "winner  score 1.0000  {:.0} prompt tokens/call",
        tokens(winner)
    );
    let runner_line = format!(
        "runner-up  score 1.0000  {:.0} prompt tokens/call",
        tokens(chosen)
    );
    assert!(out.contains(&winner_line), "{winner_line:?} in {out}");
    assert!(out.contains(&runner_line), "{runner_line:?} in {out}");
    assert!(
        err.contains("--objective cheapest-tied: kept a candidate scoring 1.0000"),
        "{err}"
    );
    // Every candidate's cost is in the history too.
    let history = cheap["lineage"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        history
            .iter()
            .all(|h| h["prompt_tokens_per_call"].as_f64().is_some()),
        "{history:#?}"
    );
}

#[test]
fn issue14_a_prompt_cap_trades_score_for_size() {
    let stub = StubServer::start(reply);
    // Only the zero-shot program fits under 150 tokens a call.
    let (code, out, err, a) = compile(&stub, &["--objective", "max-prompt-tokens=150", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let t = &a["lineage"]["tradeoff"];
    assert!(tokens(&t["winner"]) <= 150.0, "{t:#}");
    assert_eq!(a["lineage"]["dev_score"].as_f64(), Some(0.5), "{t:#}");
    assert_eq!(demos(&a), 0);
    let json: Value = serde_json::from_str(&out).expect("json summary");
    assert_eq!(json["tradeoff"], *t);
    // A cap nothing meets keeps the smallest and says so.
    let (code, out, err, a) = compile(&stub, &["--objective", "max-prompt-tokens=10"]);
    assert_eq!(code, 0, "{out}{err}");
    let unmet = a["lineage"]["tradeoff"]["unmet"].as_str().unwrap_or("");
    assert!(
        unmet.contains("no candidate averages at most 10 prompt tokens"),
        "{a:#}"
    );
    assert!(err.contains(unmet), "{err}");
    assert_eq!(demos(&a), 0);
}

#[test]
fn issue14_an_unknown_objective_is_a_usage_error() {
    let stub = StubServer::start(reply);
    let (code, _out, err, _) = compile(&stub, &["--objective", "cheapest"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown objective `cheapest`") && err.contains("cheapest-tied"),
        "{err}"
    );
    assert_eq!(stub.requests(), 0, "nothing ran");
}

#[test]
fn issue14_the_compile_section_names_an_objective() {
    let stub = StubServer::start(reply);
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = std::fs::read_to_string(PROGRAM).expect("program");
    let program = dir.path().join("reverse.yaml");
    std::fs::write(
        &program,
        format!("{yaml}compile:\n  objective: cheapest-tied\n"),
    )
    .expect("write");
    let (code, out, err, a) = compile_program(&stub, &program, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(a["lineage"]["tradeoff"]["objective"], "cheapest-tied");
    // The flag wins over the file.
    let (code, out, err, a) = compile_program(&stub, &program, &["--objective", "score"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(a["lineage"]["tradeoff"]["objective"], "score");
    // A misspelt objective is located, before any LM call.
    let before = stub.requests();
    std::fs::write(&program, format!("{yaml}compile:\n  objective: cheapest\n")).expect("write");
    let (code, _out, err, _) = compile_program(&stub, &program, &[]);
    assert_eq!(code, 2, "{err}");
    let line = yaml.lines().count() + 2;
    assert!(err.contains(&format!("reverse.yaml:{line}:")), "{err}");
    assert!(err.contains("unknown objective `cheapest`"), "{err}");
    assert_eq!(stub.requests(), before);
}
