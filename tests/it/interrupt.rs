//! Graceful interruption through the real binary (issue #11): a first
//! SIGINT/SIGTERM mid-eval stops issuing examples, lets those in flight
//! finish, writes every requested report marked incomplete and exits 130;
//! a re-run asks the LM only for what did not finish; a second signal
//! aborts at once; the grace period bounds the wait for a stuck server;
//! `lmc run` over JSONL stops the same way; a run stopped by `--max-errors`
//! carries the same incomplete marking without claiming an interrupt.
//!
//! Timing never rests on sleeps: signals are sent once the stub has seen a
//! given number of requests, or once lmc said on stderr that it is
//! stopping, and every wait has a generous deadline.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(super) use crate::support::senti::label;
use crate::support::senti::{reply, row_of, SentiProject};
use crate::support::stub::{StubReply, StubServer};

const TOTAL: usize = 40;
/// Generous: the machine running the tests may be very busy.
pub(super) const DEADLINE: Duration = Duration::from_secs(120);

/// A stub answering every row right after `latency`, recording the rows
/// it was asked about.
pub(super) fn stub(latency: Duration) -> (StubServer, Arc<Mutex<Vec<usize>>>) {
    let rows = Arc::new(Mutex::new(Vec::new()));
    let seen = rows.clone();
    let s = StubServer::builder().latency(latency).start(move |req| {
        let row = row_of(req);
        seen.lock().unwrap().push(row);
        StubReply::Ok(reply(label(row)))
    });
    (s, rows)
}

/// `lmc <sub>` on a `TOTAL`-row sentiment project against `stub`, with
/// the project's one cache directory.
fn command(p: &SentiProject, sub: &str, stub: &StubServer) -> Command {
    let mut c = p.command(sub, &stub.url(), &p.path("cache"));
    c.args(["--concurrency", "2"])
        .env_remove("LMC_INTERRUPT_GRACE");
    c
}

/// The eval with every report asked for; `--json` goes to `out.json`.
fn eval_with_reports(p: &SentiProject, stub: &StubServer) -> Command {
    let mut c = command(p, "eval", stub);
    c.arg("--quiet")
        .args(["--min-score", "0.5"])
        .arg("--junit")
        .arg(p.path("out.xml"))
        .arg("--results")
        .arg(p.path("r.jsonl"))
        .arg("--markdown")
        .arg(p.path("out.md"))
        .arg("--html")
        .arg(p.path("out.html"))
        .arg("--json")
        .stdout(std::fs::File::create(p.path("out.json")).unwrap());
    c
}

/// A running lmc whose stderr is collected as it arrives.
pub(super) struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    pub(super) fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lmc");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running { child, stderr }
    }

    pub(super) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until `cond` holds; fail if lmc exits first or time runs out.
    pub(super) fn wait_for(&mut self, what: &str, cond: impl Fn(&Running) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("lmc exited ({status}) before {what}:\n{}", self.stderr());
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(super) fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Wait for the exit within `limit`; returns (code, seconds taken).
    pub(super) fn exit_code(mut self, limit: Duration) -> (i32, f64, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread drain what is left.
                std::thread::sleep(Duration::from_millis(100));
                let code = status.code().unwrap_or(-1);
                return (code, start.elapsed().as_secs_f64(), self.stderr());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("lmc still running after {limit:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(super) fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} not JSON ({e}):\n{text}", path.display()))
}

/// (testcases, `<error>`s, whether a property `complete=false` is present),
/// failing on any XML error.
fn junit_facts(xml: &str) -> (usize, usize, bool) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let (mut cases, mut errors, mut incomplete) = (0, 0, false);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.name().as_ref() {
                "testcase" => cases += 1,
                "error" => errors += 1,
                "property" => {
                    let attr = |k: &str| {
                        e.attributes()
                            .flatten()
                            .find(|a| a.key.as_ref() == k)
                            .map(|a| a.value.to_string())
                    };
                    if attr("name").as_deref() == Some("complete") {
                        incomplete = attr("value").as_deref() == Some("false");
                    }
                }
                _ => {}
            },
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("invalid JUnit XML: {e}\n{xml}"),
        }
    }
    (cases, errors, incomplete)
}

#[test]
fn sigint_mid_eval_writes_partial_reports_exits_130_and_a_rerun_resumes() {
    let p = SentiProject::new(TOTAL);
    let (slow, _) = stub(Duration::from_millis(250));
    let mut job = Running::spawn(&mut eval_with_reports(&p, &slow));
    job.wait_for("6 requests", |_| slow.requests() >= 6);
    job.signal("INT");
    let (code, secs, err) = job.exit_code(DEADLINE);
    // 130 wins over the --min-score gate, which would pass on these answers.
    assert_eq!(code, 130, "{err}");
    assert!(secs < 60.0, "took {secs:.1} s to stop");
    assert!(err.contains("SIGINT: stopping"), "{err}");
    assert!(err.contains("interrupted (SIGINT) after"), "{err}");
    assert!(err.contains("re-run the same command to resume"), "{err}");
    assert!(err.contains("out.xml") && err.contains("r.jsonl"), "{err}");

    let report = read_json(&p.path("out.json"));
    assert_eq!(report["complete"], Value::Bool(false), "{report}");
    assert_eq!(report["interrupted"], Value::Bool(true));
    assert_eq!(report["examples_total"].as_u64(), Some(TOTAL as u64));
    let done = report["examples_done"].as_u64().unwrap() as usize;
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), done);
    assert_eq!(report["summary"]["n"].as_u64(), Some(done as u64));
    // Examples 1..=4 had answered before the 6th request could start, and
    // the two in flight were let finish (250 ms, well inside the grace).
    assert!((4..TOTAL).contains(&done), "done = {done}");
    assert_eq!(
        done,
        slow.requests(),
        "every example started was let finish"
    );
    assert!(
        report.get("gates").is_none(),
        "no gate runs on a partial report"
    );
    assert!(results.iter().all(|r| r["score"].as_f64() == Some(1.0)));

    let jsonl = std::fs::read_to_string(p.path("r.jsonl")).unwrap();
    let kept_rows: HashSet<u64> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSONL line")["row"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(kept_rows.len(), done);

    let xml = std::fs::read_to_string(p.path("out.xml")).unwrap();
    let (cases, errors, incomplete) = junit_facts(&xml);
    assert_eq!(
        (cases, errors),
        (done + 1, 1),
        "one erroring 'incomplete run' case:\n{xml}"
    );
    assert!(incomplete && xml.contains("type=\"incomplete\""), "{xml}");
    let md = std::fs::read_to_string(p.path("out.md")).unwrap();
    assert!(
        md.contains("**Incomplete run**: interrupted (SIGINT)"),
        "{md}"
    );
    let html = std::fs::read_to_string(p.path("out.html")).unwrap();
    assert!(html.contains("<b>Incomplete run</b>: interrupted (SIGINT)"));

    // The re-run, against a fresh stub, asks only for what did not finish.
    let (fresh, rows) = stub(Duration::ZERO);
    let out = command(&p, "eval", &fresh)
        .args(["--quiet", "--json", "--min-score", "0.5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let full: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(full["complete"], Value::Bool(true));
    assert_eq!(full["interrupted"], Value::Bool(false));
    assert_eq!(full["summary"]["n"].as_u64(), Some(TOTAL as u64));
    let asked: Vec<usize> = rows.lock().unwrap().clone();
    assert_eq!(asked.len(), TOTAL - done, "asked again: {asked:?}");
    assert!(
        asked.iter().all(|r| !kept_rows.contains(&(*r as u64))),
        "finished rows were requested again: {asked:?} vs {kept_rows:?}"
    );
}

#[test]
fn sigterm_is_a_graceful_stop_too() {
    let p = SentiProject::new(TOTAL);
    let (slow, _) = stub(Duration::from_millis(250));
    let mut job = Running::spawn(&mut eval_with_reports(&p, &slow));
    job.wait_for("4 requests", |_| slow.requests() >= 4);
    job.signal("TERM");
    let (code, _, err) = job.exit_code(DEADLINE);
    assert_eq!(code, 130, "{err}");
    assert!(err.contains("interrupted (SIGTERM)"), "{err}");
    let report = read_json(&p.path("out.json"));
    assert_eq!(report["complete"], Value::Bool(false));
    assert_eq!(report["stop_reason"], "interrupted (SIGTERM)");
    assert!(p.path("out.xml").exists() && p.path("r.jsonl").exists());

    // A partial report is no baseline: it would gate on a subset.
    let (fresh, _) = stub(Duration::ZERO);
    let out = command(&p, "eval", &fresh)
        .arg("--quiet")
        .arg("--baseline")
        .arg(p.path("out.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("stopped early"), "{stderr}");
    assert_eq!(fresh.requests(), 0, "refused before any LM call");
}

/// Run `cmd` with a grace period long enough to wait for `stuck`'s
/// replies, press Ctrl-C once two requests are in flight and again once the
/// first was seen (signals sent back to back may be merged); the run must
/// abort at once with 130 and say so.
pub(super) fn sigint_twice(cmd: &mut Command, stuck: &StubServer) {
    cmd.env("LMC_INTERRUPT_GRACE", "300");
    let mut job = Running::spawn(cmd);
    job.wait_for("2 requests", |_| stuck.requests() >= 2);
    job.signal("INT");
    job.wait_for("the first SIGINT to be handled", |r| {
        r.stderr().contains("SIGINT: stopping")
    });
    job.signal("INT");
    let (code, secs, err) = job.exit_code(DEADLINE);
    assert_eq!(code, 130, "{err}");
    assert!(secs < 60.0, "a second Ctrl-C must not wait ({secs:.1} s)");
    assert!(err.contains("SIGINT again: aborting at once"), "{err}");
}

#[test]
fn a_second_sigint_aborts_at_once() {
    let p = SentiProject::new(TOTAL);
    // Replies that never come in time, and a grace period that would wait
    // for them: only the second signal can end this run quickly.
    let (stuck, _) = stub(Duration::from_secs(600));
    sigint_twice(&mut eval_with_reports(&p, &stuck), &stuck);
    assert!(!p.path("out.xml").exists(), "an abort writes no report");
}

#[test]
fn the_grace_period_bounds_the_wait_for_in_flight_calls() {
    let p = SentiProject::new(TOTAL);
    let (stuck, _) = stub(Duration::from_secs(600));
    let mut cmd = eval_with_reports(&p, &stuck);
    cmd.env("LMC_INTERRUPT_GRACE", "1");
    let mut job = Running::spawn(&mut cmd);
    job.wait_for("2 requests", |_| stuck.requests() >= 2);
    job.signal("INT");
    let (code, secs, err) = job.exit_code(DEADLINE);
    assert_eq!(code, 130, "{err}");
    assert!(secs < 60.0, "in-flight calls were waited for ({secs:.1} s)");
    assert!(err.contains("waiting up to 1 s for 2 in flight"), "{err}");
    let report = read_json(&p.path("out.json"));
    assert_eq!(report["complete"], Value::Bool(false));
    assert_eq!(report["examples_done"].as_u64(), Some(0));
    assert_eq!(stuck.requests(), 2, "no example started after the signal");
    let (cases, errors, _) = junit_facts(&std::fs::read_to_string(p.path("out.xml")).unwrap());
    assert_eq!((cases, errors), (1, 1));
}

#[test]
fn run_over_jsonl_stops_after_the_input_in_flight() {
    let p = SentiProject::new(TOTAL);
    let (slow, _) = stub(Duration::from_millis(250));
    let mut cmd = command(&p, "run", &slow);
    cmd.arg("--json")
        .arg("--trace")
        .arg(p.path("trace.jsonl"))
        .stdout(std::fs::File::create(p.path("run.jsonl")).unwrap());
    let input: String = (1..=TOTAL)
        .map(|i| format!("{{\"sentence\": \"review number {i}\"}}\n"))
        .collect();
    std::fs::write(p.path("in.jsonl"), input).unwrap();
    cmd.stdin(std::fs::File::open(p.path("in.jsonl")).unwrap());
    // `Running::spawn` would replace stdin; spawn by hand.
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn lmc");
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let mut pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        sink.lock().unwrap().push_str(&s);
    });
    let mut job = Running { child, stderr };
    job.wait_for("3 requests", |_| slow.requests() >= 3);
    job.signal("INT");
    let (code, _, err) = job.exit_code(DEADLINE);
    assert_eq!(code, 130, "{err}");
    let out = std::fs::read_to_string(p.path("run.jsonl")).unwrap();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    // Inputs run one at a time: the third was in flight and finished.
    assert!((3..TOTAL).contains(&lines.len()), "{} lines", lines.len());
    assert_eq!(
        lines.len(),
        slow.requests(),
        "no input started after the signal"
    );
    assert!(lines.iter().all(|l| l["outputs"]["sentiment"].is_string()));
    assert!(
        err.contains(&format!(
            "interrupted (SIGINT): {} of {TOTAL} inputs done",
            lines.len()
        )),
        "{err}"
    );
    // The trace was flushed: it holds the steps of every finished input.
    let trace = std::fs::read_to_string(p.path("trace.jsonl")).unwrap();
    let runs: HashSet<u64> = trace
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("trace line")["run"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(runs.len(), lines.len(), "{trace}");
}

#[test]
fn a_run_stopped_by_max_errors_is_marked_incomplete_but_not_interrupted() {
    let p = SentiProject::new(TOTAL);
    let garbage = StubServer::start(|_| StubReply::Ok("no structure at all".into()));
    let out = command(&p, "eval", &garbage)
        .args(["--quiet", "--json", "--max-errors", "2", "--junit"])
        .arg(p.path("out.xml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["complete"], Value::Bool(false));
    assert_eq!(report["interrupted"], Value::Bool(false));
    assert_eq!(
        report["stop_reason"],
        "stopped: more than 2 failed examples"
    );
    let done = report["examples_done"].as_u64().unwrap() as usize;
    assert!((3..TOTAL).contains(&done), "done = {done}");
    let (cases, errors, incomplete) =
        junit_facts(&std::fs::read_to_string(p.path("out.xml")).unwrap());
    assert!(incomplete);
    assert_eq!((cases, errors), (done + 1, done + 1));
}
