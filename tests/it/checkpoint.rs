//! Search checkpoints (issue #14): a MIPROv2 or GEPA compile killed with
//! SIGKILL mid-search resumes with `--resume` from the checkpoint written
//! next to the artifact, says where it resumed (trial or iteration), asks
//! the LM nothing twice (the stub's answered requests over both runs equal
//! one uninterrupted run's) and ends with the uninterrupted run's result.
//! A checkpoint taken for another compile, a corrupt one and a missing one
//! are refused with exit 2; without `--resume` an existing one is noted.
//!
//! The kill is placed without sleeps: the stub reads the checkpoint file
//! on every request and, a few requests after it shows two finished steps,
//! stops answering; the test waits until every answered reply is committed
//! to the response cache, then kills.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, run};

/// A number from the request's text: which scripted variant answers it.
fn hash(s: &str) -> u64 {
    s.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    })
}

/// The task "model" reverses words starting before `m` when the
/// instruction says REVERSE, and echoes otherwise: no instruction is
/// perfect, so searches run their whole course. Proposals and reflections
/// are one of a few variants, picked by the request's text.
fn answer(req: &StubRequest) -> String {
    let sys = req.system();
    let user = req.last_user();
    let pick = |field: &str| {
        let h = hash(user) % 4;
        let text = if h == 0 {
            "Copy the word exactly.".to_string()
        } else {
            format!("Variant {h}: write the word in REVERSE order.")
        };
        format!("[[ ## {field} ## ]]\n{text}\n\n[[ ## proposed_prefix_for_output_field ## ]]\nAnswer:\n\n[[ ## completed ## ]]")
    };
    if sys.contains("An assistant was given the instruction") {
        return pick("new_instruction");
    }
    if sys.contains("Write the instruction for one step")
        || sys.contains("You improve instructions")
    {
        return pick("proposed_instruction");
    }
    if sys.contains("Here are examples from a dataset") {
        return "[[ ## summary ## ]]\nWords.\n\n[[ ## completed ## ]]".into();
    }
    let word = user
        .split("[[ ## word ## ]]\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or("")
        .trim()
        .to_string();
    let out = if sys.contains("REVERSE") && word.as_str() < "m" {
        word.chars().rev().collect()
    } else {
        word
    };
    format!("[[ ## answer ## ]]\n{out}\n\n[[ ## completed ## ]]")
}

/// A stub that counts the requests it answered; with `stop_after`, it
/// stops answering (hangs) `after` requests once `checkpoint` shows that
/// many finished steps.
struct Scripted {
    server: StubServer,
    answered: Arc<AtomicUsize>,
    hung: Arc<AtomicUsize>,
}

fn scripted(stop: Option<(PathBuf, usize, usize)>) -> Scripted {
    let answered = Arc::new(AtomicUsize::new(0));
    let hung = Arc::new(AtomicUsize::new(0));
    let since = Arc::new(AtomicUsize::new(0));
    let (a, h) = (answered.clone(), hung.clone());
    let server = StubServer::start(move |req: &StubRequest| {
        if let Some((path, steps, after)) = &stop {
            let done = std::fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["current"]["search"]["done"].as_u64())
                .unwrap_or(0);
            if h.load(Ordering::SeqCst) > 0
                || (done >= *steps as u64 && since.fetch_add(1, Ordering::SeqCst) >= *after)
            {
                h.fetch_add(1, Ordering::SeqCst);
                return StubReply::Delay(
                    Duration::from_secs(600),
                    Box::new(StubReply::Ok(String::new())),
                );
            }
        }
        a.fetch_add(1, Ordering::SeqCst);
        StubReply::Ok(answer(req))
    });
    Scripted {
        server,
        answered,
        hung,
    }
}

fn compile(dir: &Path, cache: &str, stub: &StubServer, optimizer: &str, opts: &[&str]) -> Command {
    compile_seeded(dir, cache, stub, optimizer, opts, 5)
}

fn compile_seeded(
    dir: &Path,
    cache: &str,
    stub: &StubServer,
    optimizer: &str,
    opts: &[&str],
    seed: u64,
) -> Command {
    let mut c = lmc();
    c.env("LMC_CACHE_DIR", dir.join(cache))
        .args(["compile", "tests/fixtures/instruction/reverse.yaml"])
        .args(["--trainset", "tests/fixtures/instruction/words.csv"])
        .args(["--valset", "tests/fixtures/instruction/words.csv"])
        .args(["--optimizer", optimizer, "--concurrency", "1"])
        .args(["--seed", &seed.to_string()])
        .args(["--provider", "openai", "--model", "scripted", "--base-url"])
        .arg(stub.url())
        .args(["--quiet", "--json", "-o"])
        .arg(dir.join("out.json"))
        .env_remove("LMC_INTERRUPT_GRACE");
    for o in opts {
        c.args(["--opt", o]);
    }
    c
}

fn committed(cache: &Path) -> usize {
    rusqlite::Connection::open(cache.join("cache.sqlite"))
        .and_then(|db| db.query_row("SELECT count(*) FROM responses", [], |r| r.get::<_, i64>(0)))
        .map(|n| n as usize)
        .unwrap_or(0)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Kill `optimizer` mid-search with SIGKILL, resume it, and compare with
/// an uninterrupted run. The kill comes `after` requests past the second
/// checkpoint. `extra` goes to every run (`--no-cache`). Returns the
/// resumed run's stderr.
fn killed_and_resumed(
    optimizer: &str,
    opts: &[&str],
    unit: &str,
    after: usize,
    extra: &[&str],
) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let no_cache = extra.contains(&"--no-cache");
    let compile = |cache: &str, stub: &StubServer, optimizer: &str, opts: &[&str]| {
        let mut c = compile(d, cache, stub, optimizer, opts);
        c.args(extra);
        c
    };

    // One uninterrupted compile: the reference result and request count.
    let whole = scripted(None);
    let (code, out, err) = run(&mut compile("ref-cache", &whole.server, optimizer, opts));
    assert_eq!(code, 0, "{err}");
    let reference = json(&out);
    let reference_art = json(&std::fs::read_to_string(d.join("out.json")).unwrap());
    let total = whole.answered.load(Ordering::SeqCst);
    assert!(
        !d.join("out.checkpoint.json").exists(),
        "a finished compile deletes its checkpoint"
    );
    std::fs::remove_file(d.join("out.json")).unwrap();

    // The same compile, killed (SIGKILL) a few requests after its second
    // checkpoint, once every reply it received is in the cache.
    let ck = d.join("out.checkpoint.json");
    let first = scripted(Some((ck.clone(), 2, after)));
    let mut child = compile("cache", &first.server, optimizer, opts)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lmc");
    let deadline = Instant::now() + Duration::from_secs(120);
    while first.hung.load(Ordering::SeqCst) == 0
        || (!no_cache && committed(&d.join("cache")) < first.answered.load(Ordering::SeqCst))
    {
        assert!(
            Instant::now() < deadline,
            "the compile never reached its second checkpoint"
        );
        if let Ok(Some(s)) = child.try_wait() {
            panic!("lmc ended before the kill: {s}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL lmc");
    let _ = child.wait();
    let before = first.answered.load(Ordering::SeqCst);
    assert!(before < total, "killed too late: {before} of {total}");
    assert!(ck.exists(), "the kill left the checkpoint");
    assert!(
        !d.join("out.json").exists(),
        "a killed compile writes no artifact"
    );

    // A checkpoint of another compile is refused, naming what differs.
    let other = scripted(None);
    let (code, _, err) = run(
        compile_seeded(d, "cache", &other.server, optimizer, opts, 6)
            .args(extra)
            .arg("--resume"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("taken for another compile"), "{err}");
    assert!(err.contains("seed: 5 there, 6 here"), "{err}");
    assert_eq!(other.server.requests(), 0, "a refused resume calls no LM");

    // --resume continues from the checkpoint.
    let second = scripted(None);
    let (code, out, err) = run(compile("cache", &second.server, optimizer, opts).arg("--resume"));
    assert_eq!(code, 0, "{err}");
    let resumed = json(&out);
    let after = second.answered.load(Ordering::SeqCst);
    let message = resumed["resumed"].as_str().unwrap_or_default().to_string();
    assert!(
        message.starts_with(&format!("resumed {optimizer} at {unit} ")),
        "{message}"
    );
    assert!(err.contains(&message), "said on stderr too: {err}");
    assert_eq!(
        before + after,
        total,
        "killed ({before}) + resumed ({after}) answered requests must be one compile's ({total})"
    );
    // The checkpoint, not the cache, carried the search: a replay from the
    // cache alone would hit it for every request answered before the kill
    // on top of the hits a whole run has; the resumed run replays only
    // what came after the last checkpoint.
    let hits = resumed["cache_hits"].as_u64().unwrap() as usize;
    let whole_hits = reference["cache_hits"].as_u64().unwrap() as usize;
    assert!(
        hits < whole_hits + before,
        "{hits} cache hits: the search was replayed ({whole_hits} + {before})"
    );
    println!(
        "{optimizer}{}: uninterrupted {total} requests; killed after {before}, resumed {after} \
         ({hits} cache hits, uninterrupted {whole_hits}); {message}",
        if no_cache { " --no-cache" } else { "" }
    );
    let art = json(&std::fs::read_to_string(d.join("out.json")).unwrap());
    assert_eq!(art["predictors"], reference_art["predictors"]);
    assert_eq!(
        art["lineage"]["history"],
        reference_art["lineage"]["history"]
    );
    assert_eq!(resumed["dev_score"], reference["dev_score"]);
    assert_eq!(resumed["lm_requests"], reference["lm_requests"]);
    assert!(!ck.exists(), "a finished compile deletes its checkpoint");
    err
}

#[test]
fn a_killed_mipro_compile_resumes_from_its_checkpoint_without_repeating_a_call() {
    let err = killed_and_resumed(
        "mipro",
        &[
            "auto=none",
            "num_candidates=4",
            "num_trials=10",
            "max_bootstrapped_demos=1",
            "max_labeled_demos=1",
        ],
        "trial",
        3,
        &[],
    );
    assert!(err.contains("of 10 ("), "the trial count: {err}");
}

/// Without the response cache the checkpoint alone carries the search:
/// killed right at a checkpoint, the resumed run asks only for what the
/// uninterrupted one asked after it.
#[test]
fn a_killed_mipro_compile_resumes_from_its_checkpoint_without_the_cache() {
    let err = killed_and_resumed(
        "mipro",
        &[
            "auto=none",
            "num_candidates=4",
            "num_trials=10",
            "max_bootstrapped_demos=1",
            "max_labeled_demos=1",
        ],
        "trial",
        0,
        &["--no-cache"],
    );
    assert!(err.contains("of 10 ("), "the trial count: {err}");
}

#[test]
fn a_killed_gepa_compile_resumes_from_its_checkpoint_without_repeating_a_call() {
    killed_and_resumed("gepa", &["max_metric_calls=150"], "iteration", 3, &[]);
}

#[test]
fn resume_refuses_a_missing_or_corrupt_checkpoint_and_a_rerun_notes_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let stub = scripted(None);
    let opts = ["auto=none", "num_candidates=2", "num_trials=2"];
    let (code, _, err) = run(compile(d, "c", &stub.server, "mipro", &opts).arg("--resume"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no checkpoint to resume from"), "{err}");
    std::fs::write(
        d.join("out.checkpoint.json"),
        "{\"lmc_checkpoint\": 1,\n \"bogus\": 2}",
    )
    .unwrap();
    let (code, _, err) = run(compile(d, "c", &stub.server, "mipro", &opts).arg("--resume"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("out.checkpoint.json:2:"), "located: {err}");
    assert!(err.contains("not an lmc checkpoint"), "{err}");
    assert_eq!(stub.server.requests(), 0, "no LM call on a refused resume");
    // Without --resume the run starts over, says so, and cleans up.
    let (code, _, err) = run(&mut compile(d, "c", &stub.server, "mipro", &opts));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("pass --resume to continue from it"), "{err}");
    assert!(!d.join("out.checkpoint.json").exists());
}

/// SIGINT keeps the best candidate so far (exit 130) and its help points at
/// the checkpoint; `--resume` then ends where an uninterrupted run does.
#[test]
fn an_interrupted_mipro_compile_points_at_resume_and_resumes() {
    let opts = [
        "auto=none",
        "num_candidates=4",
        "num_trials=10",
        "max_bootstrapped_demos=1",
        "max_labeled_demos=1",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let whole = scripted(None);
    let (code, _, err) = run(&mut compile(d, "ref", &whole.server, "mipro", &opts));
    assert_eq!(code, 0, "{err}");
    let reference = json(&std::fs::read_to_string(d.join("out.json")).unwrap());

    let ck = d.join("out.checkpoint.json");
    let first = scripted(Some((ck.clone(), 2, 0)));
    let mut child = compile(d, "cache", &first.server, "mipro", &opts)
        .env("LMC_INTERRUPT_GRACE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lmc");
    let deadline = Instant::now() + Duration::from_secs(120);
    while first.hung.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "never reached the second checkpoint"
        );
        if let Ok(Some(s)) = child.try_wait() {
            panic!("lmc ended before the signal: {s}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let out = child.wait_with_output().expect("lmc ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("the search state is checkpointed in") && err.contains("--resume"),
        "{err}"
    );
    let kept = json(&std::fs::read_to_string(d.join("out.json")).unwrap());
    assert_eq!(kept["lineage"]["interrupted"], "SIGINT");

    let second = scripted(None);
    let (code, _, err) = run(compile(d, "cache", &second.server, "mipro", &opts).arg("--resume"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("resumed mipro at trial 3 of 10"), "{err}");
    let art = json(&std::fs::read_to_string(d.join("out.json")).unwrap());
    assert!(art["lineage"].get("interrupted").is_none(), "{art}");
    assert_eq!(art["predictors"], reference["predictors"]);
    assert_eq!(art["lineage"]["history"], reference["lineage"]["history"]);
}
