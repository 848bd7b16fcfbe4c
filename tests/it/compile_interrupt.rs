//! Graceful interruption of `lmc compile` through the real binary (issues
//! #11, #13): the first SIGINT/SIGTERM stops issuing candidates and LM
//! calls, lets those in flight finish, writes the best candidate fully
//! scored so far (marked `lineage.interrupted`) or nothing when none was,
//! says what it kept and exits 130; a re-run replays every recorded reply
//! from the cache and pays only for the rest; a second signal aborts at
//! once.
//!
//! As in `interrupt`, signals are sent on the stub's request count (or on
//! what lmc printed), never after a sleep.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::interrupt::{read_json, sigint_twice, stub, Running, DEADLINE};
use crate::support::lmc;
use crate::support::senti::{csv, program_with_train, SentiProject};
use crate::support::stub::StubServer;

/// Valset size: the zero-shot candidate is fully scored after this many requests.
const VAL: usize = 8;

/// The sentiment project with a 12-row trainset and a `VAL`-row valset.
fn project() -> SentiProject {
    let p = SentiProject::with_program(0, &program_with_train());
    std::fs::write(p.path("train.csv"), csv(1..=12)).unwrap();
    std::fs::write(p.path("dev.csv"), csv(101..=100 + VAL)).unwrap();
    p
}

/// A small random search against `stub`, writing `out` with the cache
/// in `cache`.
fn compile(p: &SentiProject, stub: &StubServer, cache: &str, out: &str) -> Command {
    let mut c = p.command("compile", &stub.url(), &p.path(cache));
    c.args(["--concurrency", "2", "--quiet"])
        .args(["--opt", "num_candidate_programs=2"])
        .args(["--opt", "max_bootstrapped_demos=2"])
        .arg("-o")
        .arg(p.path(out))
        .env_remove("LMC_INTERRUPT_GRACE");
    c
}

#[test]
fn sigint_mid_compile_keeps_the_best_scored_candidate_and_a_rerun_repeats_no_call() {
    let p = project();
    // What one uninterrupted compile asks, on its own cold cache.
    let (cold, _) = stub(Duration::ZERO);
    let out = compile(&p, &cold, "cache-ref", "ref.json")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = read_json(&p.path("ref.json"));
    let whole = cold.requests();
    assert!(whole > VAL + 4, "the search makes {whole} requests");

    // Interrupted once the zero-shot candidate is scored and the next one
    // is under way.
    let (slow, _) = stub(Duration::from_millis(150));
    let mut cmd = compile(&p, &slow, "cache", "out.json");
    cmd.stdout(Stdio::null());
    let mut job = Running::spawn(&mut cmd);
    job.wait_for("the second candidate's requests", |_| {
        slow.requests() >= VAL + 2
    });
    job.signal("INT");
    let (code, secs, err) = job.exit_code(DEADLINE);
    assert_eq!(code, 130, "{err}");
    assert!(secs < 60.0, "took {secs:.1} s to stop");
    assert!(err.contains("SIGINT: stopping"), "{err}");
    assert!(
        err.contains("interrupted (SIGINT): kept the best candidate fully scored so far"),
        "{err}"
    );
    assert!(err.contains("re-run the same command to resume"), "{err}");
    let first = slow.requests();
    assert!(first < whole, "the search went on: {first} of {whole}");

    // The artifact is valid (eval loads it) and marked.
    let art = read_json(&p.path("out.json"));
    assert_eq!(art["lineage"]["interrupted"], "SIGINT", "{art}");
    assert_eq!(art["lineage"]["dev_score"].as_f64(), Some(1.0));
    let check = lmc()
        .arg("inspect")
        .arg(p.path("out.json"))
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // The re-run replays every reply received and asks only for the rest.
    let (fresh, _) = stub(Duration::ZERO);
    let out = compile(&p, &fresh, "cache", "out.json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        first + fresh.requests(),
        whole,
        "interrupted ({first}) + resumed ({}) requests must be one compile's ({whole})",
        fresh.requests()
    );
    let resumed = read_json(&p.path("out.json"));
    assert!(resumed["lineage"].get("interrupted").is_none(), "{resumed}");
    assert_eq!(resumed["predictors"], reference["predictors"]);
    assert_eq!(
        resumed["lineage"]["history"],
        reference["lineage"]["history"]
    );
}

#[test]
fn sigterm_before_any_candidate_is_scored_writes_nothing_and_says_so() {
    let p = project();
    let (slow, _) = stub(Duration::from_millis(300));
    let mut cmd = compile(&p, &slow, "cache", "out.json");
    cmd.arg("--json")
        .stdout(std::fs::File::create(p.path("summary.json")).unwrap());
    let mut job = Running::spawn(&mut cmd);
    job.wait_for("2 requests", |_| slow.requests() >= 2);
    job.signal("TERM");
    let (code, _, err) = job.exit_code(DEADLINE);
    assert_eq!(code, 130, "{err}");
    assert!(err.contains("SIGTERM: stopping"), "{err}");
    assert!(
        err.contains("interrupted (SIGTERM) before any candidate was scored on the whole valset: no artifact written"),
        "{err}"
    );
    assert!(!p.path("out.json").exists(), "a partial score is no result");
    assert_eq!(slow.requests(), 2, "no call started after the signal");
    let summary = read_json(&p.path("summary.json"));
    assert_eq!(summary["artifact"], serde_json::Value::Null, "{summary}");
    assert_eq!(summary["interrupted"], "SIGTERM");
    assert_eq!(summary["candidates"][0]["origin"], "zero_shot");
    assert!(summary["candidates"][0].get("score").is_none(), "{summary}");
}

#[test]
fn a_second_sigint_aborts_a_compile_at_once() {
    let p = project();
    let (stuck, _) = stub(Duration::from_secs(600));
    sigint_twice(&mut compile(&p, &stuck, "cache", "out.json"), &stuck);
    assert!(!p.path("out.json").exists(), "an abort writes nothing");
}

#[test]
fn the_grace_period_bounds_a_compile_stuck_on_its_calls() {
    let p = project();
    let (stuck, _) = stub(Duration::from_secs(600));
    let mut cmd = compile(&p, &stuck, "cache", "out.json");
    cmd.env("LMC_INTERRUPT_GRACE", "1");
    let mut job = Running::spawn(&mut cmd);
    job.wait_for("2 requests", |_| stuck.requests() >= 2);
    job.signal("INT");
    let (code, secs, err) = job.exit_code(DEADLINE);
    assert_eq!(code, 130, "{err}");
    assert!(secs < 60.0, "in-flight calls were waited for ({secs:.1} s)");
    assert!(err.contains("no artifact written"), "{err}");
    assert_eq!(stuck.requests(), 2, "no call started after the signal");
}

#[test]
fn an_instruction_search_stuck_on_a_proposal_still_keeps_the_scored_program() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use crate::support::stub::{StubReply, StubRequest};

    // The task "model" echoes the word; the proposer never answers in time.
    let proposals = Arc::new(AtomicUsize::new(0));
    let seen = proposals.clone();
    let stub = StubServer::start(move |req: &StubRequest| {
        if req.system().contains("You improve instructions") {
            seen.fetch_add(1, Ordering::SeqCst);
            return StubReply::Delay(
                Duration::from_secs(600),
                Box::new(StubReply::Ok(String::new())),
            );
        }
        let word = req
            .last_user()
            .split("[[ ## word ## ]]\n")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .unwrap_or("")
            .trim()
            .to_string();
        StubReply::Ok(format!(
            "[[ ## answer ## ]]\n{word}\n\n[[ ## completed ## ]]"
        ))
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.json");
    let mut cmd = lmc();
    cmd.args(["compile", "tests/fixtures/instruction/reverse.yaml"])
        .args(["--trainset", "tests/fixtures/instruction/words.csv"])
        .args([
            "--optimizer",
            "copro",
            "--opt",
            "breadth=3",
            "--opt",
            "depth=1",
        ])
        .args(["--provider", "openai", "--model", "scripted", "--base-url"])
        .arg(stub.url())
        .args(["--quiet", "-o"])
        .arg(&out)
        .env("LMC_INTERRUPT_GRACE", "1")
        .stdout(Stdio::null());
    let mut job = Running::spawn(&mut cmd);
    job.wait_for("a proposal request", |_| {
        proposals.load(Ordering::SeqCst) >= 1
    });
    let before = stub.requests();
    job.signal("INT");
    let (code, secs, err) = job.exit_code(DEADLINE);
    assert_eq!(code, 130, "{err}");
    // The grace (1 s) bounds the proposal in flight too.
    assert!(secs < 60.0, "waited {secs:.1} s for a stuck proposal");
    assert!(
        err.contains("kept the best candidate fully scored so far"),
        "{err}"
    );
    assert_eq!(stub.requests(), before, "no call after the signal");
    let art = read_json(&out);
    assert_eq!(art["lineage"]["interrupted"], "SIGINT", "{art}");
    // What was kept is the program as written, scored on the whole valset.
    let dev = art["lineage"]["dev_score"].as_f64().expect("dev score");
    assert!(
        (0.0..1.0).contains(&dev),
        "echo is right on palindromes only: {dev}"
    );
    let changed = art["predictors"]
        .as_object()
        .map(|m| m.values().any(|p| p.get("instructions").is_some()))
        .unwrap_or(false);
    assert!(!changed, "no proposal was scored: {art}");
}
