//! `command`: an external program scores each example, the way users plug
//! in their own (usually Python) metrics without writing Rust.
//!
//! Protocol: the program reads one JSON object per line on stdin,
//! `{"inputs": {...}, "expected": {...}, "outputs": {...}, "extra": {...}}`,
//! and answers each with one line: `{"score": 0.8, "feedback": "..."}` or a
//! bare number. By default it is started once per example (stdin closed
//! after the line, so a script may simply `json.load(sys.stdin)`); with
//! `keep_running: true` one process serves every example in turn (its
//! interpreter starts once), and is restarted if it exits. Every error names
//! the command and shows the end of its stderr.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{short, MetricError, Score};
use crate::data::Example;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum CommandLine {
    Args(Vec<String>),
    /// Split on whitespace; use the list form for arguments with spaces.
    Line(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandOptions {
    command: CommandLine,
    #[serde(default)]
    keep_running: bool,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    /// Processes running at once (per-example mode); default: CPU count.
    #[serde(default)]
    max_parallel: Option<usize>,
}

fn default_timeout() -> u64 {
    60_000
}

/// Scripts larger than this are not hashed into the metric's content hash.
const MAX_HASHED_FILE: u64 = 16 << 20;

#[derive(Clone)]
pub(crate) struct CommandMetric {
    argv: Vec<String>,
    cwd: PathBuf,
    keep_running: bool,
    timeout: Duration,
    /// The long-running process (keep_running), one example at a time.
    running: Arc<tokio::sync::Mutex<Option<Running>>>,
    /// Bounds per-example processes: an eval at concurrency 256 must not
    /// start 256 interpreters at once.
    slots: Arc<tokio::sync::Semaphore>,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl CommandMetric {
    pub fn new(o: CommandOptions, base_dir: &Path) -> Result<Self, MetricError> {
        let mut argv = match o.command {
            CommandLine::Args(a) => a,
            CommandLine::Line(s) => s.split_whitespace().map(String::from).collect(),
        };
        if argv.is_empty() || argv[0].trim().is_empty() {
            return Err(MetricError::Spec("command: `command` is empty".into()));
        }
        // A program given by a bare file name (`lmc eval prog.yaml`) has
        // the empty path as its directory, which no process can start in.
        let base_dir = if base_dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base_dir
        };
        // `./score.py` means relative to the program file, not to wherever
        // lmc happens to be started.
        if argv[0].contains('/') && Path::new(&argv[0]).is_relative() {
            argv[0] = base_dir.join(&argv[0]).display().to_string();
        }
        Ok(CommandMetric {
            argv,
            cwd: base_dir.to_path_buf(),
            keep_running: o.keep_running,
            timeout: Duration::from_millis(o.timeout_ms.max(1)),
            running: Arc::new(tokio::sync::Mutex::new(None)),
            slots: Arc::new(tokio::sync::Semaphore::new(
                o.max_parallel
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| n.get()))
                    .max(1),
            )),
        })
    }

    /// Bytes of every argument that names a file (the script, its data), so
    /// that editing the script changes the metric's content hash.
    pub fn script_bytes(&self) -> Vec<Vec<u8>> {
        self.argv
            .iter()
            .map(|a| {
                let p = Path::new(a);
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    self.cwd.join(p)
                }
            })
            .filter(|p| {
                std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() <= MAX_HASHED_FILE)
            })
            .filter_map(|p| std::fs::read(p).ok())
            .collect()
    }

    fn label(&self) -> String {
        format!("metric command `{}`", self.argv.join(" "))
    }

    fn err(&self, m: impl std::fmt::Display) -> MetricError {
        MetricError::Score(format!("{}: {m}", self.label()))
    }

    /// The process to start, if the runner allowed processes at all
    /// (docs/security.md; the CLI checked and located this earlier, this is
    /// the second line).
    fn command(&self) -> Result<Command, MetricError> {
        if !crate::trust::exec::permitted() {
            return Err(self.err(crate::trust::exec::REFUSED));
        }
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..])
            .current_dir(&self.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Ok(c)
    }

    pub async fn score(
        &self,
        ex: &Example,
        outputs: &Map<String, Value>,
    ) -> Result<Score, MetricError> {
        let mut line = json!({
            "inputs": ex.inputs,
            "expected": ex.expected,
            "outputs": outputs,
            "extra": ex.extra,
        })
        .to_string();
        line.push('\n');
        let reply = if self.keep_running {
            self.ask_running(&line).await?
        } else {
            self.ask_once(&line).await?
        };
        parse_reply(&reply).map_err(|m| self.err(m))
    }

    async fn ask_once(&self, line: &str) -> Result<String, MetricError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| self.err("process slots closed"))?;
        let mut child = self
            .command()?
            .spawn()
            .map_err(|e| self.err(format!("cannot start: {e}")))?;
        let mut stdin = child.stdin.take().ok_or_else(|| self.err("no stdin"))?;
        let run = async {
            // A script that exits without reading stdin is fine: ignore EPIPE
            // and judge it by what it printed.
            let _ = stdin.write_all(line.as_bytes()).await;
            drop(stdin);
            child.wait_with_output().await
        };
        let out = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| self.err(format!("no answer within {} ms", self.timeout.as_millis())))?
            .map_err(|e| self.err(e))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(self.err(format!("{}{}", out.status, stderr_tail(&stderr))));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_string)
            .ok_or_else(|| self.err(format!("printed nothing{}", stderr_tail(&stderr))))
    }

    fn spawn_running(&self) -> Result<Running, MetricError> {
        let mut child = self
            .command()?
            .spawn()
            .map_err(|e| self.err(format!("cannot start: {e}")))?;
        let stdin = child.stdin.take().ok_or_else(|| self.err("no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| self.err("no stdout"))?);
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(mut err_pipe) = child.stderr.take() {
            // Drain stderr so a chatty script never blocks on a full pipe;
            // keep the end of it for error messages.
            let keep = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err_pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = keep.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        let len = s.len();
                        if len > 8000 {
                            let cut = s
                                .char_indices()
                                .map(|(i, _)| i)
                                .find(|i| *i >= len - 4000)
                                .unwrap_or(0);
                            s.drain(..cut);
                        }
                    }
                }
            });
        }
        Ok(Running {
            child,
            stdin,
            stdout,
            stderr,
        })
    }

    async fn ask_running(&self, line: &str) -> Result<String, MetricError> {
        let mut slot = self.running.lock().await;
        // Restart a process that exited since the last example.
        if let Some(r) = slot.as_mut() {
            if !matches!(r.child.try_wait(), Ok(None)) {
                *slot = None;
            }
        }
        if slot.is_none() {
            *slot = Some(self.spawn_running()?);
        }
        let Some(r) = slot.as_mut() else {
            return Err(self.err("could not start"));
        };
        let exchange = async {
            r.stdin.write_all(line.as_bytes()).await?;
            r.stdin.flush().await?;
            let mut reply = String::new();
            loop {
                reply.clear();
                if r.stdout.read_line(&mut reply).await? == 0 {
                    return Ok(None);
                }
                if !reply.trim().is_empty() {
                    return Ok(Some(reply.trim().to_string()));
                }
            }
        };
        let result: Result<std::io::Result<Option<String>>, _> =
            tokio::time::timeout(self.timeout, exchange).await;
        let tail = || stderr_tail(&r.stderr.lock().map(|s| s.clone()).unwrap_or_default());
        let outcome = match result {
            Ok(Ok(Some(reply))) => return Ok(reply),
            Ok(Ok(None)) => {
                // Give the exit status a moment to be reaped for the message.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let status = match r.child.try_wait() {
                    Ok(Some(s)) => format!("exited ({s})"),
                    _ => "closed its stdout".into(),
                };
                self.err(format!("{status} before answering{}", tail()))
            }
            Ok(Err(e)) => self.err(format!("{e}{}", tail())),
            Err(_) => self.err(format!(
                "no answer within {} ms{}",
                self.timeout.as_millis(),
                tail()
            )),
        };
        // The process is in an unknown state: drop it (killing it) so the
        // next example starts a fresh one.
        *slot = None;
        Err(outcome)
    }
}

fn stderr_tail(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = t.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("\n");
    format!("; stderr: {}", short(&tail, 1000))
}

/// `{"score": x, "feedback": "..."}`, a bare number, or true/false.
fn parse_reply(reply: &str) -> Result<Score, String> {
    let bad = || {
        format!(
            "wrote `{}`; expected one JSON line like {{\"score\": 0.5, \"feedback\": \"...\"}} or a bare number",
            short(reply, 200)
        )
    };
    let v: Value = serde_json::from_str(reply.trim()).map_err(|_| bad())?;
    let (score, feedback) = match &v {
        Value::Number(n) => (n.as_f64(), None),
        Value::Bool(b) => (Some(if *b { 1.0 } else { 0.0 }), None),
        Value::Object(o) => {
            let s = match o.get("score") {
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
                _ => return Err(format!("{}: no numeric `score`", bad())),
            };
            let fb = match o.get("feedback") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.trim().is_empty()),
                Some(other) => Some(other.to_string()),
            };
            (s, fb)
        }
        _ => (None, None),
    };
    let score = score.ok_or_else(bad)?;
    if !(0.0..=1.0).contains(&score) {
        return Err(format!("score {score} is outside 0..=1"));
    }
    Ok(Score::new(score, feedback))
}

#[cfg(test)]
pub(crate) fn parse_reply_for_test(reply: &str) -> Result<Score, String> {
    parse_reply(reply)
}
