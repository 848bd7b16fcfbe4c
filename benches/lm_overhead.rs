//! Per-call overhead of lmc's LM path against an instant local stub server
//! (run with `cargo bench --bench lm_overhead`).
//!
//! Measures, for the SST-2 sentiment signature with the chat adapter:
//! - one example end to end over HTTP (render → HttpLm → parse), cache off,
//!   at concurrency 1 and 64: µs per example and examples/s;
//! - the same at concurrency 64 through a cold response cache (lookup miss
//!   and a SQLite write per reply);
//! - the work done outside HTTP, each part in a tight loop: rendering,
//!   parsing, the cache key, and a full cache-hit call (render + key +
//!   lookup + parse), which is what a re-run costs per example.
//!
//! Reference (DSPy 3.4.1 on such a stub, best setting): 2.7 ms/example. The
//! bar is ≥50× DSPy's examples/s and ≤10 µs per call outside HTTP.
//! Set `LMC_BENCH_N` to change the number of HTTP calls (default 20000).

#[path = "../tests/support/stub.rs"]
mod stub;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, Value};

use lmc::adapter::AdapterKind;
use lmc::lm::cache::{cache_key, CacheMode, CacheStore, CachedLm};
use lmc::lm::http::{HttpConfig, HttpLm};
use lmc::lm::{Lm, LmRequest, SharedLm};
use lmc::signature::{Field, FieldType, Signature};

use stub::{StubReply, StubServer};

const DSPY_MS_PER_EXAMPLE: f64 = 2.7;
const REPLY: &str = "[[ ## sentiment ## ]]\npositive\n\n[[ ## completed ## ]]";

fn signature() -> Signature {
    let mut sentence = Field::new("sentence", FieldType::String);
    sentence.description = Some("a sentence from a movie review".into());
    let mut sentiment = Field::new(
        "sentiment",
        FieldType::Enum {
            values: vec!["positive".into(), "negative".into()],
        },
    );
    sentiment.description = Some("the sentiment the sentence expresses".into());
    Signature {
        instructions: Some("Classify the sentiment of a movie review sentence.".into()),
        inputs: vec![sentence],
        outputs: vec![sentiment],
    }
}

/// SST-2 dev sentences when the shipped copy is present, else synthetic
/// ones of similar length.
fn sentences() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/sst2/dev.csv");
    let mut out = Vec::new();
    if let Ok(mut rdr) = csv::Reader::from_path(&path) {
        for rec in rdr.records().flatten() {
            if let Some(s) = rec.get(0) {
                out.push(s.to_string());
            }
        }
    }
    if out.is_empty() {
        out = (0..872)
            .map(|i| format!("review number {i}: a gorgeous, witty, seductive movie."))
            .collect();
    }
    out
}

struct Example {
    inputs: Map<String, Value>,
}

fn examples(n: usize, salt: &str) -> Vec<Example> {
    let s = sentences();
    (0..n)
        .map(|i| {
            let mut inputs = Map::new();
            // The index makes every request distinct (no accidental hits).
            inputs.insert(
                "sentence".into(),
                Value::String(format!("{} {salt}{i}", s[i % s.len()])),
            );
            Example { inputs }
        })
        .collect()
}

fn request(sig: &Signature, ex: &Example) -> LmRequest {
    let adapter = AdapterKind::Chat;
    LmRequest {
        model: "stub-model".into(),
        messages: adapter.render(sig, &[], &ex.inputs),
        temperature: 0.0,
        max_tokens: 64,
        rollout_id: None,
        grammar: None,
        response_format: adapter.response_format(sig),
    }
}

/// One example end to end: render, call, parse. Returns whether it parsed.
async fn one(lm: &dyn Lm, sig: &Signature, ex: &Example) -> bool {
    let req = request(sig, ex);
    match lm.complete(&req).await {
        Ok(resp) => AdapterKind::Chat.parse(sig, &resp.text).is_ok(),
        Err(_) => false,
    }
}

/// Run every example with `conc` in flight; returns (wall, ok count).
async fn drive(
    lm: SharedLm,
    sig: Arc<Signature>,
    exs: Arc<Vec<Example>>,
    conc: usize,
) -> (Duration, usize) {
    let t = Instant::now();
    let ok = futures::stream::iter(0..exs.len())
        .map(|i| {
            let (lm, sig, exs) = (lm.clone(), sig.clone(), exs.clone());
            async move { one(lm.as_ref(), &sig, &exs[i]).await }
        })
        .buffer_unordered(conc)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    (t.elapsed(), ok)
}

fn http_lm(stub: &StubServer, conc: usize) -> SharedLm {
    let mut cfg = HttpConfig::new("stub-model", vec![stub.url()]);
    cfg.concurrency = conc;
    cfg.max_retries = 0;
    Arc::new(HttpLm::new(cfg).expect("http lm"))
}

/// Time `f` over `n` iterations after a warm-up; µs per iteration.
fn per_call_us(n: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..n.min(1000) {
        f(i);
    }
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let n: usize = std::env::var("LMC_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sig = Arc::new(signature());
    let stub = StubServer::builder()
        .record(false)
        .start(|_| StubReply::Ok(REPLY.into()));

    let mut rows: Vec<(String, f64, f64, String)> = Vec::new();
    let dspy_eps = 1000.0 / DSPY_MS_PER_EXAMPLE;

    // --- HTTP, cache off -------------------------------------------------
    for conc in [1usize, 64] {
        let count = if conc == 1 { (n / 5).max(200) } else { n };
        let exs = Arc::new(examples(count, &format!("h{conc}-")));
        let lm = http_lm(&stub, conc);
        // Warm up connections.
        let warm = Arc::new(examples(conc.max(8) * 4, &format!("warm{conc}-")));
        rt.block_on(drive(lm.clone(), sig.clone(), warm, conc));
        let (wall, ok) = rt.block_on(drive(lm, sig.clone(), exs.clone(), conc));
        assert_eq!(ok, count, "every stub reply must parse");
        let us = wall.as_secs_f64() * 1e6 / count as f64;
        let eps = count as f64 / wall.as_secs_f64();
        rows.push((
            format!("HTTP, no cache, concurrency {conc}"),
            us,
            eps,
            format!("{:.0}x DSPy", eps / dspy_eps),
        ));
    }

    // --- HTTP through a cold cache (miss + write per reply) ----------------
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(CacheStore::open_dir(dir.path()).expect("cache"));
    {
        let exs = Arc::new(examples(n, "cold-"));
        let lm: SharedLm = Arc::new(CachedLm::new(
            http_lm(&stub, 64),
            store.clone(),
            CacheMode::ReadWrite,
        ));
        let (wall, ok) = rt.block_on(drive(lm.clone(), sig.clone(), exs.clone(), 64));
        assert_eq!(ok, n);
        let eps = n as f64 / wall.as_secs_f64();
        rows.push((
            "HTTP + cold cache (miss, write), conc. 64".into(),
            wall.as_secs_f64() * 1e6 / n as f64,
            eps,
            format!("{:.0}x DSPy", eps / dspy_eps),
        ));
        // Same examples again: every call is a hit, no HTTP.
        let before = stub.requests();
        let (wall, ok) = rt.block_on(drive(lm, sig.clone(), exs, 64));
        assert_eq!(ok, n);
        assert_eq!(
            stub.requests(),
            before,
            "warm re-run must not call the server"
        );
        let eps = n as f64 / wall.as_secs_f64();
        rows.push((
            "warm cache re-run (all hits), conc. 64".into(),
            wall.as_secs_f64() * 1e6 / n as f64,
            eps,
            format!("{:.0}x DSPy", eps / dspy_eps),
        ));
    }

    // --- Outside HTTP, tight loops -----------------------------------------
    let exs = examples(4096, "cold-");
    let reqs: Vec<LmRequest> = exs.iter().map(|e| request(&sig, e)).collect();
    let loops = 50_000;
    let render = per_call_us(loops, |i| {
        std::hint::black_box(AdapterKind::Chat.render(&sig, &[], &exs[i % exs.len()].inputs));
    });
    let parse = per_call_us(loops, |_| {
        std::hint::black_box(AdapterKind::Chat.parse(&sig, REPLY).is_ok());
    });
    let key = per_call_us(loops, |i| {
        std::hint::black_box(cache_key(&reqs[i % reqs.len()]));
    });
    let lookup = per_call_us(loops, |i| {
        std::hint::black_box(store.get(&cache_key(&reqs[i % reqs.len()])));
    });
    // The whole per-example path on a cache hit: render, build the request,
    // key, lookup, wrap, parse (single task on a current-thread runtime, so
    // this is CPU per call, not throughput across cores).
    let hit_lm = CachedLm::new(http_lm(&stub, 1), store.clone(), CacheMode::Offline);
    let local = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let total = local.block_on(async {
        for e in exs.iter().take(1000) {
            assert!(one(&hit_lm, &sig, e).await);
        }
        let t = Instant::now();
        for i in 0..loops {
            std::hint::black_box(one(&hit_lm, &sig, &exs[i % exs.len()]).await);
        }
        t.elapsed().as_secs_f64() * 1e6 / loops as f64
    });

    println!();
    println!("lmc LM-path overhead (sentiment signature, chat adapter, instant local stub)");
    println!(
        "{:<44} {:>12} {:>14}  {}",
        "path", "µs/example", "examples/s", "vs DSPy (2.7 ms)"
    );
    for (name, us, eps, vs) in &rows {
        println!("{name:<44} {us:>12.1} {eps:>14.0}  {vs}");
    }
    println!();
    println!("outside HTTP, per call (tight loop, one core)");
    println!("{:<44} {:>12}", "part", "µs/call");
    for (name, us) in [
        ("render (chat adapter)", render),
        ("parse (chat adapter)", parse),
        ("cache key (sha256 of canonical request)", key),
        ("cache key + SQLite lookup (hit)", lookup),
        ("total: render + key + lookup + parse", total),
    ] {
        println!("{name:<44} {us:>12.2}");
    }
    println!();
    let best = rows.iter().take(2).map(|r| r.2).fold(0.0, f64::max);
    println!(
        "bar: ≥{:.0} examples/s over HTTP (50x DSPy): {} ({best:.0}); ≤10 µs outside HTTP: {} ({total:.2} µs)",
        50.0 * dspy_eps,
        if best >= 50.0 * dspy_eps { "met" } else { "NOT met" },
        if total <= 10.0 { "met" } else { "NOT met" },
    );
    println!("stub requests served: {}", stub.requests());
}
