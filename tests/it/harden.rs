//! LM-layer hardening through the real binary (issue #11): credentials in
//! base URLs never reach any output, the chat path is joined before a
//! base URL's query string, an unparseable reply is not replayed as final,
//! a damaged or read-only cache never stops work, and rate limits that
//! could only hang are refused at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::senti::{label, reply, row_of, SentiProject, PROGRAM};
use crate::support::stub::{StubReply, StubServer};
use crate::support::{lmc, run};

/// `lmc eval prog.yaml` against `base_url`, cache in `cache_dir`.
fn eval(p: &SentiProject, base_url: &str, cache_dir: &Path, extra: &[&str]) -> Command {
    let mut c = p.command("eval", base_url, cache_dir);
    c.args(["--quiet", "--max-retries", "0"]).args(extra);
    c
}

/// `http://127.0.0.1:PORT/v1` → with user, password and a secret query.
fn secret_url(stub_url: &str) -> String {
    let rest = stub_url.strip_prefix("http://").expect("http url");
    format!("http://alice:hunter2pw@{rest}?api_key=sekritkey99&x=y")
}

#[test]
fn url_credentials_reach_no_output_and_the_path_precedes_the_query() {
    let p = SentiProject::new(6);
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    // Rows 1-3 fail with a client error (its message names the server and
    // the body echoes the credentials), rows 4-6 answer.
    let stub = StubServer::start(move |req| {
        seen.lock().unwrap().push(req.path.clone());
        let r = row_of(req);
        if r <= 3 {
            // A server that echoes what it was given.
            StubReply::Raw(
                400,
                r#"{"error":{"message":"invalid api_key sekritkey99 for alice:hunter2pw"}}"#.into(),
            )
        } else {
            StubReply::Ok(reply(label(r)))
        }
    });
    let url = secret_url(&stub.url());
    let out = |n: &str| p.path(n).to_string_lossy().into_owned();
    let (code, stdout, stderr) = run(eval(&p, &url, &p.path("cache"), &["--json"])
        .args(["--results", &out("r.jsonl"), "--junit", &out("j.xml")])
        .args(["--markdown", &out("m.md"), "--html", &out("h.html")]));
    assert!(code == 0 || code == 1, "exit {code}\n{stderr}");
    // The failures are in the reports, with the (redacted) server named.
    let results = std::fs::read_to_string(p.path("r.jsonl")).unwrap();
    assert!(results.contains("HTTP 400"), "{results}");
    assert!(results.contains("invalid api_key ***"), "{results}");
    assert!(results.contains("127.0.0.1"), "{results}");

    // A connection failure (nothing listens) through `lmc run --trace`.
    let dead = "http://bob:deadpw77@127.0.0.1:9/v1?token=tok55secret";
    let (code2, stdout2, stderr2) = run(lmc()
        .arg("run")
        .arg(p.path("prog.yaml"))
        .args(["-i", "sentence=fine", "--json", "--trace", &out("t.json")])
        .args([
            "--provider",
            "openai",
            "--model",
            "stub",
            "--base-url",
            dead,
        ])
        .args(["--max-retries", "0", "--timeout", "2"])
        .env_remove("OPENAI_API_KEY"));
    assert_ne!(code2, 0, "{stderr2}");
    assert!(
        stderr2.contains("127.0.0.1:9") || stdout2.contains("127.0.0.1:9"),
        "the error should name the server:\n{stderr2}\n{stdout2}"
    );

    let mut texts = vec![stdout, stderr, stdout2, stderr2];
    for f in ["r.jsonl", "j.xml", "m.md", "h.html", "t.json"] {
        if let Ok(t) = std::fs::read_to_string(p.path(f)) {
            texts.push(t);
        } else {
            assert_eq!(f, "t.json", "{f} was not written");
        }
    }
    for t in &texts {
        for secret in [
            "hunter2pw",
            "sekritkey99",
            "deadpw77",
            "tok55secret",
            "alice",
        ] {
            assert!(!t.contains(secret), "`{secret}` leaked into:\n{t}");
        }
    }
    // The request path is /v1/chat/completions with the query after it.
    let paths = paths.lock().unwrap().clone();
    assert!(!paths.is_empty());
    for path in paths {
        assert_eq!(path, "/v1/chat/completions?api_key=sekritkey99&x=y");
    }
}

#[test]
fn unparseable_replies_are_asked_again_once_the_server_is_fixed() {
    let p = SentiProject::new(10);
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fixed.clone();
    let stub = StubServer::start(move |req| {
        let r = row_of(req);
        if !f.load(std::sync::atomic::Ordering::SeqCst) && r <= 4 {
            // Not a value of the enum: a parse failure.
            StubReply::Ok(reply("mixed"))
        } else {
            StubReply::Ok(reply(label(r)))
        }
    });
    let cache = p.path("cache");
    let json = |s: &str| -> serde_json::Value { serde_json::from_str(s).expect("json") };

    let (_, out, err) = run(&mut eval(&p, &stub.url(), &cache, &["--json"]));
    let first = json(&out);
    assert_eq!(stub.requests(), 10, "{err}");
    assert_eq!(first["summary"]["parse_failures"], 4, "{out}");

    // Offline replays exactly what was recorded, failures included.
    let (_, out, err) = run(&mut eval(&p, &stub.url(), &cache, &["--json", "--offline"]));
    assert_eq!(stub.requests(), 10, "offline made calls: {err}");
    assert_eq!(json(&out)["summary"]["parse_failures"], 4, "{out}");

    // The server is fixed: only the four unparseable replies are asked again.
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    let (code, out, err) = run(&mut eval(&p, &stub.url(), &cache, &["--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(stub.requests(), 14, "{err}");
    let again = json(&out);
    assert_eq!(again["summary"]["parse_failures"], 0, "{out}");
    assert_eq!(again["summary"]["mean"], 1.0, "{out}");

    // And the new replies are final: a third run is all cache hits.
    let (_, _, err) = run(&mut eval(&p, &stub.url(), &cache, &["--json"]));
    assert_eq!(stub.requests(), 14, "{err}");
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn ok_stub() -> StubServer {
    StubServer::start(|req| StubReply::Ok(reply(label(row_of(req)))))
}

#[test]
fn truncated_cache_is_moved_aside_and_the_run_completes() {
    let p = SentiProject::new(40);
    let stub = ok_stub();
    let cache = p.path("cache");
    let (code, _, err) = run(&mut eval(&p, &stub.url(), &cache, &[]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(stub.requests(), 40);
    let file = cache.join("cache.sqlite");
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(
        !cache.join("cache.sqlite-wal").exists(),
        "{:?}",
        files_in(&cache)
    );
    // Cut the file in half: pages at the end are gone.
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);

    let (code, _, err) = run(&mut eval(&p, &stub.url(), &cache, &[]));
    assert_eq!(code, 0, "the run must complete:\n{err}");
    let aside: Vec<String> = files_in(&cache)
        .into_iter()
        .filter(|f| {
            f.starts_with("cache.sqlite.corrupt-") && !f.ends_with("-wal") && !f.ends_with("-shm")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{:?}\n{err}", files_in(&cache));
    assert!(err.contains("damaged"), "{err}");
    assert!(
        err.contains(&aside[0]),
        "the warning names the moved file:\n{err}"
    );
    assert!(err.contains(&file.display().to_string()), "{err}");
    let paid = stub.requests() - 40;
    assert!(
        paid > 0 && paid < 40,
        "salvage kept the readable rows: paid {paid}\n{err}"
    );

    // The next run pays nothing: every reply is recorded again.
    let (code, _, err) = run(&mut eval(&p, &stub.url(), &cache, &[]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(stub.requests(), 40 + paid, "{err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn header_damaged_cache_is_replaced_and_cache_clear_works_on_garbage() {
    let p = SentiProject::new(3);
    let stub = ok_stub();
    let cache = p.path("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("cache.sqlite"), vec![0x5au8; 10_000]).unwrap();
    let (code, out, err) = run(lmc().args(["cache", "clear", "--cache-dir"]).arg(&cache));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cleared 0"), "{out}");
    assert!(
        err.contains("damaged") && err.contains("cache.sqlite.corrupt-"),
        "{err}"
    );

    // Garbage again, then an eval: it runs on a fresh cache.
    std::fs::write(cache.join("cache.sqlite"), b"not a database at all").unwrap();
    let (code, _, err) = run(&mut eval(&p, &stub.url(), &cache, &[]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(stub.requests(), 3);
    let (code, out, err) = run(lmc()
        .args(["cache", "stats", "--json", "--cache-dir"])
        .arg(&cache));
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["entries"], 3, "{out}");
}

#[test]
fn cache_commands_work_on_a_file_with_a_damaged_page() {
    let p = SentiProject::new(40);
    let stub = ok_stub();
    let cache = p.path("cache");
    let (code, _, err) = run(&mut eval(&p, &stub.url(), &cache, &[]));
    assert_eq!(code, 0, "{err}");
    let file = cache.join("cache.sqlite");
    // The run closed its cache before exiting: the replies are in the file
    // itself, not left in a write-ahead log beside it.
    assert!(
        !cache.join("cache.sqlite-wal").exists(),
        "cache.sqlite-wal left after the run"
    );
    let mut bytes = std::fs::read(&file).unwrap();
    let page = 4096;
    let mid = (bytes.len() / page / 2) * page;
    bytes[mid..mid + page].fill(0xA5);
    std::fs::write(&file, &bytes).unwrap();
    let (code, out, err) = run(lmc()
        .args(["cache", "stats", "--json", "--cache-dir"])
        .arg(&cache));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("damaged"), "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kept = st["entries"].as_u64().unwrap();
    assert!(kept > 0 && kept < 40, "{out}");
    let (code, out, err) = run(lmc().args(["cache", "clear", "--cache-dir"]).arg(&cache));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("cleared {kept} ")), "{out}");
}

/// Make `path` immutable (root ignores permission bits, not this).
fn chattr(flag: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn read_only_cache_replays_offline_with_a_warning() {
    let p = SentiProject::new(5);
    let stub = ok_stub();
    let cache = p.path("cache");
    let (code, _, err) = run(&mut eval(&p, &stub.url(), &cache, &[]));
    assert_eq!(code, 0, "{err}");
    let file = cache.join("cache.sqlite");
    let is_root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
    let locked = if is_root {
        chattr("+i", &file) && chattr("+i", &cache)
    } else {
        let mut perm = std::fs::metadata(&file).unwrap().permissions();
        perm.set_readonly(true);
        std::fs::set_permissions(&file, perm.clone()).unwrap();
        std::fs::set_permissions(&cache, perm).is_ok()
    };
    assert!(locked, "could not make the cache read-only");
    // Unlock even when an assertion fails, so the temp dir can be removed.
    struct Unlock<'a>(bool, [&'a Path; 2]);
    impl Drop for Unlock<'_> {
        fn drop(&mut self) {
            for f in self.1 {
                if self.0 {
                    chattr("-i", f);
                } else if let Ok(m) = std::fs::metadata(f) {
                    let mut perm = m.permissions();
                    #[allow(clippy::permissions_set_readonly_false)]
                    perm.set_readonly(false);
                    let _ = std::fs::set_permissions(f, perm);
                }
            }
        }
    }
    let _unlock = Unlock(is_root, [&cache, &file]);
    // Confirm it really is unwritable for this process.
    assert!(std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .is_err());
    let (code, out, err) = run(&mut eval(&p, &stub.url(), &cache, &["--offline", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["mean"], 1.0, "{out}");
    assert!(err.contains("will not be recorded"), "{err}");
    // A read-write run works too: hits replay, nothing is written.
    let (code, _, err) = run(&mut eval(&p, &stub.url(), &cache, &[]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(stub.requests(), 5);
}

#[test]
fn zero_and_impossible_rate_limits_exit_2_quickly() {
    let p = SentiProject::new(2);
    let stub = ok_stub();
    let cache = p.path("cache");
    for (flag, value, needle) in [
        ("--rpm", "0", "rpm"),
        ("--tpm", "0", "tpm"),
        ("--tpm", "100", "100"),
    ] {
        let t = Instant::now();
        let (code, _, err) = run(&mut eval(&p, &stub.url(), &cache, &[flag, value]));
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(err.contains(needle), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    // tpm 100 against max_tokens 512: both numbers named.
    let (_, _, err) = run(&mut eval(&p, &stub.url(), &cache, &["--tpm", "100"]));
    assert!(err.contains("512"), "{err}");
    // A TPM above max_tokens but below what the prompt needs: an error
    // naming both numbers, per request, not a hang.
    let t = Instant::now();
    let (_, out, err) = run(&mut eval(
        &p,
        &stub.url(),
        &cache,
        &["--tpm", "120", "--max-tokens", "100", "--json"],
    ));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        out.contains("tokens-per-minute limit") && out.contains("120"),
        "{out}\n{err}"
    );
    assert_eq!(stub.requests(), 0);

    // From the program file: located.
    let prog = PROGRAM.replace("metric:", "lm:\n  rpm: 0\nmetric:");
    let q = SentiProject::with_program(1, &prog);
    let (code, _, err) = run(&mut eval(&q, &stub.url(), &q.path("cache"), &[]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("prog.yaml:") && err.contains("lm.rpm"),
        "{err}"
    );
    let line = PROGRAM
        .lines()
        .position(|l| l.starts_with("metric:"))
        .unwrap()
        + 2;
    assert!(err.contains(&format!(":{line}:")), "line {line}: {err}");

    // From lmc.yaml: located too.
    std::fs::write(q.path("lmc.yaml"), "program: prog.yaml\nlm:\n  tpm: 0\n").unwrap();
    std::fs::write(q.path("prog.yaml"), PROGRAM).unwrap();
    let (code, _, err) = run(lmc()
        .arg("eval")
        .current_dir(q.dir.path())
        .args(["--provider", "openai", "--model", "stub", "--base-url"])
        .arg(stub.url())
        .arg("--quiet"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("lmc.yaml:3:") && err.contains("lm.tpm"),
        "{err}"
    );
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

fn spider_db(dir: &Path) -> PathBuf {
    let src = crate::support::root()
        .join("datasets/spider/database/concert_singer/concert_singer.sqlite");
    let dst = dir.join("concert_singer.sqlite");
    std::fs::copy(&src, &dst).expect("copy db");
    dst
}

#[test]
fn sql_tool_and_metric_refuse_huge_values_without_allocating_them() {
    use lmc::metric::{Metric, MetricContext};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let db = spider_db(dir.path());
    let before = peak_rss_mib();

    let mut config = std::collections::BTreeMap::new();
    config.insert("path".to_string(), json!(db.to_string_lossy()));
    let spec = lmc::program::ToolSpec {
        name: "db".into(),
        kind: "sqlite".into(),
        config,
    };
    let tb = lmc::tools::Toolbox::open_specs(&[spec]).expect("open tool");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    for sql in [
        "SELECT randomblob(900000000)",
        "SELECT length(randomblob(900000000))",
        "SELECT hex(randomblob(12000000))",
        "SELECT group_concat(hex(randomblob(1000000))) FROM \
         (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100) SELECT x FROM c)",
    ] {
        let o = rt.block_on(tb.call("db", &json!({"sql": sql})));
        assert!(o.is_error, "{sql}: {}", o.observation);
        // The cap refuses the value; on a heavily loaded machine the
        // time limit may stop the query first, which is also a bounded
        // refusal (the memory bound is asserted below either way).
        assert!(
            (o.observation.contains("cap") && o.observation.contains("max_value_bytes"))
                || o.observation.contains("time limit"),
            "{sql}: {}",
            o.observation
        );
    }
    // Ordinary queries still work, and a smaller value is fine.
    let o = rt.block_on(tb.call(
        "db",
        &json!({"sql": "SELECT length(randomblob(1000000)) AS n"}),
    ));
    assert!(
        !o.is_error && o.observation.contains("1000000"),
        "{}",
        o.observation
    );

    let m = Metric::from_spec(
        &json!({"type": "sql_execution", "field": "sql", "database": db}),
        &crate::support::root(),
    )
    .unwrap();
    let ex = lmc::data::Example {
        index: 0,
        row: 1,
        inputs: json!({"question": "q"}).as_object().unwrap().clone(),
        expected: json!({"sql": "SELECT count(*) FROM singer"})
            .as_object()
            .unwrap()
            .clone(),
        extra: Default::default(),
    };
    let pred = json!({"sql": "SELECT randomblob(900000000)"});
    let s = rt
        .block_on(m.score(&ex, pred.as_object().unwrap(), &MetricContext::default()))
        .unwrap();
    assert_eq!(s.score, 0.0);
    let fb = s.feedback.unwrap_or_default();
    assert!(fb.contains("max_value_bytes"), "{fb}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    if let (Some(b), Some(a)) = (before, peak_rss_mib()) {
        // 900 MB requested; the caps keep the whole test far below.
        assert!(a < b + 300, "peak RSS grew from {b} to {a} MiB");
    }
}
