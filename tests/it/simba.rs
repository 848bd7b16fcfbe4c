//! SIMBA (issue 14) against a scripted LM where a rule is needed: the task
//! "model" echoes the word at low temperature and reverses it (the right
//! answer) when sampled hot, so the non-palindromes vary across samples —
//! the hard examples. It reverses at every temperature only when its
//! instruction carries [`RULE`], and the feedback "model" writes that rule
//! only when it is shown a contrast (a better run rewarded 1, a worse one
//! rewarded 0). So a winning artifact proves the whole loop: sampling at
//! several temperatures, bucketing by variability, the feedback request,
//! the rule appended to the instruction and the final choice on the valset.

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, run};
use serde_json::Value;

pub const RULE: &str = "If the module receives a word, then it should write it in REVERSE order.";
const HARMFUL: &str = "If the module receives a word, then it should DOUBLE it.";

fn first_line(req: &StubRequest, field: &str) -> String {
    let v = req.input(field).unwrap_or_default();
    v.lines().next().unwrap_or("").trim().to_string()
}

fn task_answer(req: &StubRequest) -> String {
    let sys = req.system();
    // The input section runs on to the closing request: keep its first line.
    let word = first_line(req, "word");
    let hot = req.body["temperature"].as_f64().unwrap_or(0.0) > 0.7;
    let answer = if sys.contains("DOUBLE") {
        format!("{word}{word}")
    } else if sys.contains("REVERSE") || hot {
        word.chars().rev().collect()
    } else {
        word
    };
    format!("[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]")
}

/// The task model plus a feedback model that answers a contrast with
/// `advice` (and a COPRO proposer that proposes it, for the composition tests).
pub fn scripted(advice: &'static str) -> StubServer {
    StubServer::start(move |req: &StubRequest| {
        if req.system().contains("You improve instructions") {
            return StubReply::Ok(format!(
                "[[ ## proposed_instruction ## ]]\n{advice}\n\n[[ ## proposed_prefix_for_output_field ## ]]\nAnswer:\n\n[[ ## completed ## ]]"
            ));
        }
        if !req.system().contains("You are shown two runs of a program") {
            return StubReply::Ok(task_answer(req));
        }
        let contrast = first_line(req, "better_reward_value") == "1"
            && first_line(req, "worse_reward_value") == "0";
        let json = if contrast {
            serde_json::json!({ "flip": advice }).to_string()
        } else {
            "{}".to_string()
        };
        StubReply::Ok(format!(
            "[[ ## discussion ## ]]\nThe worse run echoed the word.\n\n[[ ## module_advice ## ]]\n{json}\n\n[[ ## completed ## ]]"
        ))
    })
}

fn compile(
    stub: &StubServer,
    opts: &[&str],
    extra: &[&str],
) -> (i32, String, String, Option<Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("compiled.json");
    let mut cmd = lmc();
    cmd.env("LMC_CACHE_DIR", dir.path().join("cache"))
        .args(["compile", "tests/fixtures/instruction/reverse.yaml"])
        .args(["--trainset", "tests/fixtures/instruction/words.csv"])
        .args(["--valset", "tests/fixtures/instruction/words.csv"])
        .args(["--optimizer", "simba"])
        .args(["--provider", "openai", "--model", "scripted"])
        .args(["--base-url", &stub.url()])
        .arg("-o")
        .arg(&out);
    if !extra.contains(&"--seed") {
        cmd.args(["--seed", "3"]);
    }
    for o in opts {
        cmd.args(["--opt", o]);
    }
    cmd.args(extra);
    let (code, stdout, stderr) = run(&mut cmd);
    let artifact = std::fs::read_to_string(&out)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    (code, stdout, stderr, artifact)
}

fn instruction(a: &Value) -> String {
    a["predictors"]["flip"]["instructions"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn scores(a: &Value) -> (f64, f64) {
    let l = &a["lineage"];
    (
        l["baseline_score"].as_f64().expect("baseline score"),
        l["dev_score"].as_f64().expect("dev score"),
    )
}

const SMALL: &[&str] = &["bsize=6", "num_candidates=3", "max_steps=3"];

#[test]
fn issue14_simba_appends_the_rule_learned_from_a_contrast() {
    let stub = scripted(RULE);
    let (code, _out, err, artifact) = compile(&stub, SMALL, &[]);
    assert_eq!(code, 0, "stderr: {err}");
    let a = artifact.expect("artifact written");
    let (base, dev) = scores(&a);
    // The start echoes: right on the 6 palindromes of 12 words.
    assert!((base - 0.5).abs() < 1e-9, "baseline {base}");
    assert!((dev - 1.0).abs() < 1e-9, "dev {dev}; artifact {a:#}");
    assert!(
        instruction(&a).ends_with(&format!("\n\n{RULE}")),
        "the rule is appended to the instruction: {:?}",
        instruction(&a)
    );
    let history = a["lineage"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        history
            .iter()
            .any(|h| h["origin"] == "append_rule" && h["minibatch_score"].as_f64() == Some(1.0)),
        "history: {history:#?}"
    );
    assert!(history.iter().any(|h| h["origin"] == "baseline"));
    let plan = &a["lineage"]["plan"];
    assert!(
        plan["rules_appended"].as_u64().unwrap_or(0) >= 1,
        "plan {plan}"
    );
    assert_eq!(plan["bsize"], 6);
    assert_eq!(a["lineage"]["settings"]["num_candidates"], 3);
}

#[test]
fn issue14_simba_never_returns_a_program_below_the_start() {
    // Advice that breaks every answer: candidates carrying it lose on the
    // mini-batch and on the valset, and the start (0.5) stays the winner.
    let stub = scripted(HARMFUL);
    for extra in [&[][..], &["--seed", "5"][..]] {
        let mut opts = SMALL.to_vec();
        opts.push("max_demos=0");
        let (code, _out, err, artifact) = compile(&stub, &opts, extra);
        assert_eq!(code, 0, "stderr: {err}");
        let a = artifact.expect("artifact written");
        let (base, dev) = scores(&a);
        assert!(dev >= base, "dev {dev} below the start's {base}");
        assert!(
            !instruction(&a).contains("DOUBLE"),
            "a harmful rule was returned: {}",
            instruction(&a)
        );
        // Rules only: no demo was ever appended.
        let history = a["lineage"]["history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            history.iter().all(|h| h["origin"] != "append_demo"),
            "{history:#?}"
        );
        assert!(
            history.iter().any(|h| h["origin"] == "append_rule"),
            "{history:#?}"
        );
    }
}

#[test]
fn issue14_simba_dry_run_projects_every_phase() {
    let (code, out, err) = run(lmc()
        .args(["compile", "tests/fixtures/instruction/reverse.yaml"])
        .args(["--trainset", "tests/fixtures/instruction/words.csv"])
        .args(["--optimizer", "simba", "--dry-run", "--json"])
        .args([
            "--opt",
            "bsize=4",
            "--opt",
            "num_candidates=2",
            "--opt",
            "max_steps=3",
        ]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let phases: Vec<(String, u64)> = v["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["phase"].as_str().unwrap_or("").to_string(),
                p["runs"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // 3 steps x 2 samples x 4 examples; 3 steps x 3 candidates x 4; the
    // start and 2 winners on 12 validation examples (the trainset here).
    assert_eq!(
        phases,
        vec![
            ("sampling".to_string(), 24),
            ("minibatch".to_string(), 36),
            ("evaluating".to_string(), 36)
        ]
    );
    // One predict per run, plus at most one feedback request per candidate.
    assert_eq!(v["lm_calls"], 24 + 36 + 36 + 9);
    assert_eq!(v["exact"], false);
}

#[test]
fn issue14_simba_rerun_replays_the_cache_without_new_calls() {
    let stub = scripted(RULE);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let mut artifacts = Vec::new();
    let mut requests = Vec::new();
    for i in 0..2 {
        let out = dir.path().join(format!("a{i}.json"));
        let (code, _, err) = run(lmc()
            .env("LMC_CACHE_DIR", &cache)
            .args(["compile", "tests/fixtures/instruction/reverse.yaml"])
            .args(["--trainset", "tests/fixtures/instruction/words.csv"])
            .args(["--optimizer", "simba", "--seed", "3"])
            .args([
                "--opt",
                "bsize=6",
                "--opt",
                "num_candidates=3",
                "--opt",
                "max_steps=2",
            ])
            .args(["--provider", "openai", "--model", "scripted"])
            .args(["--base-url", &stub.url()])
            .arg("-o")
            .arg(&out));
        assert_eq!(code, 0, "{err}");
        let mut a: Value =
            serde_json::from_str(&std::fs::read_to_string(&out).expect("artifact")).expect("json");
        a["created_at"] = Value::Null;
        a["lineage"]["run"] = Value::Null;
        artifacts.push(a);
        requests.push(stub.requests());
    }
    assert!(requests[0] > 0);
    assert_eq!(requests[1], requests[0], "the re-run repeated LM calls");
    assert_eq!(
        artifacts[0], artifacts[1],
        "same inputs, seed and cache give the same artifact"
    );
}
