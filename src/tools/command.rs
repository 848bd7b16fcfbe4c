//! The `command` tool: an external program with a JSON contract.
//!
//! lmc writes the call's argument object as one JSON document to the
//! program's stdin and reads the observation from its stdout (trimmed). A
//! non-zero exit status, a timeout or a failure to start is an error
//! observation carrying stderr. The tool opens only when its entry says
//! `enabled: true` (the author's intent) *and* the person running lmc
//! allowed processes outside the file (`--allow-exec`, docs/security.md):
//! the author of a file under review cannot grant that to themself.

use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

use super::{cfg_str, cfg_u64, ToolError, ToolOutcome};
use crate::program::ToolSpec;

pub struct CommandTool {
    argv: Vec<String>,
    cwd: Option<String>,
    timeout: Duration,
    description: String,
    args_schema: Value,
}

impl CommandTool {
    pub fn open(spec: &ToolSpec) -> Result<Self, ToolError> {
        let argv: Vec<String> = match spec.config.get("command") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            _ => Vec::new(),
        };
        if argv.is_empty() {
            return Err(ToolError::Config {
                tool: spec.name.clone(),
                message: "missing `command` (a list: program and its arguments)".into(),
            });
        }
        let enabled = spec
            .config
            .get("enabled")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if !enabled {
            return Err(ToolError::CommandDisabled {
                tool: spec.name.clone(),
                command: argv.join(" "),
            });
        }
        Ok(CommandTool {
            description: cfg_str(spec, "description")
                .unwrap_or_else(|| format!("Runs `{}`.", argv.join(" "))),
            args_schema: spec
                .config
                .get("args")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"})),
            cwd: cfg_str(spec, "cwd"),
            timeout: Duration::from_millis(cfg_u64(spec, "timeout_ms", 10_000)?.max(1)),
            argv,
        })
    }

    pub fn description(&self) -> String {
        self.description.clone()
    }

    pub fn args_schema(&self) -> Value {
        self.args_schema.clone()
    }

    pub async fn call(&self, args: &Value) -> ToolOutcome {
        // The runner's permission (docs/security.md), checked again here so
        // that no path can start a process the CLI did not allow.
        if !crate::trust::exec::permitted() {
            return ToolOutcome::error(crate::trust::exec::REFUSED);
        }
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return ToolOutcome::error(format!("cannot start `{}`: {e}", self.argv[0])),
        };
        if let Some(mut stdin) = child.stdin.take() {
            let payload = args.to_string();
            // A program that ignores stdin may close it early; that is fine.
            let _ = stdin.write_all(payload.as_bytes()).await;
            let _ = stdin.shutdown().await;
        }
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Err(_) => ToolOutcome::error(format!(
                "`{}` timed out after {} ms",
                self.argv[0],
                self.timeout.as_millis()
            )),
            Ok(Err(e)) => ToolOutcome::error(format!("`{}` failed: {e}", self.argv[0])),
            Ok(Ok(out)) => {
                let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if out.status.success() {
                    ToolOutcome::ok(stdout)
                } else {
                    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    ToolOutcome::error(format!(
                        "`{}` exited with {}: {}",
                        self.argv[0],
                        out.status,
                        if stderr.is_empty() { stdout } else { stderr }
                    ))
                }
            }
        }
    }
}
