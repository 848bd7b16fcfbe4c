//! Pipelines in one command (issue 14): `lmc compile PROGRAM --optimizer A
//! --then B` runs B from A's overlay exactly as `lmc compile A.json
//! --optimizer B` would, under one budget and one cache, and writes one
//! artifact whose `lineage.stages` records A. The scripted LM is SIMBA's
//! (see `compose.rs`): right on every word only when the instruction
//! carries the REVERSE rule.

use crate::simba::{scripted, RULE};
use crate::support::stub::StubServer;
use crate::support::{lmc, run};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const PROGRAM: &str = "tests/fixtures/instruction/reverse.yaml";

/// `lmc compile TARGET` on the words task against `stub`, cache in `cache`.
fn compile_cmd(stub: &StubServer, cache: &Path, target: &Path, out: &Path) -> Command {
    let mut cmd = lmc();
    cmd.env("LMC_CACHE_DIR", cache)
        .arg("compile")
        .arg(target)
        .args(["--trainset", "tests/fixtures/instruction/words.csv"])
        .args(["--valset", "tests/fixtures/instruction/words.csv"])
        .args(["--seed", "3"])
        .args(["--provider", "openai", "--model", "scripted"])
        .args(["--base-url", &stub.url()])
        .arg("-o")
        .arg(out);
    cmd
}

fn ok(cmd: &mut Command, out: &Path) -> Value {
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, 0, "{stdout}{stderr}");
    serde_json::from_slice(&std::fs::read(out).expect("artifact written")).expect("artifact json")
}

/// What a pipeline must reproduce: per predictor, instructions and demos
/// (fixed or kNN).
fn searched(a: &Value) -> Value {
    let p = &a["predictors"]["flip"];
    serde_json::json!([p["instructions"], p["demos"], p["knn"]])
}

#[test]
fn issue14_a_pipeline_equals_two_compiles() {
    let stub = scripted(RULE);
    let dir = tempfile::tempdir().expect("tempdir");
    // Two commands, their own cache.
    let cache = dir.path().join("cache-two");
    let a_path = dir.path().join("a.json");
    let a = ok(
        compile_cmd(&stub, &cache, Path::new(PROGRAM), &a_path).args([
            "--optimizer",
            "labeled_few_shot",
            "--opt",
            "k=2",
        ]),
        &a_path,
    );
    let b_path = dir.path().join("b.json");
    let b = ok(
        compile_cmd(&stub, &cache, &a_path, &b_path).args([
            "--optimizer",
            "copro",
            "--opt",
            "breadth=2",
            "--opt",
            "depth=1",
        ]),
        &b_path,
    );
    // One command, a fresh cache: stage settings through `NAME.KEY=VALUE`.
    let cache = dir.path().join("cache-one");
    let p_path = dir.path().join("p.json");
    let mut cmd = compile_cmd(&stub, &cache, Path::new(PROGRAM), &p_path);
    cmd.args(["--optimizer", "labeled_few_shot", "--opt", "k=2"])
        .args(["--then", "copro", "--opt", "copro.breadth=2"])
        .args(["--opt", "copro.depth=1"]);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("labeled_few_shot → copro"),
        "the summary names the pipeline: {stdout}"
    );
    let p: Value = serde_json::from_slice(&std::fs::read(&p_path).expect("artifact written"))
        .expect("artifact json");

    assert_eq!(searched(&p), searched(&b), "{p:#}\n{b:#}");
    assert_eq!(p["lineage"]["optimizer"], "copro");
    assert_eq!(p["lineage"]["settings"], b["lineage"]["settings"]);
    assert_eq!(p["lineage"]["dev_score"], b["lineage"]["dev_score"]);
    assert_eq!(p["lineage"]["dev_score"].as_f64(), Some(1.0));
    let stages = p["lineage"]["stages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(stages.len(), 1, "{stages:?}");
    let s = &stages[0];
    assert_eq!(s["optimizer"], "labeled_few_shot");
    assert_eq!(s["settings"], a["lineage"]["settings"]);
    assert_eq!(s["dev_score"], a["lineage"]["dev_score"]);
    assert_eq!(s["lm_calls"], a["lineage"]["lm_calls"]);
    assert!(
        s.get("artifact_hash").is_none(),
        "an in-memory stage wrote no file: {s}"
    );
}

#[test]
fn issue14_a_pipeline_shares_one_budget() {
    let stub = scripted(RULE);
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = |cmd: &mut Command| {
        cmd.args(["--optimizer", "labeled_few_shot", "--opt", "k=2"])
            .args(["--then", "copro", "--opt", "copro.breadth=2"])
            .args(["--opt", "copro.depth=1"]);
    };
    // The unbounded pipeline: each stage's LM calls on a cold cache.
    let free = dir.path().join("free.json");
    let mut cmd = compile_cmd(&stub, &dir.path().join("c1"), Path::new(PROGRAM), &free);
    pipeline(&mut cmd);
    let f = ok(&mut cmd, &free);
    let total = stub.received().len() as u64;
    // The first stage's requests all reach the LM on a cold cache; the
    // second's include cache hits (its start is the first stage's result,
    // already run), so its LM calls are the rest.
    let first = f["lineage"]["stages"][0]["lm_calls"]
        .as_u64()
        .expect("stage calls");
    let second = total - first;
    assert!(first > 0 && second > 0, "{first} then {second}: {f:#}");

    // A budget each stage fits in alone, but not both together.
    let budget = first.max(second) + 1;
    assert!(budget < first + second, "{first} + {second}");
    let before = stub.received().len();
    let out = dir.path().join("bounded.json");
    let mut cmd = compile_cmd(&stub, &dir.path().join("c2"), Path::new(PROGRAM), &out);
    pipeline(&mut cmd);
    cmd.args(["--max-lm-calls", &budget.to_string()]);
    let b = ok(&mut cmd, &out);
    let made = (stub.received().len() - before) as u64;
    assert!(made <= budget, "{made} calls for a budget of {budget}");
    assert_eq!(b["lineage"]["budget_exhausted"], true, "{b:#}");
}

#[test]
fn issue14_dry_run_sums_the_stages() {
    let stub = scripted(RULE);
    let dir = tempfile::tempdir().expect("tempdir");
    let dry = |extra: &[&str]| -> Value {
        let mut cmd = compile_cmd(
            &stub,
            &dir.path().join("c"),
            Path::new(PROGRAM),
            &dir.path().join("x.json"),
        );
        cmd.args(["--dry-run", "--json"]).args(extra);
        let (code, stdout, stderr) = run(&mut cmd);
        assert_eq!(code, 0, "{stdout}{stderr}");
        serde_json::from_str(&stdout).expect("dry-run json")
    };
    let a = dry(&["--optimizer", "labeled_few_shot", "--opt", "k=2"]);
    let b = dry(&[
        "--optimizer",
        "copro",
        "--opt",
        "breadth=2",
        "--opt",
        "depth=1",
    ]);
    let p = dry(&[
        "--optimizer",
        "labeled_few_shot",
        "--opt",
        "k=2",
        "--then",
        "copro",
        "--opt",
        "copro.breadth=2",
        "--opt",
        "copro.depth=1",
    ]);
    let calls = |v: &Value| v["lm_calls"].as_u64().expect("lm_calls");
    assert_eq!(calls(&p), calls(&a) + calls(&b), "{p:#}");
    assert_eq!(p["stages"].as_array().map(Vec::len), Some(2));
    assert_eq!(p["stages"][1]["optimizer"], "copro");
    assert_eq!(stub.received().len(), 0, "a dry run calls no LM");
}

#[test]
fn issue14_unknown_then_optimizer_is_a_usage_error() {
    let stub = scripted(RULE);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = compile_cmd(
        &stub,
        &dir.path().join("c"),
        Path::new(PROGRAM),
        &dir.path().join("x.json"),
    );
    cmd.args(["--optimizer", "mipro", "--then", "knn_fewshot"]);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("knn_fewshot"), "{stderr}");
    assert!(
        stderr.contains("did you mean `knn_few_shot`"),
        "a did-you-mean: {stderr}"
    );
    // A stage setting for an optimizer that is no stage.
    let mut cmd = compile_cmd(
        &stub,
        &dir.path().join("c"),
        Path::new(PROGRAM),
        &dir.path().join("x.json"),
    );
    cmd.args(["--optimizer", "mipro", "--then", "knn_few_shot"])
        .args(["--opt", "gepa.k=3"]);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("not a stage"), "{stderr}");
    assert_eq!(stub.received().len(), 0, "nothing ran");
}
