//! `lmc eval` end to end: the real binary against the local stub LM server
//! with scripted answers. Covers the CI gates (threshold, baseline with an
//! insignificant and a significant drop), report validity (JUnit parsed
//! back, JSONL, Markdown, HTML), input order under concurrency, resuming
//! an interrupted run from the cache, `--max-errors` and exit codes.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::senti::{label, other, reply, row_of, SentiProject};
use crate::support::stub::{StubReply, StubServer};
use crate::support::{lmc, run};

/// A stub that answers right except on the `wrong` rows, and with an
/// unparseable reply on the `garbage` rows.
fn scripted(wrong: HashSet<usize>, garbage: HashSet<usize>) -> StubServer {
    StubServer::start(move |req| {
        let row = row_of(req);
        if garbage.contains(&row) {
            StubReply::Ok("I'd say <it's> \"mixed\" & \u{1}unclear".into())
        } else if wrong.contains(&row) {
            StubReply::Ok(reply(other(label(row))))
        } else {
            StubReply::Ok(reply(label(row)))
        }
    })
}

/// `lmc eval prog.yaml` against `stub` with its own cache directory
/// `cache` (the cache key ignores the base URL, so runs meant to see
/// different stub answers use different caches).
fn eval(p: &SentiProject, stub: &StubServer, cache: &str, extra: &[&str]) -> Command {
    let mut c = p.command("eval", &stub.url(), &p.path(cache));
    c.args(["--quiet"]).args(extra);
    c
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"))
}

#[test]
fn min_score_gate_passes_and_fails() {
    let p = SentiProject::new(20);
    let stub = scripted((1..=5).collect(), HashSet::new()); // 15/20 right
    let (code, out, err) = run(eval(&p, &stub, "c", &["--min-score", "0.7"]).arg("--json"));
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["summary"]["mean"].as_f64(), Some(0.75));
    assert_eq!(r["summary"]["n"].as_u64(), Some(20));
    assert_eq!(r["gates"]["checks"][0]["passed"], Value::Bool(true));
    let (code, out, err) = run(&mut eval(&p, &stub, "c", &["--min-score", "0.8"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("min-score") && err.contains("0.75"), "{err}");
    assert!(out.contains("score") && out.contains("0.7500"), "{out}");
    // The second run was answered from the cache.
    assert_eq!(stub.requests(), 20);
}

#[test]
fn baseline_gate_passes_noise_and_fails_significant_regressions() {
    let p = SentiProject::new(60);
    // Baseline: wrong on rows 1..=5.
    let base_stub = scripted((1..=5).collect(), HashSet::new());
    let (code, out, err) = run(&mut eval(&p, &base_stub, "base", &["--json"]));
    assert_eq!(code, 0, "{err}");
    std::fs::write(p.path("baseline.json"), &out).unwrap();

    // Three more rows wrong: a 0.05 drop, above --max-drop 0.02, but 3
    // regressions against 0 improvements is p = 1/8 under McNemar: passes.
    let noisy = scripted((1..=8).collect(), HashSet::new());
    let baseline = p.path("baseline.json");
    let args = [
        "--baseline",
        baseline.to_str().unwrap(),
        "--max-drop",
        "0.02",
    ];
    let (code, out, err) = run(&mut eval(&p, &noisy, "noisy", &args));
    assert_eq!(code, 0, "insignificant drop must pass:\n{out}\n{err}");
    assert!(out.contains("McNemar"), "{out}");
    assert!(out.contains("p = 0.1250"), "{out}");
    assert!(out.contains("3 regressed, 0 improved"), "{out}");

    // Twenty more rows wrong: a significant regression.
    let bad = scripted((1..=25).collect(), HashSet::new());
    let (code, out, err) = run(&mut eval(&p, &bad, "bad", &args));
    assert_eq!(code, 1, "significant drop must fail:\n{out}\n{err}");
    assert!(err.contains("gate baseline failed"), "{err}");
    assert!(
        err.contains("McNemar") && err.contains("p = 0.0000"),
        "{err}"
    );

    // A drop within --max-drop passes even when significant.
    let (code, _, err) = run(&mut eval(
        &p,
        &bad,
        "bad",
        &[
            "--baseline",
            baseline.to_str().unwrap(),
            "--max-drop",
            "0.5",
        ],
    ));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn baseline_from_another_dataset_is_an_input_error() {
    let p = SentiProject::new(10);
    let stub = scripted(HashSet::new(), HashSet::new());
    let (code, out, err) = run(&mut eval(&p, &stub, "c", &["--json"]));
    assert_eq!(code, 0, "{err}");
    std::fs::write(p.path("baseline.json"), out).unwrap();
    // Same program, one more row: another dataset hash.
    let q = SentiProject::new(11);
    let baseline = p.path("baseline.json");
    let (code, _, err) = run(&mut eval(
        &q,
        &stub,
        "c",
        &[
            "--baseline",
            baseline.to_str().unwrap(),
            "--max-drop",
            "0.1",
        ],
    ));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("different dataset"), "{err}");
}

/// Parse the JUnit file strictly and count elements.
fn junit_counts(xml: &str) -> (usize, usize, usize, String) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let (mut cases, mut failures, mut errors) = (0, 0, 0);
    let mut texts = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.name().as_ref() {
                "testcase" => cases += 1,
                "failure" => failures += 1,
                "error" => errors += 1,
                _ => {}
            },
            Ok(Event::Text(t)) => {
                texts.push_str(&t.xml10_content());
            }
            Ok(Event::GeneralRef(r)) => {
                let name = r.into_inner();
                texts.push_str(match name.as_ref() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "?",
                });
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "invalid JUnit XML at {}: {e}\n{xml}",
                reader.buffer_position()
            ),
        }
    }
    (cases, failures, errors, texts)
}

#[test]
fn reports_junit_jsonl_markdown_html_are_valid() {
    let p = SentiProject::new(12);
    let stub = scripted([2, 3].into(), [5].into());
    let junit = p.path("out/junit.xml");
    let results = p.path("out/results.jsonl");
    let md = p.path("out/summary.md");
    let html = p.path("out/report.html");
    let (code, out, err) = run(eval(&p, &stub, "c", &["--concurrency", "4"])
        .arg("--junit")
        .arg(&junit)
        .arg("--results")
        .arg(&results)
        .arg("--markdown")
        .arg(&md)
        .arg("--html")
        .arg(&html));
    assert_eq!(code, 0, "{out}{err}");

    let xml = std::fs::read_to_string(&junit).unwrap();
    let (cases, failures, errors, texts) = junit_counts(&xml);
    assert_eq!((cases, failures, errors), (12, 2, 1), "{xml}");
    assert!(
        xml.contains("tests=\"12\" failures=\"2\" errors=\"1\""),
        "{xml}"
    );
    // The raw reply survives escaping (the control character is replaced).
    assert!(
        texts.contains("I'd say <it's> \"mixed\" & \u{FFFD}unclear"),
        "{texts}"
    );

    let lines: Vec<Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSONL line"))
        .collect();
    assert_eq!(lines.len(), 12);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["index"].as_u64(), Some(i as u64));
        assert_eq!(l["row"].as_u64(), Some(i as u64 + 1));
        assert!(l["latency_s"].is_number() && l["usage"]["prompt_tokens"].as_u64() > Some(0));
        assert!(l.get("trace").is_none());
    }
    let bad = &lines[4];
    assert_eq!(bad["parse_failure"], Value::Bool(true));
    assert_eq!(bad["score"].as_f64(), Some(0.0));
    assert!(bad["raw_reply"].as_str().unwrap().contains("mixed"));
    // Row 2 is positive; the stub answers it wrong.
    assert_eq!(lines[1]["outputs"]["sentiment"], "negative");
    assert_eq!(lines[1]["expected"]["sentiment"], "positive");
    assert_eq!(lines[0]["inputs"]["sentence"], "review number 1");

    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.contains("| **Score** | **0.7500**"), "{md}");
    assert!(md.contains("parse failures 1"), "{md}");

    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"), "histogram");
    assert!(html.contains("Confusion matrix"), "enum output breakdown");
    assert!(html.contains("&lt;it&apos;s&gt;"), "raw reply escaped");
    assert!(!html.contains("<it's>"), "raw reply not escaped");
    assert!(
        html.contains("[[ ## sentence ## ]]"),
        "prompt from the trace"
    );
    assert!(!html.contains("src="), "self-contained, no external assets");
}

#[test]
fn results_keep_input_order_under_concurrency() {
    let p = SentiProject::new(64);
    // Random delays make replies arrive out of order.
    let stub = StubServer::start(|req| {
        let row = row_of(req);
        let ms = rand::random::<u64>() % 60;
        StubReply::Delay(
            Duration::from_millis(ms),
            Box::new(StubReply::Ok(reply(if row.is_multiple_of(3) {
                other(label(row))
            } else {
                label(row)
            }))),
        )
    });
    let started = Instant::now();
    let (code, out, err) = run(&mut eval(
        &p,
        &stub,
        "c",
        &["--concurrency", "16", "--json"],
    ));
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 64);
    for (i, x) in results.iter().enumerate() {
        let row = i + 1;
        assert_eq!(x["index"].as_u64(), Some(i as u64));
        assert_eq!(x["row"].as_u64(), Some(row as u64));
        assert_eq!(x["inputs"]["sentence"], format!("review number {row}"));
        let want = if row.is_multiple_of(3) { 0.0 } else { 1.0 };
        assert_eq!(x["score"].as_f64(), Some(want), "row {row}");
    }
    assert_eq!(r["summary"]["lm_calls"].as_u64(), Some(64));
    // 64 calls of ~30 ms at 16 in flight take well under the serial ~2 s.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn budget_stopped_eval_resumes_without_repeated_calls() {
    let p = SentiProject::new(20);
    let stub = scripted(HashSet::new(), HashSet::new());
    let (code, _, err) = run(&mut eval(
        &p,
        &stub,
        "c",
        &["--concurrency", "1", "--max-lm-calls", "7"],
    ));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("re-run to resume"), "{err}");
    assert_eq!(stub.requests(), 7);
    let (code, out, err) = run(&mut eval(&p, &stub, "c", &["--json"]));
    assert_eq!(code, 0, "{err}");
    // Only the 13 missing examples reached the server.
    assert_eq!(stub.requests(), 20);
    let r = json(&out);
    assert_eq!(r["summary"]["cache_hits"].as_u64(), Some(7));
    assert_eq!(r["summary"]["lm_calls"].as_u64(), Some(13));
    assert_eq!(r["summary"]["mean"].as_f64(), Some(1.0));
}

#[test]
fn killed_eval_resumes_from_the_cache() {
    let p = SentiProject::new(30);
    let stub = StubServer::builder()
        .latency(Duration::from_millis(60))
        .start(|req| StubReply::Ok(reply(label(row_of(req)))));
    let mut child = eval(&p, &stub, "c", &["--concurrency", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn lmc");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stub.requests() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("kill lmc");
    let _ = child.wait();
    let before = stub.requests();
    assert!(before < 30, "killed too late: {before}");
    // What the kill left committed: the group-commit writer loses only the
    // requests in flight and the replies of its last, unflushed group (the
    // bound docs/lm.md states; lmspeed::kill_9_… measures it at scale).
    let committed = {
        let db = rusqlite::Connection::open(p.path("c").join("cache.sqlite")).expect("open cache");
        db.query_row("SELECT count(*) FROM responses", [], |r| r.get::<_, i64>(0))
            .expect("count") as usize
    };
    assert!(
        committed > 0 && committed <= before,
        "{committed} of {before}"
    );
    let (code, out, err) = run(&mut eval(&p, &stub, "c", &["--json"]));
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    let cache_hits = r["summary"]["cache_hits"].as_u64().unwrap() as usize;
    // Every reply that was committed before the kill is reused, and only
    // the rest is asked again.
    assert_eq!(
        cache_hits, committed,
        "{cache_hits} hits, {committed} committed"
    );
    assert_eq!(stub.requests(), before + 30 - cache_hits);
    assert_eq!(r["summary"]["mean"].as_f64(), Some(1.0));
}

#[test]
fn max_errors_aborts_cleanly_with_partial_results() {
    let p = SentiProject::new(20);
    let stub = scripted(HashSet::new(), (1..=20).collect());
    let results = p.path("r.jsonl");
    let (code, _, err) = run(
        eval(&p, &stub, "c", &["--concurrency", "1", "--max-errors", "3"])
            .arg("--results")
            .arg(&results),
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--max-errors 3"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(stub.requests(), 4);
    let n = std::fs::read_to_string(&results).unwrap().lines().count();
    assert_eq!(n, 4, "partial results written");

    // Without a budget every failure is recorded and the run completes.
    let (code, out, err) = run(&mut eval(&p, &stub, "c", &["--json"]));
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["summary"]["errors"].as_u64(), Some(20));
    assert_eq!(r["summary"]["parse_failures"].as_u64(), Some(20));
    assert_eq!(r["summary"]["mean"].as_f64(), Some(0.0));
}

#[test]
fn bad_input_exits_2() {
    let p = SentiProject::new(5);
    let stub = scripted(HashSet::new(), HashSet::new());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--dataset", "/nonexistent/dev.csv"], "dev.csv"),
        (vec!["--map", "label"], "COLUMN=FIELD"),
        (vec!["--max-drop", "0.1"], "--baseline"),
        (vec!["--baseline", "/nonexistent/b.json"], "baseline"),
        (vec!["--metric", "no_such_metric"], "no_such_metric"),
    ];
    for (args, needle) in cases {
        let (code, out, err) = run(&mut eval(&p, &stub, "c", &args));
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    std::fs::write(p.path("b.json"), "not json").unwrap();
    let b = p.path("b.json");
    let (code, _, err) = run(&mut eval(
        &p,
        &stub,
        "c",
        &["--baseline", b.to_str().unwrap()],
    ));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not an `lmc eval --json` report"), "{err}");
    assert_eq!(stub.requests(), 0, "no LM call on bad input");
}

#[test]
fn project_file_supplies_program_dataset_and_lm() {
    let p = SentiProject::new(6);
    let stub = scripted(HashSet::new(), HashSet::new());
    std::fs::write(
        p.path("lmc.yaml"),
        format!(
            "program: prog.yaml\nlm: {{provider: openai, model: stub, base_urls: [\"{}\"]}}\n",
            stub.url()
        ),
    )
    .unwrap();
    let (code, out, err) = run(lmc()
        .current_dir(p.dir.path())
        .args(["eval", "--json", "--quiet"])
        .env("LMC_CACHE_DIR", p.path("c")));
    assert_eq!(code, 0, "{out}{err}");
    let r = json(&out);
    assert_eq!(r["summary"]["n"].as_u64(), Some(6));
    assert_eq!(r["summary"]["mean"].as_f64(), Some(1.0));
    assert!(r["dataset"]["path"].as_str().unwrap().ends_with("dev.csv"));
    assert_eq!(stub.requests(), 6);
}

#[test]
fn skipped_bad_rows_are_counted_in_the_report() {
    let p = SentiProject::new(4);
    let mut csv = std::fs::read_to_string(p.path("dev.csv")).unwrap();
    csv.push_str("review number 5,neutral\n");
    std::fs::write(p.path("dev.csv"), csv).unwrap();
    let stub = scripted(HashSet::new(), HashSet::new());
    let (code, _, err) = run(&mut eval(&p, &stub, "c", &[]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("dev.csv") && err.contains("5"), "{err}");
    let (code, out, err) = run(&mut eval(&p, &stub, "c", &["--skip-bad-rows", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("row 5"), "{err}");
    let r = json(&out);
    assert_eq!(r["dataset"]["bad_rows"].as_u64(), Some(1));
    assert_eq!(r["summary"]["n"].as_u64(), Some(4));
}
