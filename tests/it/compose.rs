//! Composition (issue 14): `lmc compile ARTIFACT --optimizer X` starts from
//! the artifact's overlay and keeps what X does not search, scoring every
//! candidate as it will be written, and the lineage lists every earlier
//! stage with the hash of its artifact. The scripted LM is SIMBA's: the
//! task is right on every word only when the instruction carries the
//! REVERSE rule (0.5 otherwise); demos change nothing, so a composed score
//! of 1.0 proves the earlier instruction was kept while demos were searched.

use crate::simba::{scripted, RULE};
use crate::support::stub::StubServer;
use crate::support::{lmc, run};
use serde_json::Value;
use std::path::Path;

/// Compile `target` with `optimizer` into `out`; the artifact and its hash.
fn compile(
    stub: &StubServer,
    cache: &Path,
    target: &Path,
    optimizer: &str,
    opts: &[&str],
    out: &Path,
) -> (Value, String) {
    let mut cmd = lmc();
    cmd.env("LMC_CACHE_DIR", cache)
        .arg("compile")
        .arg(target)
        .args(["--trainset", "tests/fixtures/instruction/words.csv"])
        .args(["--valset", "tests/fixtures/instruction/words.csv"])
        .args(["--optimizer", optimizer, "--seed", "3"])
        .args(["--provider", "openai", "--model", "scripted"])
        .args(["--base-url", &stub.url()])
        .arg("-o")
        .arg(out);
    for o in opts {
        cmd.args(["--opt", o]);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(
        code,
        0,
        "{optimizer} on {}: {stdout}{stderr}",
        target.display()
    );
    let bytes = std::fs::read(out).expect("artifact written");
    let hash = format!("sha256:{}", hex(&bytes));
    (serde_json::from_slice(&bytes).expect("artifact json"), hash)
}

fn hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn flip(a: &Value) -> &Value {
    &a["predictors"]["flip"]
}

#[test]
fn issue14_instructions_survive_a_demo_pass() {
    let stub = scripted(RULE);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let program = Path::new("tests/fixtures/instruction/reverse.yaml");
    let a_path = dir.path().join("a.json");
    let (a, a_hash) = compile(
        &stub,
        &cache,
        program,
        "simba",
        &["bsize=6", "num_candidates=3", "max_steps=3", "max_demos=0"],
        &a_path,
    );
    assert!(
        flip(&a)["instructions"]
            .as_str()
            .unwrap_or("")
            .contains("REVERSE"),
        "{a:#}"
    );
    assert!(
        a["lineage"].get("stages").is_none(),
        "a first compile has no stages"
    );

    let (b, _) = compile(
        &stub,
        &cache,
        &a_path,
        "labeled_few_shot",
        &["k=2"],
        &dir.path().join("b.json"),
    );
    assert_eq!(
        flip(&b)["instructions"],
        flip(&a)["instructions"],
        "the instruction survived"
    );
    assert_eq!(flip(&b)["demos"].as_array().map(Vec::len), Some(2));
    // Scored with the rule in place: a demo pass alone reaches only 0.5.
    assert_eq!(b["lineage"]["dev_score"].as_f64(), Some(1.0), "{b:#}");
    let stages = b["lineage"]["stages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(stages.len(), 1, "{stages:?}");
    assert_eq!(stages[0]["optimizer"], "simba");
    assert_eq!(stages[0]["artifact_hash"], a_hash.as_str());
    assert_eq!(stages[0]["dev_score"].as_f64(), Some(1.0));
}

#[test]
fn issue14_demos_survive_an_instruction_pass_and_stages_chain() {
    let stub = scripted(RULE);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let program = Path::new("tests/fixtures/instruction/reverse.yaml");
    let a_path = dir.path().join("a.json");
    let (a, a_hash) = compile(
        &stub,
        &cache,
        program,
        "labeled_few_shot",
        &["k=2"],
        &a_path,
    );
    let demos = flip(&a)["demos"].clone();
    assert_eq!(demos.as_array().map(Vec::len), Some(2));

    let b_path = dir.path().join("b.json");
    let (b, b_hash) = compile(
        &stub,
        &cache,
        &a_path,
        "copro",
        &["breadth=2", "depth=1"],
        &b_path,
    );
    assert!(
        flip(&b)["instructions"]
            .as_str()
            .unwrap_or("")
            .contains("REVERSE"),
        "{b:#}"
    );
    assert_eq!(
        flip(&b)["demos"],
        demos,
        "the demos survived the instruction pass"
    );
    assert_eq!(b["lineage"]["dev_score"].as_f64(), Some(1.0));
    // COPRO's starting candidate is the artifact as compiled.
    assert_eq!(b["lineage"]["baseline_score"].as_f64(), Some(0.5));

    // A third stage (per-input demos) keeps COPRO's instruction; the
    // lineage lists both earlier stages, oldest first.
    let (c, _) = compile(
        &stub,
        &cache,
        &b_path,
        "knn_few_shot",
        &["k=1"],
        &dir.path().join("c.json"),
    );
    assert_eq!(flip(&c)["instructions"], flip(&b)["instructions"]);
    assert!(flip(&c)["knn"].is_object(), "{c:#}");
    assert_eq!(c["lineage"]["dev_score"].as_f64(), Some(1.0));
    let stages: Vec<(String, String)> = c["lineage"]["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["optimizer"].as_str().unwrap_or("").into(),
                s["artifact_hash"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        vec![
            ("labeled_few_shot".to_string(), a_hash),
            ("copro".to_string(), b_hash)
        ]
    );
}

#[test]
fn issue14_an_instruction_pass_rewrites_the_artifacts_instruction() {
    let stub = scripted(RULE);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let program = Path::new("tests/fixtures/instruction/reverse.yaml");
    let a_path = dir.path().join("a.json");
    compile(
        &stub,
        &cache,
        program,
        "simba",
        &["bsize=6", "num_candidates=3", "max_steps=3", "max_demos=0"],
        &a_path,
    );
    let (b, _) = compile(
        &stub,
        &cache,
        &a_path,
        "copro",
        &["breadth=2", "depth=1"],
        &dir.path().join("b.json"),
    );
    // COPRO's start is the artifact as compiled (already 1.0) ...
    assert_eq!(b["lineage"]["baseline_score"].as_f64(), Some(1.0), "{b:#}");
    // ... and its proposer was asked to improve the artifact's instruction.
    let asked: Vec<String> = stub
        .received()
        .iter()
        .filter_map(|body| {
            body["messages"].as_array()?.last()?["content"]
                .as_str()
                .map(str::to_string)
        })
        .filter(|user| user.contains("[[ ## basic_instruction ## ]]"))
        .collect();
    assert!(!asked.is_empty(), "no COPRO proposal request");
    assert!(
        asked.iter().all(|u| u
            .split("[[ ## basic_instruction ## ]]")
            .nth(1)
            .is_some_and(|rest| rest.split("[[ ## ").next().unwrap_or("").contains(RULE))),
        "{asked:#?}"
    );
}
