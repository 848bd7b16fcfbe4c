//! The LM layer over HTTP, against the local stub server: fault injection
//! (429 storms with Retry-After, 5xx, timeouts, resets, truncated and
//! malformed bodies, empty choices) with call counts asserted; the
//! persistent cache (hit, miss, offline, no-cache, corrupt rows, coalescing,
//! the resume property); usage and budgets; and `lmc cache` through the
//! real binary.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lmc::adapter::{Message, Role};
use lmc::lm::cache::{cache_key, CacheMode, CacheStore, CachedLm};
use lmc::lm::http::{HttpConfig, HttpLm};
use lmc::lm::usage::Budgets;
use lmc::lm::{build_lm, build_lm_full, Lm, LmError, LmOptions, LmRequest, SharedLm};
use lmc::program::LmConfig;

use crate::support::stub::{StubReply, StubServer};
use crate::support::{lmc, run};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn req(content: &str) -> LmRequest {
    LmRequest {
        model: "stub-model".into(),
        messages: vec![
            Message::new(Role::System, "You are a test."),
            Message::new(Role::User, content),
        ],
        temperature: 0.0,
        max_tokens: 32,
        rollout_id: None,
        grammar: None,
        response_format: None,
        choice: None,
    }
}

/// An HTTP LM on the stub with millisecond backoff so retry tests are fast.
fn http_cfg(stub: &StubServer) -> HttpConfig {
    let mut c = HttpConfig::new("stub-model", vec![stub.url()]);
    c.backoff_base = Duration::from_millis(1);
    c.backoff_max = Duration::from_millis(5);
    c.timeout = Duration::from_secs(5);
    c.max_retries = 6;
    c
}

fn http(stub: &StubServer) -> HttpLm {
    HttpLm::new(http_cfg(stub)).unwrap()
}

/// The first `n` requests get `fault`, the rest "ok".
fn faulty(n: usize, fault: StubReply) -> StubServer {
    StubServer::start(move |r| {
        if r.n < n {
            fault.clone()
        } else {
            StubReply::Ok("ok".into())
        }
    })
}

#[test]
fn stub_serves_scripted_replies() {
    let stub = StubServer::start(|req| {
        if req.n == 0 {
            StubReply::Status(429, Some("0".into()))
        } else {
            StubReply::Ok(format!("hello {}", req.model))
        }
    });
    let url = format!("{}/chat/completions", stub.url());
    let (s1, s2, body) = rt().block_on(async {
        let c = reqwest::Client::new();
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let r1 = c.post(&url).json(&body).send().await.unwrap();
        let s1 = r1.status().as_u16();
        let r2 = c.post(&url).json(&body).send().await.unwrap();
        let s2 = r2.status().as_u16();
        let v: serde_json::Value = r2.json().await.unwrap();
        (s1, s2, v)
    });
    assert_eq!(s1, 429);
    assert_eq!(s2, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "hello m");
    assert_eq!(stub.requests(), 2);
    assert_eq!(stub.received()[1]["messages"][0]["content"], "hi");
}

#[test]
fn storm_of_429_with_retry_after_is_ridden_out() {
    let stub = faulty(5, StubReply::Status(429, Some("0".into())));
    let lm = http(&stub);
    let r = rt().block_on(lm.complete(&req("x"))).unwrap();
    assert_eq!(r.text, "ok");
    assert_eq!(r.retries, 5);
    assert_eq!(stub.requests(), 6);
}

#[test]
fn retry_after_is_honoured_over_short_backoff() {
    // Backoff alone would wait ≤5 ms; the server asks for 1 s.
    let stub = faulty(1, StubReply::Status(503, Some("1".into())));
    let lm = http(&stub);
    let t = Instant::now();
    let r = rt().block_on(lm.complete(&req("x"))).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    assert_eq!((r.retries, stub.requests()), (1, 2));
}

#[test]
fn persistent_500s_exhaust_retries_with_the_count() {
    let stub = StubServer::start(|_| StubReply::Status(500, None));
    let mut cfg = http_cfg(&stub);
    cfg.max_retries = 3;
    let lm = HttpLm::new(cfg).unwrap();
    let err = rt().block_on(lm.complete(&req("x"))).unwrap_err();
    match &err {
        LmError::Exhausted { attempts, last } => {
            assert_eq!(*attempts, 4);
            assert!(last.contains("500"), "{last}");
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert_eq!(stub.requests(), 4);
}

#[test]
fn client_errors_are_fatal_without_retry() {
    for code in [400u16, 401, 404, 422] {
        let stub = StubServer::start(move |_| StubReply::Status(code, None));
        let err = rt().block_on(http(&stub).complete(&req("x"))).unwrap_err();
        assert!(
            matches!(err, LmError::Fatal(ref m) if m.contains(&code.to_string())),
            "{err:?}"
        );
        assert_eq!(stub.requests(), 1, "status {code} must not be retried");
    }
    // 408 and 409 are transient despite being 4xx.
    for code in [408u16, 409] {
        let stub = faulty(1, StubReply::Status(code, None));
        let r = rt().block_on(http(&stub).complete(&req("x"))).unwrap();
        assert_eq!((r.retries, stub.requests()), (1, 2), "status {code}");
    }
}

#[test]
fn timeouts_are_retried() {
    let stub = faulty(
        1,
        StubReply::Delay(
            Duration::from_secs(3),
            Box::new(StubReply::Ok("late".into())),
        ),
    );
    let mut cfg = http_cfg(&stub);
    cfg.timeout = Duration::from_millis(300);
    let lm = HttpLm::new(cfg).unwrap();
    let r = rt().block_on(lm.complete(&req("x"))).unwrap();
    assert_eq!((r.text.as_str(), r.retries), ("ok", 1));
    assert_eq!(stub.requests(), 2);
}

/// Issue #17: null or empty content is the model's reply (a content filter,
/// an instant stop), not a transport failure: one request, no retries; the
/// adapter then reports it as a parse failure of the example.
#[test]
fn issue17_null_and_empty_content_are_replies_not_retried() {
    for body in [
        r#"{"choices":[{"message":{"content":null}}]}"#,
        r#"{"choices":[{"message":{"content":""}}]}"#,
        r#"{"choices":[{"message":{"role":"assistant"}}]}"#,
    ] {
        let stub = StubServer::start(move |_| StubReply::Raw(200, body.into()));
        let r = rt()
            .block_on(http(&stub).complete(&req("x")))
            .unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!((r.text.as_str(), r.retries), ("", 0), "{body}");
        assert_eq!(stub.requests(), 1, "{body}");
    }
}

#[test]
fn connection_resets_truncation_malformed_and_empty_choices_are_retried() {
    for fault in [
        StubReply::Reset,
        StubReply::Truncated,
        StubReply::Malformed,
        StubReply::EmptyChoices,
        StubReply::Raw(200, r#"{"choices":[{}]}"#.into()),
    ] {
        let stub = faulty(2, fault.clone());
        let r = rt()
            .block_on(http(&stub).complete(&req("x")))
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!((r.text.as_str(), r.retries), ("ok", 2), "{fault:?}");
        assert_eq!(stub.requests(), 3, "{fault:?}");
    }
    // Reported (not crashing) when it never recovers, naming the cause.
    let stub = StubServer::start(|_| StubReply::EmptyChoices);
    let mut cfg = http_cfg(&stub);
    cfg.max_retries = 2;
    let err = rt()
        .block_on(HttpLm::new(cfg).unwrap().complete(&req("x")))
        .unwrap_err();
    assert!(err.to_string().contains("no choices"), "{err}");
    assert_eq!(stub.requests(), 3);
}

#[test]
fn request_carries_parameters_key_and_response_format() {
    let seen_auth = Arc::new(Mutex::new(None));
    let s = seen_auth.clone();
    let stub = StubServer::start(move |r| {
        *s.lock().unwrap() = r.authorization.clone();
        StubReply::OkUsage("ok".into(), 11, 3)
    });
    std::env::set_var("LMC_TEST_STUB_KEY_A", "sk-test-123");
    let mut cfg = http_cfg(&stub);
    cfg.api_key_env = Some("LMC_TEST_STUB_KEY_A".into());
    cfg.seed = Some(7);
    let lm = HttpLm::new(cfg).unwrap();
    // The key never shows in Debug output.
    assert!(!format!("{lm:?}").contains("sk-test-123"));
    let mut r = req("x");
    r.temperature = 0.5;
    r.response_format = Some(serde_json::json!({"type": "json_object"}));
    let resp = rt().block_on(lm.complete(&r)).unwrap();
    assert_eq!(
        (resp.usage.prompt_tokens, resp.usage.completion_tokens),
        (11, 3)
    );
    let body = &stub.received()[0];
    assert_eq!(body["model"], "stub-model");
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["max_tokens"], 32);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["response_format"]["type"], "json_object");
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(
        seen_auth.lock().unwrap().as_deref(),
        Some("Bearer sk-test-123")
    );
}

#[test]
fn base_urls_are_round_robined() {
    let a = StubServer::fixed("a");
    let b = StubServer::fixed("b");
    let mut cfg = http_cfg(&a);
    cfg.base_urls = vec![a.url(), b.url()];
    let lm = HttpLm::new(cfg).unwrap();
    let rt = rt();
    for i in 0..6 {
        rt.block_on(lm.complete(&req(&i.to_string()))).unwrap();
    }
    assert_eq!((a.requests(), b.requests()), (3, 3));
}

#[test]
fn concurrency_is_bounded() {
    let stub = StubServer::builder()
        .latency(Duration::from_millis(150))
        .start(|_| StubReply::Ok("ok".into()));
    let mut cfg = http_cfg(&stub);
    cfg.concurrency = 2;
    let lm = Arc::new(HttpLm::new(cfg).unwrap());
    let t = Instant::now();
    rt().block_on(async {
        let calls = (0..6).map(|i| {
            let lm = lm.clone();
            async move { lm.complete(&req(&i.to_string())).await }
        });
        for r in futures::future::join_all(calls).await {
            r.unwrap();
        }
    });
    // 6 calls, 2 at a time, 150 ms each: at least 3 rounds.
    assert!(
        t.elapsed() >= Duration::from_millis(440),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(stub.requests(), 6);
}

fn cached(
    stub: &StubServer,
    dir: &std::path::Path,
    mode: CacheMode,
) -> (CachedLm, Arc<CacheStore>) {
    let store = Arc::new(CacheStore::open_dir(dir).unwrap());
    let inner: SharedLm = Arc::new(http(stub));
    (CachedLm::new(inner, store.clone(), mode), store)
}

#[test]
fn cache_hits_misses_offline_and_no_cache() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubServer::start(|r| StubReply::OkUsage(format!("re: {}", r.last_user()), 10, 2));
    let rt = rt();
    let (lm, _) = cached(&stub, dir.path(), CacheMode::ReadWrite);
    let first = rt.block_on(lm.complete(&req("a"))).unwrap();
    assert!(!first.cache_hit);
    assert_eq!(first.usage.prompt_tokens, 10);
    let second = rt.block_on(lm.complete(&req("a"))).unwrap();
    assert!(second.cache_hit);
    assert_eq!((second.text.as_str(), second.cost), ("re: a", 0.0));
    assert_eq!(stub.requests(), 1);
    // A different rollout id is a different request.
    let mut r = req("a");
    r.rollout_id = Some(1);
    assert!(!rt.block_on(lm.complete(&r)).unwrap().cache_hit);
    assert_eq!(stub.requests(), 2);
    drop(lm);

    // Offline: recorded requests replay, others fail naming key and model.
    let (off, _) = cached(&stub, dir.path(), CacheMode::Offline);
    assert!(rt.block_on(off.complete(&req("a"))).unwrap().cache_hit);
    let miss = rt.block_on(off.complete(&req("never seen"))).unwrap_err();
    match &miss {
        LmError::CacheMiss { key, model } => {
            assert_eq!(key, &cache_key(&req("never seen")));
            assert_eq!(model, "stub-model");
        }
        other => panic!("expected CacheMiss, got {other:?}"),
    }
    assert!(miss.to_string().contains("offline"));
    assert_eq!(stub.requests(), 2);

    // No cache: every call reaches the server and nothing is read.
    let (nc, _) = cached(&stub, dir.path(), CacheMode::NoCache);
    assert!(!rt.block_on(nc.complete(&req("a"))).unwrap().cache_hit);
    assert_eq!(stub.requests(), 3);
}

#[test]
fn corrupt_rows_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubServer::fixed("fine");
    let rt = rt();
    let (lm, store) = cached(&stub, dir.path(), CacheMode::ReadWrite);
    let warned = Arc::new(AtomicUsize::new(0));
    let w = warned.clone();
    store.set_warning_callback(move |_| {
        w.fetch_add(1, Ordering::SeqCst);
    });
    rt.block_on(lm.complete(&req("a"))).unwrap();
    rt.block_on(lm.complete(&req("b"))).unwrap();
    store
        .execute_raw("UPDATE responses SET text = 'tampered'")
        .unwrap();
    // Undecodable: text where a token count must be.
    let k = cache_key(&req("b"));
    store
        .execute_raw(&format!(
            "UPDATE responses SET prompt_tokens = 'x' WHERE key = '{k}'"
        ))
        .unwrap();
    let a = rt.block_on(lm.complete(&req("a"))).unwrap();
    let b = rt.block_on(lm.complete(&req("b"))).unwrap();
    assert!(!a.cache_hit && !b.cache_hit);
    assert_eq!((a.text.as_str(), b.text.as_str()), ("fine", "fine"));
    assert!(store.warnings() >= 2, "{:?}", store.warning_messages());
    assert!(warned.load(Ordering::SeqCst) >= 2);
    assert_eq!(stub.requests(), 4);
    // The rows were rewritten by the fresh replies: hits again.
    assert!(rt.block_on(lm.complete(&req("a"))).unwrap().cache_hit);
    assert_eq!(stub.requests(), 4);
}

#[test]
fn identical_requests_in_flight_are_coalesced() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubServer::builder()
        .latency(Duration::from_millis(100))
        .start(|_| StubReply::Ok("once".into()));
    let (lm, _) = cached(&stub, dir.path(), CacheMode::ReadWrite);
    let lm = Arc::new(lm);
    let results = rt().block_on(async {
        let calls = (0..10).map(|_| {
            let lm = lm.clone();
            async move { lm.complete(&req("same")).await.unwrap() }
        });
        futures::future::join_all(calls).await
    });
    assert_eq!(stub.requests(), 1);
    assert_eq!(results.iter().filter(|r| !r.cache_hit).count(), 1);
    assert!(results.iter().all(|r| r.text == "once"));
}

fn stub_config(stub: &StubServer) -> LmConfig {
    LmConfig {
        base_urls: vec![stub.url()],
        model: Some("stub-model".into()),
        price_prompt_per_mtok: Some(1.0),
        price_completion_per_mtok: Some(4.0),
        ..Default::default()
    }
}

/// The resume property: a run stopped part-way (here by a call budget) and
/// re-run sends the server only the requests it had not answered.
#[test]
fn stopped_run_resumes_from_cache_without_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubServer::start(|r| StubReply::OkUsage(format!("re: {}", r.last_user()), 100, 10));
    let mut cfg = stub_config(&stub);
    cfg.concurrency = Some(4);
    let opts = LmOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        backoff_base: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    let rt = rt();
    let run_all = |lm: SharedLm| {
        rt.block_on(async move {
            let calls = (0..20).map(|i| {
                let lm = lm.clone();
                async move { lm.complete(&req(&format!("item {i}"))).await }
            });
            futures::future::join_all(calls).await
        })
    };
    let limited = LmOptions {
        budgets: Budgets {
            max_lm_calls: Some(8),
            ..Default::default()
        },
        ..opts.clone()
    };
    let (lm, meter) = build_lm(&resolved(&cfg), &limited).unwrap();
    let first = run_all(lm);
    assert_eq!(first.iter().filter(|r| r.is_ok()).count(), 8);
    assert!(first
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, LmError::Budget(_))));
    let s = meter.snapshot();
    assert_eq!((s.calls, s.errors, s.prompt_tokens), (8, 12, 800));
    assert!(
        (s.cost - 8.0 * (100.0 + 40.0) / 1e6).abs() < 1e-9,
        "{}",
        s.cost
    );
    assert_eq!(stub.requests(), 8);

    let (lm, meter) = build_lm(&resolved(&cfg), &opts).unwrap();
    let second = run_all(lm);
    assert!(second.iter().all(|r| r.is_ok()));
    let s = meter.snapshot();
    assert_eq!((s.calls, s.cache_hits), (12, 8));
    assert_eq!(stub.requests(), 20);
    let bodies: HashSet<String> = stub.received().iter().map(|b| b.to_string()).collect();
    assert_eq!(bodies.len(), 20, "a request was sent twice");
}

/// Same property when the run is killed mid-flight (tasks aborted): every
/// reply that had arrived before the kill is replayed, never re-requested.
#[test]
fn aborted_run_loses_no_recorded_reply() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubServer::builder()
        .latency(Duration::from_millis(40))
        .start(|r| StubReply::Ok(format!("re: {}", r.last_user())));
    let mut cfg = stub_config(&stub);
    cfg.concurrency = Some(2);
    let opts = LmOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let rt = rt();
    let (lm, _) = build_lm(&resolved(&cfg), &opts).unwrap();
    let done = Arc::new(Mutex::new(Vec::new()));
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20 {
            let (lm, done) = (lm.clone(), done.clone());
            set.spawn(async move {
                let r = req(&format!("item {i}"));
                if lm.complete(&r).await.is_ok() {
                    done.lock().unwrap().push(r);
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        set.abort_all();
        while set.join_next().await.is_some() {}
    });
    let done = done.lock().unwrap().clone();
    assert!(!done.is_empty() && done.len() < 20, "{} done", done.len());
    let before = stub.requests();

    let (lm, meter) = build_lm(&resolved(&cfg), &opts).unwrap();
    rt.block_on(async {
        for r in &done {
            assert!(lm.complete(r).await.unwrap().cache_hit);
        }
    });
    assert_eq!(meter.snapshot().cache_hits, done.len() as u64);
    assert_eq!(stub.requests(), before, "a recorded reply was re-requested");
}

#[test]
fn offline_build_needs_no_server_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubServer::fixed("recorded");
    let mut cfg = stub_config(&stub);
    let opts = LmOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let rt = rt();
    let (lm, _) = build_lm(&resolved(&cfg), &opts).unwrap();
    rt.block_on(lm.complete(&req("q"))).unwrap();
    drop(stub);
    // Now the server is gone and a key variable is named but unset.
    cfg.api_key_env = Some("LMC_TEST_UNSET_KEY_OFFLINE_IT".into());
    let offline = LmOptions {
        offline: true,
        ..opts
    };
    let built = build_lm_full(&resolved(&cfg), &offline).unwrap();
    let hit = rt.block_on(built.lm.complete(&req("q"))).unwrap();
    assert!(hit.cache_hit);
    assert_eq!(hit.text, "recorded");
    let miss = rt.block_on(built.lm.complete(&req("other"))).unwrap_err();
    assert!(matches!(miss, LmError::CacheMiss { .. }), "{miss:?}");
    assert_eq!(built.meter.snapshot().cache_hits, 1);
}

/// `lmc cache stats|export|clear|import` through the real binary: a
/// cassette exported from one cache replays offline from another.
#[test]
fn cache_cli_exports_and_imports_cassettes() {
    let dir = tempfile::tempdir().unwrap();
    let cache_a = dir.path().join("a");
    let cache_b = dir.path().join("b");
    let stub = StubServer::start(|r| StubReply::Ok(format!("re: {}", r.last_user())));
    let cfg = stub_config(&stub);
    let opts = LmOptions {
        cache_dir: Some(cache_a.clone()),
        ..Default::default()
    };
    let rt = rt();
    let (lm, _) = build_lm(&resolved(&cfg), &opts).unwrap();
    rt.block_on(async {
        for i in 0..3 {
            lm.complete(&req(&format!("q{i}"))).await.unwrap();
        }
    });
    drop(lm);

    let (code, out, err) = run(lmc()
        .args(["cache", "stats", "--json", "--cache-dir"])
        .arg(&cache_a));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entries"], 3);
    assert_eq!(v["models"][0][0], "stub-model");

    let cassette = dir.path().join("cassette.jsonl");
    let (code, _, err) = run(lmc()
        .args(["cache", "export"])
        .arg(&cassette)
        .arg("--cache-dir")
        .arg(&cache_a));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("exported 3 entries"), "{err}");
    let text = std::fs::read_to_string(&cassette).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.contains("re: q1"));

    let (code, out, err) = run(lmc()
        .args(["cache", "import"])
        .arg(&cassette)
        .arg("--cache-dir")
        .arg(&cache_b));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 3 entries"), "{out}");

    // The imported cassette replays offline.
    let offline = LmOptions {
        cache_dir: Some(cache_b.clone()),
        offline: true,
        ..Default::default()
    };
    let (lm, _) = build_lm(&resolved(&cfg), &offline).unwrap();
    let r = rt.block_on(lm.complete(&req("q2"))).unwrap();
    assert!(r.cache_hit);
    assert_eq!(r.text, "re: q2");
    assert_eq!(stub.requests(), 3);

    let (code, out, _) = run(lmc().args(["cache", "clear", "--cache-dir"]).arg(&cache_b));
    assert_eq!(code, 0);
    assert!(out.contains("cleared 3 entries"), "{out}");
    let (_, out, _) = run(lmc().args(["cache", "stats", "--cache-dir"]).arg(&cache_b));
    assert!(out.contains("entries: 0"), "{out}");

    // A cassette line that is not an entry is an input error (exit 2).
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"nope\": 1}\n").unwrap();
    let (code, _, err) = run(lmc()
        .args(["cache", "import"])
        .arg(&bad)
        .arg("--cache-dir")
        .arg(&cache_b));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 1"), "{err}");
}

/// A config the test vouches for, resolved as the CLI would.
fn resolved(cfg: &lmc::program::LmConfig) -> lmc::lm::ResolvedLm {
    lmc::lm::ResolvedLm::from_config(cfg).unwrap()
}
