//! A small closed-loop HTTP load generator for `lmc serve`
//! (`scripts/bench-serve.sh`): `C` workers each send `POST /v1/run` one
//! after another over keep-alive connections until `N` requests are sent
//! or `S` seconds have passed, then it prints requests/s and latency
//! percentiles. Bounded in count and time so a script can never run away.
//!
//! `cargo run --release --example serve_load -- --url http://127.0.0.1:PORT
//! [--requests N] [--concurrency C] [--seconds S] [--offset K] [--repeat]`
//!
//! Bodies are `{"sentence": "review number I ..."}` (the SST-2 program's
//! input), distinct per request so every run is a cache miss that reaches
//! the LM; `--repeat` sends one body over and over (cache hits after the
//! first). A Rust example rather than `wrk`/`oha`: nothing to install, and
//! it counts statuses the way the server reports them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn num(args: &[String], name: &str, default: u64) -> u64 {
    arg(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(base) = arg(&args, "--url") else {
        eprintln!("usage: serve_load --url http://127.0.0.1:PORT [--requests N] [--concurrency C] [--seconds S] [--offset K] [--repeat]");
        std::process::exit(2);
    };
    let total = num(&args, "--requests", 10_000) as usize;
    let conc = num(&args, "--concurrency", 32).max(1) as usize;
    let limit = Duration::from_secs(num(&args, "--seconds", 60));
    let repeat = args.iter().any(|a| a == "--repeat");
    // Where the numbering of distinct bodies starts, so successive runs
    // against one cache do not replay each other.
    let offset = num(&args, "--offset", 0) as usize;
    let url = format!("{}/v1/run", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conc {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut statuses: Vec<(u16, usize)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || started.elapsed() > limit {
                    break;
                }
                let n = if repeat { 0 } else { offset + i };
                let body = format!(
                    "{{\"sentence\": \"review number {n} of a film that was {}\"}}",
                    if n % 2 == 1 { "dull" } else { "moving" }
                );
                let t0 = Instant::now();
                let status = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                match statuses.iter_mut().find(|(s, _)| *s == status) {
                    Some((_, c)) => *c += 1,
                    None => statuses.push((status, 1)),
                }
            }
            (lat, statuses)
        }));
    }
    let mut lat = Vec::new();
    let mut statuses: Vec<(u16, usize)> = Vec::new();
    for w in workers {
        let (l, s) = w.await.expect("worker");
        lat.extend(l);
        for (st, c) in s {
            match statuses.iter_mut().find(|(x, _)| *x == st) {
                Some((_, n)) => *n += c,
                None => statuses.push((st, c)),
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    statuses.sort();
    let shown: Vec<String> = statuses
        .iter()
        .map(|(s, c)| {
            if *s == 0 {
                format!("{c}x connection error")
            } else {
                format!("{c}x {s}")
            }
        })
        .collect();
    println!(
        "{} requests at concurrency {conc} in {wall:.2}s: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({})",
        lat.len(),
        lat.len() as f64 / wall,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN),
        shown.join(", ")
    );
}
