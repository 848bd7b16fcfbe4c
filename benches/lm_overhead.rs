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
//! The stub runs in this process on its own thread and answers without
//! decoding the request body, so the figures are lmc's cost plus HTTP on
//! loopback, not the stub's JSON work. Both share the machine's cores.
//!
//! Reference (DSPy 3.4.1 on such a stub, best setting): 2.7 ms/example. The
//! bar is ≥50× DSPy's examples/s and ≤10 µs per call outside HTTP.
//! Each figure is the median of three runs (shared machines are noisy; the
//! spread is printed beside it). Set `LMC_BENCH_N` to change the number of
//! HTTP calls per run (default 20000).

#[path = "../tests/support/stub.rs"]
mod stub;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, Value};

use lmc::adapter::AdapterKind;
use lmc::lm::cache::{cache_key, CacheEntry, CacheMode, CacheStore, CachedLm};
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
        choice: None,
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

const RUNS: usize = 3;

/// The median of `RUNS` measurements and their range, as printed.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(mut xs: Vec<f64>) -> Spread {
    xs.sort_by(f64::total_cmp);
    Spread {
        median: xs[xs.len() / 2],
        min: xs[0],
        max: xs[xs.len() - 1],
    }
}

/// Time `f` over `n` iterations after a warm-up, `RUNS` times; µs per
/// iteration.
fn per_call_us(n: usize, mut f: impl FnMut(usize)) -> Spread {
    for i in 0..n.min(1000) {
        f(i);
    }
    spread(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                for i in 0..n {
                    f(i);
                }
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            })
            .collect(),
    )
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
        .parse(false)
        .start(|_| StubReply::Ok(REPLY.into()));

    // (path, µs per example: median and range over RUNS runs)
    let mut rows: Vec<(String, Spread)> = Vec::new();

    // --- HTTP, cache off -------------------------------------------------
    for conc in [1usize, 64] {
        let count = if conc == 1 { (n / 5).max(200) } else { n };
        let lm = http_lm(&stub, conc);
        // Warm up connections.
        let warm = Arc::new(examples(conc.max(8) * 4, &format!("warm{conc}-")));
        rt.block_on(drive(lm.clone(), sig.clone(), warm, conc));
        let runs = (0..RUNS)
            .map(|run| {
                let exs = Arc::new(examples(count, &format!("h{conc}-{run}-")));
                let (wall, ok) = rt.block_on(drive(lm.clone(), sig.clone(), exs, conc));
                assert_eq!(ok, count, "every stub reply must parse");
                wall.as_secs_f64() * 1e6 / count as f64
            })
            .collect();
        rows.push((format!("HTTP, no cache, concurrency {conc}"), spread(runs)));
    }

    // --- HTTP through a cold cache (miss + write per reply), then warm -----
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(CacheStore::open_dir(dir.path()).expect("cache"));
    let lm: SharedLm = Arc::new(CachedLm::new(
        http_lm(&stub, 64),
        store.clone(),
        CacheMode::ReadWrite,
    ));
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let exs = Arc::new(examples(n, &format!("cold-{run}-")));
        let (wall, ok) = rt.block_on(drive(lm.clone(), sig.clone(), exs.clone(), 64));
        assert_eq!(ok, n);
        cold.push(wall.as_secs_f64() * 1e6 / n as f64);
        // Same examples again: every call is a hit, no HTTP.
        let before = stub.requests();
        let (wall, ok) = rt.block_on(drive(lm.clone(), sig.clone(), exs, 64));
        assert_eq!(ok, n);
        assert_eq!(
            stub.requests(),
            before,
            "warm re-run must not call the server"
        );
        warm.push(wall.as_secs_f64() * 1e6 / n as f64);
    }
    rows.push((
        "HTTP + cold cache (miss, write), conc. 64".into(),
        spread(cold),
    ));
    rows.push((
        "warm cache re-run (all hits), conc. 64".into(),
        spread(warm),
    ));

    // --- Outside HTTP, tight loops -----------------------------------------
    // Requests recorded by the first cold run, so every lookup is a hit.
    let exs = examples(4096, "cold-0-");
    let reqs: Vec<LmRequest> = exs.iter().map(|e| request(&sig, e)).collect();
    let miss_exs = examples(4096, "never-");
    let misses: Vec<LmRequest> = miss_exs.iter().map(|e| request(&sig, e)).collect();
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
    let miss = per_call_us(loops, |i| {
        std::hint::black_box(store.get(&cache_key(&misses[i % misses.len()])));
    });
    let lookup = per_call_us(loops, |i| {
        std::hint::black_box(store.get(&cache_key(&reqs[i % reqs.len()])));
    });
    // Recording a reply: one INSERT committed on its own (as a cold run
    // does after every HTTP reply), with the canonical request stored.
    let mut w = 0usize;
    let write = per_call_us(loops / 10, |_| {
        w += 1;
        let req = &misses[w % misses.len()];
        store
            .put(&CacheEntry {
                key: format!("{:064x}", w),
                model: req.model.clone(),
                request: serde_json::to_value(req).ok(),
                text: REPLY.into(),
                usage: Default::default(),
                created: 0,
            })
            .expect("cache write");
    });
    // What an HTTP call spends outside HTTP: render, key, a lookup that
    // misses, parse (the write after the reply is in the cold-cache row).
    let http_side = per_call_us(loops, |i| {
        let req = request(&sig, &miss_exs[i % miss_exs.len()]);
        assert!(store.get(&cache_key(&req)).is_none());
        std::hint::black_box(AdapterKind::Chat.parse(&sig, REPLY).is_ok());
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
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            for i in 0..loops {
                std::hint::black_box(one(&hit_lm, &sig, &exs[i % exs.len()]).await);
            }
            runs.push(t.elapsed().as_secs_f64() * 1e6 / loops as f64);
        }
        spread(runs)
    });

    let dspy_eps = 1000.0 / DSPY_MS_PER_EXAMPLE;
    println!();
    println!(
        "lmc LM-path overhead (sentiment signature, chat adapter, instant local stub; median of {RUNS} runs [min–max])"
    );
    println!(
        "{:<44} {:>22} {:>12}  vs DSPy (2.7 ms)",
        "path", "µs/example", "examples/s"
    );
    for (name, s) in &rows {
        let eps = 1e6 / s.median;
        println!(
            "{name:<44} {:>8.1} [{:>5.1}–{:>5.1}] {eps:>12.0}  {:.0}x DSPy",
            s.median,
            s.min,
            s.max,
            eps / dspy_eps
        );
    }
    println!();
    println!("outside HTTP, per call (tight loop, one core)");
    println!("{:<44} {:>22}", "part", "µs/call");
    for (name, s) in [
        ("render (chat adapter)", &render),
        ("parse (chat adapter)", &parse),
        ("cache key (sha256 of canonical request)", &key),
        ("cache key + SQLite lookup (miss)", &miss),
        ("cache key + SQLite lookup (hit)", &lookup),
        ("cache write (INSERT, own transaction)", &write),
        ("HTTP call: render + key + miss + parse", &http_side),
        ("re-run: render + key + hit + parse", &total),
    ] {
        println!(
            "{name:<44} {:>8.2} [{:>5.2}–{:>5.2}]",
            s.median, s.min, s.max
        );
    }
    println!();
    let best = rows
        .iter()
        .take(2)
        .map(|r| 1e6 / r.1.median)
        .fold(0.0, f64::max);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "bar: ≥{:.0} examples/s over HTTP (50x DSPy): {} ({best:.0}); ≤10 µs outside HTTP per call: {} ({:.2} µs; {:.2} µs on a cache hit)",
        50.0 * dspy_eps,
        met(best >= 50.0 * dspy_eps),
        met(http_side.median <= 10.0),
        http_side.median,
        total.median,
    );
    println!("stub requests served: {}", stub.requests());
}
