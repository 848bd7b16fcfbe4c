//! `lmc run` and `lmc trace show` through the real binary, against a
//! scripted stub LM.

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, run, run_with_stdin};

fn sentiment_stub() -> StubServer {
    StubServer::start(|req: &StubRequest| {
        let label = if req.last_user().contains("dull") {
            "negative"
        } else {
            "positive"
        };
        StubReply::Ok(format!(
            "[[ ## sentiment ## ]]\n{label}\n\n[[ ## completed ## ]]"
        ))
    })
}

fn base(stub: &StubServer, cache: &std::path::Path) -> std::process::Command {
    let mut c = lmc();
    c.env("LMC_CACHE_DIR", cache).args([
        "run",
        "programs/sentiment.yaml",
        "--provider",
        "openai",
        "--model",
        "stub",
        "--base-url",
        &stub.url(),
    ]);
    c
}

#[test]
fn run_prints_typed_outputs_and_writes_a_trace() {
    let stub = sentiment_stub();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.jsonl");
    let (code, out, err) = run(base(&stub, dir.path())
        .args(["--input", "sentence=a gorgeous, witty film", "--trace"])
        .arg(&trace));
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.trim(), "sentiment: positive");
    let (code, shown, err) = run(lmc().args(["trace", "show", "--messages"]).arg(&trace));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(shown.contains("classify (predict)"), "{shown}");
    assert!(shown.contains("out sentiment = positive"), "{shown}");
    assert!(
        shown.contains("[[ ## sentence ## ]]"),
        "messages shown: {shown}"
    );
    // A second identical run is served from the cache.
    let (code, _, _) =
        run(base(&stub, dir.path()).args(["--input", "sentence=a gorgeous, witty film"]));
    assert_eq!(code, 0);
    assert_eq!(stub.requests(), 1, "the repeated run must be a cache hit");
}

#[test]
fn run_reads_jsonl_inputs_from_stdin_in_order() {
    let stub = sentiment_stub();
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_with_stdin(
        base(&stub, dir.path()).arg("--json"),
        "{\"sentence\": \"dull and lifeless\"}\n{\"sentence\": \"a charming journey\"}\n",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["outputs"]["sentiment"], "negative");
    assert_eq!(lines[1]["outputs"]["sentiment"], "positive");
}

#[test]
fn run_rejects_unknown_inputs_with_a_hint() {
    let stub = sentiment_stub();
    let dir = tempfile::tempdir().unwrap();
    let (code, _out, err) = run(base(&stub, dir.path()).args(["--input", "sentense=hello"]));
    assert_eq!(code, 2, "stderr: {err}");
    assert!(
        err.contains("no input `sentense`") && err.contains("sentence"),
        "{err}"
    );
    assert_eq!(stub.requests(), 0);
}

#[test]
fn run_reports_an_unparseable_reply_with_the_raw_text() {
    let stub = StubServer::start(|_req: &StubRequest| StubReply::Ok("I think it is great!".into()));
    let dir = tempfile::tempdir().unwrap();
    let (code, _out, err) = run(base(&stub, dir.path()).args(["--input", "sentence=fine"]));
    assert_ne!(code, 0);
    assert!(
        err.contains("sentiment") && err.contains("I think it is great!"),
        "{err}"
    );
}
