//! Issue #18 through the real binary: the balancer survives a replica
//! dying mid-run and sends a slow replica proportionally fewer requests;
//! the cache's group-commit writer loses, on `kill -9`, only the calls in
//! flight or in the last unflushed group; several processes sharing one
//! cache lose nothing. No timed assertions: only counts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::senti::{label, reply, row_of as row, PROGRAM};
use crate::support::stub::{StubReply, StubServer};
use crate::support::{lmc, run};

/// A stub answering each row with its right label after `latency`.
fn replica(latency: Duration) -> StubServer {
    StubServer::builder()
        .latency(latency)
        .start(|req| StubReply::Ok(reply(label(row(req)))))
}

/// A project directory with `n` rows (`name` is the dataset file).
fn project(n: usize, offset: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("prog.yaml"), PROGRAM).expect("program");
    let mut csv = String::from("sentence,label\n");
    for i in offset + 1..=offset + n {
        csv.push_str(&format!("review number {i},{}\n", label(i)));
    }
    std::fs::write(dir.path().join("dev.csv"), csv).expect("dataset");
    dir
}

fn eval(dir: &Path, urls: &[String], cache: &Path, extra: &[&str]) -> Command {
    let mut c = lmc();
    c.arg("eval")
        .arg(dir.join("prog.yaml"))
        .args(["--provider", "openai", "--model", "stub"])
        .args(extra)
        .env("LMC_CACHE_DIR", cache)
        .env_remove("OPENAI_API_KEY")
        .env_remove("LMC_BASE_URL")
        .env_remove("LMC_PROVIDER");
    for u in urls {
        c.args(["--base-url", u]);
    }
    c
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn four_replicas_one_killed_one_slow_lose_nothing() {
    let n = 600;
    let dir = project(n, 0);
    let fast_a = replica(Duration::from_millis(10));
    let fast_b = replica(Duration::from_millis(10));
    let slow = replica(Duration::from_millis(100));
    let doomed = replica(Duration::from_millis(10));
    let urls = vec![fast_a.url(), fast_b.url(), slow.url(), doomed.url()];
    let child = eval(dir.path(), &urls, &dir.path().join("cache"), &["--json"])
        .args(["--concurrency", "16", "--max-retries", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lmc");
    // Kill one replica once the run is well under way (its in-flight
    // requests are cut off, later connects are refused).
    wait_until("doomed replica gets traffic", || doomed.requests() >= 30);
    let doomed_served = doomed.requests();
    drop(doomed);
    let out = child.wait_with_output().expect("wait lmc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(report["summary"]["errors"], 0, "{stderr}");
    assert_eq!(report["summary"]["mean"], 1.0, "{stderr}");
    let (a, b, s) = (fast_a.requests(), fast_b.requests(), slow.requests());
    eprintln!("fast {a} {b}, slow {s}, killed after {doomed_served}");
    // Least outstanding requests: the 10x slower replica holds its
    // requests 10x longer, so it is picked far less often.
    assert!(s * 2 < a.min(b), "slow {s} vs fast {a}, {b}");
    assert!(a + b + s + doomed_served >= n);
    // The summary names every endpoint with its counts; the killed one
    // shows errors and was ejected.
    let eps = report["endpoints"].as_array().expect("endpoints in --json");
    assert_eq!(eps.len(), 4);
    assert_eq!(eps[0]["requests"], a as u64);
    assert_eq!(eps[2]["requests"], s as u64);
    assert!(eps[3]["errors"].as_u64().unwrap() >= 1, "{:?}", eps[3]);
    assert!(eps[3]["ejections"].as_u64().unwrap() >= 1, "{:?}", eps[3]);
    assert_eq!(eps[0]["errors"], 0);
    // Ejected: after the kill, the dead replica got only probes, not a
    // quarter of the traffic.
    let dead_attempts = eps[3]["requests"].as_u64().unwrap() - doomed_served as u64;
    assert!(
        dead_attempts < 40,
        "{dead_attempts} attempts at the dead replica"
    );
    assert!(stderr.contains("ejected"), "{stderr}");
}

/// Rows in the cache file, read with SQLite directly.
fn cached_rows(cache: &Path) -> usize {
    let c = rusqlite::Connection::open(cache.join("cache.sqlite")).expect("open cache");
    c.query_row("SELECT count(*) FROM responses", [], |r| r.get::<_, i64>(0))
        .expect("count") as usize
}

/// The stub's request count once it has not changed for 300 ms.
fn settled_count(stub: &StubServer) -> usize {
    let mut last = stub.requests();
    let mut still = 0;
    while still < 3 {
        std::thread::sleep(Duration::from_millis(100));
        let now = stub.requests();
        if now == last {
            still += 1;
        } else {
            (last, still) = (now, 0);
        }
    }
    last
}

#[test]
fn kill_9_repeats_only_calls_in_flight_or_in_the_last_group() {
    let n = 2000;
    let concurrency = 8;
    let dir = project(n, 0);
    let cache: PathBuf = dir.path().join("cache");
    let stub = replica(Duration::from_millis(2));
    let mut child = eval(dir.path(), &[stub.url()], &cache, &["--quiet"])
        .args(["--concurrency", &concurrency.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lmc");
    wait_until("a good part of the run", || stub.requests() >= 600);
    child.kill().expect("kill -9"); // SIGKILL: no destructor, no flush
    child.wait().expect("reap");
    // A request the killed process had fully sent may still be counted by
    // the stub after the reap (its handler runs later); read the count only
    // once it has stopped moving, or that request would be charged to the
    // re-run.
    let first = settled_count(&stub);
    assert!(first < n, "the run finished before the kill ({first})");
    let committed = cached_rows(&cache);
    // Every committed reply is one the first run paid for.
    assert!(committed <= first);
    // The bound: what the first run received but did not commit is the
    // requests in flight at the kill plus the replies queued for the
    // writer (the group being committed and those behind it).
    let lost = first - committed;
    assert!(
        lost <= concurrency + lmc::lm::cache::GROUP_MAX,
        "{lost} paid replies lost (first run {first}, committed {committed})"
    );
    // The re-run pays exactly for what is not committed, nothing twice.
    let (code, _, err) = run(eval(dir.path(), &[stub.url()], &cache, &["--quiet"])
        .args(["--concurrency", &concurrency.to_string()]));
    assert_eq!(code, 0, "{err}");
    let second = stub.requests() - first;
    assert_eq!(second, n - committed, "{err}");
    eprintln!(
        "first run {first}, committed {committed}, repeated {}",
        first + second - n
    );
    assert_eq!(cached_rows(&cache), n);
}

#[test]
fn processes_sharing_one_cache_lose_nothing() {
    // Three processes at once on overlapping halves of 600 rows.
    let stub = replica(Duration::ZERO);
    let shared = tempfile::tempdir().expect("cache dir");
    let cache = shared.path().to_path_buf();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|k| project(300, k * 150)).collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            eval(d.path(), &[stub.url()], &cache, &["--quiet"])
                .args(["--concurrency", "32"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn lmc")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Rows 1..=600: every reply any process received is in the file.
    assert_eq!(cached_rows(&cache), 600);
    // Offline, every process's rows replay with no call.
    let before = stub.requests();
    for d in &dirs {
        let (code, _, err) = run(&mut eval(
            d.path(),
            &[stub.url()],
            &cache,
            &["--offline", "--quiet"],
        ));
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(stub.requests(), before);
}

#[test]
fn a_reply_is_served_from_the_queue_before_it_is_committed() {
    // The same sentence twice in one dataset, concurrency 1: the second
    // asks after the first reply is queued (committed or not): one call.
    let dir = project(1, 0);
    let csv = "sentence,label\nreview number 2,positive\nreview number 2,positive\n";
    std::fs::write(dir.path().join("dev.csv"), csv).unwrap();
    let stub = replica(Duration::ZERO);
    let (code, _, err) = run(eval(
        dir.path(),
        &[stub.url()],
        &dir.path().join("c"),
        &["--quiet"],
    )
    .args(["--concurrency", "1"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(stub.requests(), 1);
}
