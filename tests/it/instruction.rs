//! Instruction search (COPRO, MIPROv2, GEPA) against a scripted LM with a
//! known optimum: the task "model" reverses the word only when the
//! instruction contains REVERSE and doubles it when it contains DOUBLE;
//! otherwise it echoes the word (right for the palindromes, half the data).
//! The proposer's replies are scripted per optimizer, so each test pins the
//! control flow: proposals are parsed, good ones accepted, harmful ones
//! never returned.

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, run};
use serde_json::Value;

const GOOD: &str = "Write the word in REVERSE order, last letter first.";
const BAD: &str = "Write the word twice (DOUBLE it).";

fn task_answer(req: &StubRequest) -> String {
    let sys = req.system();
    // The word is the first line after its marker in the last user turn.
    let user = req.last_user();
    let word = user
        .split("[[ ## word ## ]]\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or("")
        .trim()
        .to_string();
    let answer = if sys.contains("REVERSE") {
        word.chars().rev().collect()
    } else if sys.contains("DOUBLE") {
        format!("{word}{word}")
    } else {
        word
    };
    format!("[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]")
}

fn proposal(field: &str, text: &str) -> String {
    format!("[[ ## {field} ## ]]\n{text}\n\n[[ ## proposed_prefix_for_output_field ## ]]\nAnswer:\n\n[[ ## completed ## ]]")
}

/// A stub where proposals come from `propose(kind)`; kind is one of
/// `basic`, `attempts`, `grounded`, `reflect`, `summary`.
fn scripted(propose: fn(&str) -> &'static str) -> StubServer {
    StubServer::start(move |req: &StubRequest| {
        let sys = req.system();
        let reply = if sys.contains("Study what the better ones do") {
            proposal("proposed_instruction", propose("attempts"))
        } else if sys.contains("You improve instructions") {
            proposal("proposed_instruction", propose("basic"))
        } else if sys.contains("Write the instruction for one step") {
            proposal("proposed_instruction", propose("grounded"))
        } else if sys.contains("An assistant was given the instruction") {
            format!(
                "[[ ## new_instruction ## ]]\n{}\n\n[[ ## completed ## ]]",
                propose("reflect")
            )
        } else if sys.contains("Here are examples from a dataset") {
            "[[ ## summary ## ]]\nWords and their expected answers.\n\n[[ ## completed ## ]]"
                .to_string()
        } else {
            task_answer(req)
        };
        StubReply::Ok(reply)
    })
}

fn compile(
    stub: &StubServer,
    optimizer: &str,
    opts: &[&str],
) -> (i32, String, String, Option<Value>) {
    compile_with(stub, optimizer, opts, &[])
}

fn compile_with(
    stub: &StubServer,
    optimizer: &str,
    opts: &[&str],
    extra: &[&str],
) -> (i32, String, String, Option<Value>) {
    compile_in(stub, optimizer, opts, extra, None)
}

fn compile_in(
    stub: &StubServer,
    optimizer: &str,
    opts: &[&str],
    extra: &[&str],
    cache: Option<&std::path::Path>,
) -> (i32, String, String, Option<Value>) {
    compile_seeded(stub, optimizer, opts, extra, cache, 3)
}

fn compile_seeded(
    stub: &StubServer,
    optimizer: &str,
    opts: &[&str],
    extra: &[&str],
    cache: Option<&std::path::Path>,
    seed: u64,
) -> (i32, String, String, Option<Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("compiled.json");
    let cache = cache
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| dir.path().join("cache"));
    let mut cmd = lmc();
    cmd.env("LMC_CACHE_DIR", cache)
        .args(["compile", "tests/fixtures/instruction/reverse.yaml"])
        .args(["--trainset", "tests/fixtures/instruction/words.csv"])
        .args(["--valset", "tests/fixtures/instruction/words.csv"])
        .args([
            "--optimizer",
            optimizer,
            "--seed",
            &seed.to_string(),
            "--provider",
            "openai",
            "--model",
            "scripted",
        ])
        .args(["--base-url", &stub.url()])
        .arg("-o")
        .arg(&out);
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

/// The starting program echoes: right on the 6 palindromes of 12 words.
fn assert_not_below_baseline(a: &Value) {
    let base = a["lineage"]["baseline_score"]
        .as_f64()
        .expect("baseline score recorded");
    let dev = a["lineage"]["dev_score"]
        .as_f64()
        .expect("dev score recorded");
    assert!((base - 0.5).abs() < 1e-9, "baseline {base}");
    assert!(
        dev >= base,
        "returned a candidate scoring {dev} below the starting program's {base}"
    );
}

fn instruction(artifact: &Value) -> String {
    artifact["predictors"]["flip"]["instructions"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn gepa_accepts_a_reflected_instruction_that_fixes_the_task() {
    let stub = scripted(|kind| if kind == "reflect" { GOOD } else { BAD });
    let (code, _out, err, artifact) = compile(&stub, "gepa", &["max_metric_calls=80"]);
    assert_eq!(code, 0, "stderr: {err}");
    let a = artifact.expect("artifact written");
    assert_not_below_baseline(&a);
    assert!(
        instruction(&a).contains("REVERSE"),
        "instruction: {}\nartifact: {a:#}\nstderr: {err}",
        instruction(&a)
    );
    let history = a["lineage"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        history
            .iter()
            .any(|h| h["origin"] == "mutation" && h["accepted"] == true),
        "history: {history:?}"
    );
}

#[test]
fn gepa_never_returns_a_candidate_below_the_starting_program() {
    let stub = scripted(|_| BAD);
    let (code, _out, err, artifact) = compile(&stub, "gepa", &["max_metric_calls=60"]);
    assert_eq!(code, 0, "stderr: {err}");
    let a = artifact.expect("artifact written");
    assert_not_below_baseline(&a);
    assert!(
        !instruction(&a).contains("DOUBLE"),
        "a harmful instruction was returned: {}",
        instruction(&a)
    );
    let history = a["lineage"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        history
            .iter()
            .any(|h| h["origin"] == "mutation" && h["accepted"] == false),
        "rejections recorded: {history:?}"
    );
}

#[test]
fn copro_keeps_the_best_scored_attempt() {
    // First-round proposals are harmful; proposals conditioned on the scored
    // attempts are good: depth 2 must find and keep the good one.
    let stub = scripted(|kind| if kind == "attempts" { GOOD } else { BAD });
    let (code, _out, err, artifact) = compile(&stub, "copro", &["breadth=3", "depth=2"]);
    assert_eq!(code, 0, "stderr: {err}");
    let a = artifact.expect("artifact written");
    assert_not_below_baseline(&a);
    assert!(
        instruction(&a).contains("REVERSE"),
        "instruction: {}\nartifact: {a:#}\nstderr: {err}",
        instruction(&a)
    );
    // The proposer saw the earlier attempts with their scores.
    let saw_scores = stub
        .received()
        .iter()
        .any(|b| b.to_string().contains("Resulting score #1"));
    assert!(
        saw_scores,
        "given_attempts proposals must list scored attempts"
    );
}

#[test]
fn copro_with_only_harmful_proposals_returns_the_program() {
    let stub = scripted(|_| BAD);
    let (code, _out, err, artifact) = compile(&stub, "copro", &["breadth=3", "depth=2"]);
    assert_eq!(code, 0, "stderr: {err}");
    let a = artifact.expect("artifact written");
    assert_not_below_baseline(&a);
    assert!(
        !instruction(&a).contains("DOUBLE"),
        "instruction: {}",
        instruction(&a)
    );
}

#[test]
fn mipro_search_finds_the_grounded_proposal_that_works() {
    let stub = scripted(|kind| if kind == "grounded" { GOOD } else { BAD });
    let (code, _out, err, artifact) = compile(
        &stub,
        "mipro",
        &[
            "auto=none",
            "num_candidates=3",
            "num_trials=6",
            "max_bootstrapped_demos=0",
            "max_labeled_demos=0",
        ],
    );
    assert_eq!(code, 0, "stderr: {err}");
    let a = artifact.expect("artifact written");
    assert_not_below_baseline(&a);
    assert!(
        instruction(&a).contains("REVERSE"),
        "instruction: {}\nartifact: {a:#}\nstderr: {err}",
        instruction(&a)
    );
}

#[test]
fn mipro_with_harmful_proposals_returns_the_program() {
    let stub = scripted(|_| BAD);
    let (code, _out, err, artifact) = compile(
        &stub,
        "mipro",
        &[
            "auto=none",
            "num_candidates=3",
            "num_trials=6",
            "max_bootstrapped_demos=0",
            "max_labeled_demos=0",
        ],
    );
    assert_eq!(code, 0, "stderr: {err}");
    let a = artifact.expect("artifact written");
    assert_not_below_baseline(&a);
    assert!(
        !instruction(&a).contains("DOUBLE"),
        "instruction: {}",
        instruction(&a)
    );
}

#[test]
fn prompt_lm_sends_proposals_to_a_separate_server() {
    // The task server answers tasks only; proposals must go to the proposer.
    let task = scripted(|_| BAD);
    let proposer = scripted(|kind| if kind == "reflect" { GOOD } else { BAD });
    let url = proposer.url();
    let (code, _out, err, artifact) = compile_with(
        &task,
        "gepa",
        &["max_metric_calls=80"],
        &["--prompt-lm", "proposer", "--prompt-base-url", &url],
    );
    assert_eq!(code, 0, "stderr: {err}");
    let a = artifact.expect("artifact written");
    assert_not_below_baseline(&a);
    assert!(
        instruction(&a).contains("REVERSE"),
        "instruction: {}",
        instruction(&a)
    );
    let reflections = |s: &StubServer| {
        s.received()
            .iter()
            .filter(|b| {
                b.to_string()
                    .contains("An assistant was given the instruction")
            })
            .count()
    };
    assert!(
        reflections(&proposer) > 0,
        "the proposer server got no reflection request"
    );
    assert_eq!(
        reflections(&task),
        0,
        "reflection requests went to the task server"
    );
}

#[test]
fn prompt_lm_is_refused_for_few_shot_optimizers() {
    let stub = scripted(|_| BAD);
    let (code, _out, err, _a) = compile_with(
        &stub,
        "labeled_few_shot",
        &[],
        &[
            "--prompt-lm",
            "x",
            "--prompt-base-url",
            "http://127.0.0.1:9/v1",
        ],
    );
    assert_eq!(code, 2, "stderr: {err}");
    assert!(
        err.contains("--prompt-lm applies to the instruction searches"),
        "{err}"
    );
}

#[test]
fn an_instruction_search_rerun_replays_the_cache_without_new_calls() {
    let stub = scripted(|kind| if kind == "reflect" { GOOD } else { BAD });
    let cache = tempfile::tempdir().expect("tempdir");
    let (code, _o, err, first) = compile_in(
        &stub,
        "gepa",
        &["max_metric_calls=80"],
        &[],
        Some(cache.path()),
    );
    assert_eq!(code, 0, "stderr: {err}");
    let calls = stub.requests();
    assert!(calls > 0);
    let (code, _o, err, second) = compile_in(
        &stub,
        "gepa",
        &["max_metric_calls=80"],
        &[],
        Some(cache.path()),
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(stub.requests(), calls, "the re-run repeated LM calls");
    let strip = |a: Option<Value>| {
        let mut a = a.expect("artifact");
        a["created_at"] = Value::Null;
        a["lineage"]["run"] = Value::Null;
        a
    };
    assert_eq!(
        strip(first),
        strip(second),
        "same inputs, seed and cache give the same artifact"
    );
}

/// A stub whose k-th reflection (0-based, in request order) is `reflect(k)`;
/// everything else is the task.
fn reflecting(reflect: fn(usize) -> &'static str) -> StubServer {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    StubServer::start(move |req: &StubRequest| {
        if req
            .system()
            .contains("An assistant was given the instruction")
        {
            let k = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            StubReply::Ok(format!(
                "[[ ## new_instruction ## ]]\n{}\n\n[[ ## completed ## ]]",
                reflect(k)
            ))
        } else {
            StubReply::Ok(task_answer(req))
        }
    })
}

fn history(a: &Value) -> Vec<Value> {
    a["lineage"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn issue12_gepa_keeps_a_late_improving_child_whatever_the_budget() {
    // Two harmful reflections, then the fix: at many budgets the fix comes
    // when little budget is left. It must be scored and returned, never
    // proposed and thrown away (the old rule dropped children that did not
    // fit `calls + valset <= budget` and kept looping).
    let mut proposed = 0;
    for budget in [30, 36, 42, 48, 54, 60, 66] {
        let stub = reflecting(|k| if k < 2 { BAD } else { GOOD });
        let (code, _out, err, artifact) = compile(
            &stub,
            "gepa",
            &[&format!("max_metric_calls={budget}"), "use_merge=false"],
        );
        assert_eq!(code, 0, "budget {budget}: {err}");
        let a = artifact.expect("artifact written");
        let good: Vec<Value> = history(&a)
            .into_iter()
            .filter(|h| h["instructions"]["flip"].as_str() == Some(GOOD))
            .collect();
        if good.is_empty() {
            continue; // the budget ended before the fix was proposed
        }
        proposed += 1;
        assert!(
            good.iter()
                .all(|h| h["accepted"] == true && h["full_score"] == 1.0),
            "budget {budget}: the fix was not kept: {good:?}"
        );
        assert_eq!(a["lineage"]["dev_score"], 1.0, "budget {budget}");
        assert_eq!(instruction(&a), GOOD, "budget {budget}");
    }
    assert!(
        proposed >= 4,
        "the fix was proposed at only {proposed} budgets"
    );
}

#[test]
fn issue12_gepa_is_never_worse_than_the_start_over_seeds() {
    // Reflections cycle harmful, neutral and good instructions.
    for seed in 1..=6u64 {
        let stub = reflecting(|k| match k % 3 {
            0 => BAD,
            1 => "Answer with the word exactly as it was given.",
            _ => GOOD,
        });
        let (code, _out, err, artifact) =
            compile_seeded(&stub, "gepa", &["max_metric_calls=70"], &[], None, seed);
        assert_eq!(code, 0, "seed {seed}: {err}");
        let a = artifact.expect("artifact written");
        assert_not_below_baseline(&a);
        // The winner is the best candidate scored on the whole valset.
        let best = history(&a)
            .iter()
            .filter_map(|h| h["full_score"].as_f64())
            .fold(f64::MIN, f64::max);
        assert_eq!(
            a["lineage"]["dev_score"].as_f64(),
            Some(best),
            "seed {seed}"
        );
    }
}

#[test]
fn issue12_gepa_spends_nothing_once_the_result_cannot_change() {
    // The first reflection fixes the task: a candidate perfect on every
    // validation example cannot be beaten, so a larger budget must not buy
    // a single extra call (the old loop kept sampling perfect minibatches
    // until the budget was gone).
    let runs: Vec<(u64, usize)> = [200, 2000]
        .iter()
        .map(|budget| {
            let stub = reflecting(|_| GOOD);
            let (code, _out, err, artifact) =
                compile(&stub, "gepa", &[&format!("max_metric_calls={budget}")]);
            assert_eq!(code, 0, "{err}");
            let a = artifact.expect("artifact written");
            assert_eq!(a["lineage"]["dev_score"], 1.0);
            (
                a["lineage"]["lm_calls"].as_u64().unwrap_or(0),
                history(&a).len(),
            )
        })
        .collect();
    assert_eq!(
        runs[0], runs[1],
        "(LM requests, history) at budgets 200 and 2000"
    );
    assert!(runs[0].0 < 60, "{} requests for a one-step fix", runs[0].0);
}

#[test]
fn issue12_copro_first_round_yields_distinct_grounded_candidates() {
    // A deterministic proposer: the same request always gets the same text,
    // different requests different texts. Requests that differed only in
    // rollout id (never sent) used to give one candidate for the round.
    let stub = StubServer::start(|req: &StubRequest| {
        if req.system().contains("You improve instructions") {
            let body = req.body.to_string();
            let h = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
            });
            StubReply::Ok(proposal(
                "proposed_instruction",
                &format!("Answer with the word, variant {}.", h % 100_000),
            ))
        } else {
            StubReply::Ok(task_answer(req))
        }
    });
    let (code, _out, err, artifact) = compile(&stub, "copro", &["breadth=5", "depth=1"]);
    assert_eq!(code, 0, "stderr: {err}");
    let a = artifact.expect("artifact written");
    let proposals: Vec<String> = history(&a)
        .iter()
        .filter(|h| h["origin"] == "proposal")
        .filter_map(|h| h["instructions"]["flip"].as_str().map(str::to_string))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = proposals.iter().collect();
    assert_eq!(
        proposals.len(),
        4,
        "breadth 5 = the original + 4 proposals: {proposals:?}"
    );
    assert_eq!(distinct.len(), 4, "{proposals:?}");
    // Every proposal request showed the program, the module's output space
    // and training examples with their expected answers.
    let asks: Vec<String> = stub
        .received()
        .iter()
        .map(Value::to_string)
        .filter(|b| b.contains("You improve instructions"))
        .collect();
    assert_eq!(asks.len(), 4);
    for b in &asks {
        assert!(
            b.contains("Program `reverse`: Write the given word backwards."),
            "{b}"
        );
        assert!(b.contains("flip: word: str -> answer: str"), "{b}");
        assert!(b.contains("hello") && b.contains("olleh"), "{b}");
    }
}
