//! `lmc serve` through the real binary, against the local stub LM: typed
//! input checks (400 naming the field), concurrent runs, 503 with
//! Retry-After under overload, `/metrics` counters that match what was sent,
//! parse and LM failures (422, 502), the schema documents, the loopback
//! rule, and SIGTERM with requests in flight losing none.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::senti::{reply, stub_lm};
use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, run};

/// A sentiment program with a typed `stars: int` input beside the text.
const PROGRAM: &str = r#"name: stars
description: Classify a review from its text and star rating.
signatures:
  classify:
    instructions: Classify the sentiment of a movie review.
    inputs:
      sentence: {type: str, description: the review}
      stars: {type: int, description: 1 to 5}
    outputs:
      sentiment: {type: "enum[positive, negative]"}
inputs:
  sentence: str
  stars: int
nodes:
  classify:
    kind: predict
    signature: classify
outputs:
  sentiment: classify.sentiment
"#;

/// A running `lmc serve`; killed on drop if still running.
struct Served {
    child: Child,
    base: String,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// `lmc serve` on a free loopback port with the stub at `url` as LM.
    fn start(url: &str, extra: &[&str]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("prog.yaml");
        std::fs::write(&prog, PROGRAM).unwrap();
        let mut c = lmc();
        c.arg("serve").arg(&prog).args(["--port", "0"]);
        stub_lm(&mut c, url);
        c.args(["--cache-dir"]).arg(dir.path().join("cache"));
        c.args(extra);
        Self::spawn(c, dir)
    }

    fn spawn(mut c: Command, dir: tempfile::TempDir) -> Served {
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lmc serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        // Drained continuously: a full pipe would block the access log.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(base) = line.trim().strip_prefix("listening on ") else {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "lmc serve did not start: stdout {line:?}\nstderr:\n{}",
                stderr.lock().unwrap()
            );
        };
        Served {
            base: base.to_string(),
            child,
            stderr,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Send SIGTERM to the server (our own child).
    fn term(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Wait for the exit code (bounded).
    fn wait(&mut self, limit: Duration) -> i32 {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(t0.elapsed() < limit, "lmc serve still running");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One HTTP exchange: (status, Retry-After, body as JSON or as text).
async fn call(method: &str, url: &str, body: Option<&str>) -> (u16, Option<String>, Value) {
    let client = reqwest::Client::new();
    let mut req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry, body)
}

fn post(url: &str, body: &str) -> (u16, Option<String>, Value) {
    rt().block_on(call("POST", url, Some(body)))
}

fn get(url: &str) -> (u16, Value) {
    let (s, _, b) = rt().block_on(call("GET", url, None));
    (s, b)
}

/// A stub that answers after `delay` with the label the stars say.
fn slow_stub(delay: Duration) -> StubServer {
    StubServer::start(move |req: &StubRequest| {
        // The field's value is the first line after its marker.
        let stars: i64 = req
            .input("stars")
            .and_then(|s| s.lines().next()?.trim().parse().ok())
            .unwrap_or(0);
        let label = if stars >= 3 { "positive" } else { "negative" };
        StubReply::Delay(delay, Box::new(StubReply::Ok(reply(label))))
    })
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn concurrent_runs_typed_inputs_and_a_400_naming_the_field() {
    let stub = slow_stub(Duration::from_millis(1500));
    let served = Served::start(&stub.url(), &["--max-in-flight", "8"]);
    let done = Arc::new(AtomicUsize::new(0));
    let rt = rt();
    let mut handles = Vec::new();
    for i in 0..8 {
        // Half send the rating as a string: coerced as a dataset cell is.
        let stars = if i % 2 == 0 {
            json!(i % 5 + 1)
        } else {
            json!((i % 5 + 1).to_string())
        };
        let body = json!({"sentence": format!("review {i}"), "stars": stars}).to_string();
        let url = served.url("/v1/run");
        let done = done.clone();
        handles.push(rt.spawn(async move {
            let r = call("POST", &url, Some(&body)).await;
            done.fetch_add(1, Ordering::SeqCst);
            (i, r)
        }));
    }
    // All eight LM calls are at the stub (which holds each 1.5 s) before any
    // answer came back: the runs overlap.
    wait_for("8 LM calls in flight", Duration::from_secs(20), || {
        stub.requests() == 8
    });
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "a request finished before all 8 reached the LM: runs did not overlap"
    );
    for h in handles {
        let (i, (status, _, body)) = rt.block_on(h).unwrap();
        assert_eq!(status, 200, "request {i}: {body}");
        let want = if i % 5 + 1 >= 3 {
            "positive"
        } else {
            "negative"
        };
        assert_eq!(body["outputs"], json!({"sentiment": want}), "request {i}");
        assert_eq!(body["usage"]["lm_calls"], 1);
        assert!(body.get("trace").is_none(), "no trace unless asked");
    }

    // Bad inputs: 400 with the field named, and no LM call made.
    let cases = [
        (
            r#"{"sentence": "x", "stars": "many"}"#,
            "invalid_input",
            Some("stars"),
            "not an integer",
        ),
        (
            r#"{"sentence": "x", "stars": [3]}"#,
            "invalid_input",
            Some("stars"),
            "expected int",
        ),
        (
            r#"{"sentence": "x"}"#,
            "missing_input",
            Some("stars"),
            "missing input `stars`",
        ),
        (
            r#"{"sentense": "x", "stars": 3}"#,
            "unknown_field",
            Some("sentense"),
            "did you mean `sentence`",
        ),
        (
            r#"{"sentence": "x", "stars": 3"#,
            "invalid_json",
            None,
            "not valid JSON",
        ),
        (
            r#"["x", 3]"#,
            "not_an_object",
            None,
            "expected a JSON object",
        ),
    ];
    for (body, kind, field, words) in cases {
        let (status, _, resp) = post(&served.url("/v1/run"), body);
        assert_eq!(status, 400, "{body}: {resp}");
        assert_eq!(resp["error"]["kind"], kind, "{body}: {resp}");
        assert_eq!(resp["error"]["field"].as_str(), field, "{body}: {resp}");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.contains(words), "{body}: {msg}");
    }
    assert_eq!(stub.requests(), 8, "bad inputs reached the LM");

    // The trace on request, by query or by body.
    let (status, _, resp) = post(
        &served.url("/v1/run?trace=1"),
        r#"{"sentence": "review 0", "stars": 1}"#,
    );
    assert_eq!(status, 200, "{resp}");
    let step = &resp["trace"][0];
    assert_eq!(step["node"], "classify");
    assert!(step["lm"]["messages"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(step["lm"]["cache_hit"], true, "same inputs: a cache hit");
    assert_eq!(resp["usage"]["cache_hits"], 1);
    let (_, _, resp) = post(
        &served.url("/v1/run"),
        r#"{"sentence": "review 0", "stars": 1, "trace": true}"#,
    );
    assert!(resp["trace"].is_array(), "{resp}");
}

#[test]
fn overload_is_a_503_with_retry_after() {
    let stub = slow_stub(Duration::from_millis(2000));
    let served = Served::start(&stub.url(), &["--max-in-flight", "1", "--queue", "0"]);
    let rt = rt();
    let url = served.url("/v1/run");
    let first =
        rt.spawn(
            async move { call("POST", &url, Some(r#"{"sentence": "slow", "stars": 5}"#)).await },
        );
    wait_for("the first run at the LM", Duration::from_secs(20), || {
        stub.requests() == 1
    });
    let (status, retry, body) = post(
        &served.url("/v1/run"),
        r#"{"sentence": "second", "stars": 5}"#,
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(body["error"]["kind"], "overloaded");
    assert_eq!(body["error"]["reason"], "queue_full");
    // Health and metrics are never behind the run slots.
    let (status, health) = get(&served.url("/healthz"));
    assert_eq!((status, health["in_flight"].as_u64()), (200, Some(1)));
    let (status, _, body) = rt.block_on(first).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(stub.requests(), 1, "the refused request made no LM call");
    let (_, metrics) = get(&served.url("/metrics"));
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("lmc_runs_rejected_total{kind=\"queue_full\"} 1"),
        "{text}"
    );

    // A queue place instead: the second request waits and succeeds.
    drop(served);
    let served = Served::start(
        &stub.url(),
        &[
            "--max-in-flight",
            "1",
            "--queue",
            "1",
            "--max-body-bytes",
            "200",
        ],
    );
    let url = served.url("/v1/run");
    let first = rt
        .spawn(async move { call("POST", &url, Some(r#"{"sentence": "q1", "stars": 5}"#)).await });
    wait_for("the first run at the LM", Duration::from_secs(20), || {
        stub.requests() == 2
    });
    let (status, _, body) = post(&served.url("/v1/run"), r#"{"sentence": "q2", "stars": 1}"#);
    assert_eq!(status, 200, "queued request: {body}");
    assert_eq!(body["outputs"]["sentiment"], "negative");
    assert_eq!(rt.block_on(first).unwrap().0, 200);
    // A body over --max-body-bytes, and a wrong method: JSON errors too.
    let big = json!({"sentence": "x".repeat(300), "stars": 1}).to_string();
    let (status, _, body) = post(&served.url("/v1/run"), &big);
    assert_eq!(
        (status, &body["error"]["kind"]),
        (413, &json!("body_too_large")),
        "{body}"
    );
    let (status, body) = get(&served.url("/v1/run"));
    assert_eq!(
        (status, &body["error"]["kind"]),
        (405, &json!("method_not_allowed")),
        "{body}"
    );
    assert_eq!(stub.requests(), 3, "refused bodies made no LM call");
}

/// A metric's value from the exposition text (`name{labels} value`).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series `{series}` in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_match_the_requests_sent_and_failures_have_their_status() {
    // Instant replies with known usage; `garbled` gets an unparseable
    // reply, `down` a 500 (no retries).
    let stub = StubServer::start(|req: &StubRequest| {
        let text = req.input("sentence").unwrap_or_default();
        match text.as_str() {
            "garbled" => StubReply::OkUsage("no structure at all".into(), 60, 10),
            "down" => StubReply::Status(500, None),
            _ => StubReply::OkUsage(reply("positive"), 60, 10),
        }
    });
    let served = Served::start(&stub.url(), &["--max-retries", "0"]);
    let run_url = served.url("/v1/run");
    for i in 0..5 {
        let (s, _, b) = post(
            &run_url,
            &json!({"sentence": format!("r{i}"), "stars": 4}).to_string(),
        );
        assert_eq!(s, 200, "{b}");
    }
    // A repeat: answered from the cache.
    let (s, _, b) = post(&run_url, r#"{"sentence": "r0", "stars": 4}"#);
    assert_eq!((s, b["usage"]["cache_hits"].as_u64()), (200, Some(1)));
    for bad in [
        r#"{"sentence": "x"}"#,
        r#"{"stars": 2, "sentence": "x", "extra": 1}"#,
    ] {
        assert_eq!(post(&run_url, bad).0, 400);
    }
    // The model's reply does not parse: 422 with the raw reply.
    let (s, _, b) = post(&run_url, r#"{"sentence": "garbled", "stars": 4}"#);
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["kind"], "parse_failure");
    assert_eq!(b["error"]["raw_reply"], "no structure at all");
    // The LM fails: 502.
    let (s, _, b) = post(&run_url, r#"{"sentence": "down", "stars": 4}"#);
    assert_eq!(s, 502, "{b}");
    assert_eq!(b["error"]["kind"], "lm_failed");
    assert_eq!(get(&served.url("/nowhere")).0, 404);

    let (s, text) = get(&served.url("/metrics"));
    assert_eq!(s, 200);
    let text = text.as_str().unwrap();
    let m = |series: &str| metric(text, series);
    assert_eq!(
        m(r#"lmc_http_requests_total{path="/v1/run",status="200"}"#),
        6.0
    );
    assert_eq!(
        m(r#"lmc_http_requests_total{path="/v1/run",status="400"}"#),
        2.0
    );
    assert_eq!(
        m(r#"lmc_http_requests_total{path="/v1/run",status="422"}"#),
        1.0
    );
    assert_eq!(
        m(r#"lmc_http_requests_total{path="/v1/run",status="502"}"#),
        1.0
    );
    assert_eq!(
        m(r#"lmc_http_requests_total{path="other",status="404"}"#),
        1.0
    );
    assert_eq!(
        m(r#"lmc_http_request_duration_seconds_count{path="/v1/run"}"#),
        10.0
    );
    // Backend calls answered: 5 distinct + garbled (the failed one is an error).
    assert_eq!(m("lmc_lm_calls_total"), 6.0);
    assert_eq!(stub.requests(), 7, "5 distinct, garbled, down");
    assert_eq!(m("lmc_lm_cache_hits_total"), 1.0);
    assert_eq!(m("lmc_lm_errors_total"), 1.0);
    assert_eq!(m(r#"lmc_lm_tokens_total{kind="prompt"}"#), 360.0);
    assert_eq!(m(r#"lmc_lm_tokens_total{kind="completion"}"#), 60.0);
    assert_eq!(m(r#"lmc_run_errors_total{kind="parse"}"#), 1.0);
    assert_eq!(m(r#"lmc_run_errors_total{kind="lm"}"#), 1.0);
    assert_eq!(m("lmc_runs_in_flight"), 0.0);

    // The schema documents come from the signature.
    let (s, schema) = get(&served.url("/v1/schema"));
    assert_eq!(s, 200);
    assert_eq!(schema["program"], "stars");
    assert_eq!(schema["inputs"]["properties"]["stars"]["type"], "integer");
    assert_eq!(schema["inputs"]["required"], json!(["sentence", "stars"]));
    assert_eq!(
        schema["outputs"]["properties"]["sentiment"]["enum"],
        json!(["positive", "negative"])
    );
    let (s, api) = get(&served.url("/openapi.json"));
    assert_eq!(s, 200);
    assert_eq!(api["openapi"], "3.1.0");
    assert_eq!(
        api["components"]["schemas"]["Inputs"]["properties"]["sentence"]["description"],
        "the review"
    );
    assert!(api["paths"]["/v1/run"]["post"]["responses"]["503"].is_object());

    // The access log: one line per request, without inputs.
    let log = served.stderr();
    assert_eq!(log.matches(" POST /v1/run 200 ").count(), 6, "{log}");
    assert!(log.contains(" GET /nowhere 404 "), "{log}");
    assert!(
        !log.contains("garbled") && !log.contains("r0"),
        "inputs in the log:\n{log}"
    );
}

#[test]
fn sigterm_answers_every_request_in_flight() {
    let stub = slow_stub(Duration::from_millis(2000));
    let mut served = Served::start(&stub.url(), &["--max-in-flight", "2", "--queue", "4"]);
    let rt = rt();
    let mut handles = Vec::new();
    for i in 0..4 {
        let url = served.url("/v1/run");
        handles.push(rt.spawn(async move {
            call(
                "POST",
                &url,
                Some(&json!({"sentence": format!("t{i}"), "stars": 5}).to_string()),
            )
            .await
        }));
    }
    // Two running at the LM, two queued behind them.
    wait_for("2 runs at the LM", Duration::from_secs(20), || {
        stub.requests() == 2
    });
    wait_for("2 queued", Duration::from_secs(20), || {
        get(&served.url("/healthz")).1["queued"] == 2
    });
    served.term();
    // The listener closes: new connections are refused while the drain runs.
    let addr = served.base.trim_start_matches("http://").to_string();
    wait_for("the listener to close", Duration::from_secs(10), || {
        std::net::TcpStream::connect(&addr).is_err()
    });
    for h in handles {
        let (status, _, body) = rt.block_on(h).unwrap();
        assert_eq!(status, 200, "a request was lost in the drain: {body}");
        assert_eq!(body["outputs"]["sentiment"], "positive");
    }
    assert_eq!(
        served.wait(Duration::from_secs(30)),
        0,
        "{}",
        served.stderr()
    );
    assert_eq!(stub.requests(), 4);
    let log = served.stderr();
    assert!(
        log.contains("SIGTERM: not accepting new connections"),
        "{log}"
    );
    assert!(log.contains("every request received was answered"), "{log}");
    assert_eq!(log.matches(" POST /v1/run 200 ").count(), 4, "{log}");
}

#[test]
fn a_non_loopback_address_needs_public() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("prog.yaml");
    std::fs::write(&prog, PROGRAM).unwrap();
    let (code, out, err) = run(lmc().arg("serve").arg(&prog).args(["--bind", "0.0.0.0:0"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("refusing to listen on 0.0.0.0:0"), "{err}");
    assert!(err.contains("--public"), "{err}");
    let (code, _, err) = run(lmc().arg("serve").arg(&prog).args(["--max-in-flight", "0"]));
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = run(lmc().args(["serve", "--help"]));
    assert_eq!(code, 0);
    assert!(out.contains("Examples:\n  lmc serve"), "{out}");
}

/// The runner's grants rule a served program as they rule `lmc run`: a
/// command tool is refused (before listening) without `--allow-exec`, and
/// runs per request with it.
#[test]
fn trust_rules_apply_as_for_run() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("ran");
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("prog.yaml");
    std::fs::write(
        &prog,
        format!(
            "name: t\ninputs: {{q: str}}\ntools:\n  sh: {{kind: command, enabled: true, command: [python3, -c, \"open(r'{}', 'w'); print('ran')\"]}}\nnodes:\n  call: {{kind: tool, tool: sh, inputs: {{q: input.q}}}}\noutputs: {{result: call.result}}\n",
            marker.display()
        ),
    )
    .unwrap();
    let mut c = lmc();
    c.arg("serve").arg(&prog).args(["--port", "0"]);
    stub_lm(&mut c, "http://127.0.0.1:9/v1");
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("command tool `sh`"), "{err}");
    assert!(!out.contains("listening"), "{out}");
    c.arg("--allow-exec");
    let served = Served::spawn(c, dir);
    let (status, _, body) = post(&served.url("/v1/run"), r#"{"q": "x"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["outputs"]["result"].as_str().unwrap().contains("ran"),
        "{body}"
    );
    assert!(marker.exists());
}
