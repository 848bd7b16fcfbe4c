//! Processes: lmc starts none unless the runner allowed it.
//!
//! A program can ask for processes in three places: a `command` metric
//! (`metric:`, alone or in a weighted list), a `command` tool (`tools:`),
//! and a refine/best_of_n reward that is a `command` metric. A `--metric`
//! on the command line can too. [`requests`] finds every one of them in a
//! lowered program before anything runs, and [`check`] refuses the run
//! (exit 2, every request listed with its file:line:col) unless a grant
//! exists. A `command` tool's own `enabled: true` is written by the same
//! author as the command, so it no longer counts as permission.
//!
//! As a second line, the spawn sites themselves ask [`permitted`]: the CLI
//! calls [`deny`] at start-up and [`permit`] only after [`check`] passed
//! with a grant, so a process request this scan missed still cannot start.
//! Library callers that never call [`deny`] keep the old behaviour.

use serde_json::Value;
use std::sync::atomic::{AtomicU8, Ordering};

use super::{Declared, SourceMap, Trust};
use crate::diag::{Diagnostic, Diagnostics};
use crate::program::{NodeKind, Program, RewardSpec};

/// A process some file (or `--metric`) asks lmc to start.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRequest {
    /// `metric command`, `command tool `shell``, ...
    pub what: String,
    /// The command line as written.
    pub command: String,
    pub at: Declared,
}

/// Every process the program would start, with where each was declared.
pub fn requests(program: &Program, source: &SourceMap) -> Vec<ExecRequest> {
    let mut out = Vec::new();
    if let Some(m) = &program.metric {
        metric_requests(m, "metric", "metric", source, &mut out);
    }
    for t in &program.tools {
        if t.kind == "command" {
            let path = format!("tools.{}.command", t.name);
            out.push(ExecRequest {
                what: format!("command tool `{}`", t.name),
                command: command_text(t.config.get("command")),
                at: source.at(&path),
            });
        }
    }
    for n in &program.nodes {
        if let NodeKind::Refine(crate::nodes::refine::Refine {
            reward: RewardSpec::Metric { metric, .. },
            ..
        }) = &n.kind
        {
            let path = format!("nodes.{}.reward.metric", n.name);
            let what = format!("reward of node `{}`", n.name);
            metric_requests(metric, &path, &what, source, &mut out);
        }
    }
    out
}

/// A `--metric` given on the command line (parsed the way the metric
/// parser does: JSON/YAML flow, or a shorthand that cannot be a command).
pub fn cli_metric_requests(spec: &str) -> Vec<ExecRequest> {
    let t = spec.trim();
    let mut out = Vec::new();
    if t.starts_with('{') || t.starts_with('[') {
        // JSON first, then YAML flow: the order `Metric::parse_cli` uses.
        let v = serde_json::from_str::<Value>(t)
            .ok()
            .or_else(|| crate::yaml::parse(t).ok().map(|d| d.root.to_json()));
        if let Some(v) = v {
            let map = SourceMap::new("--metric (command line)", "");
            metric_requests(&v, "", "metric", &map, &mut out);
        }
    }
    for r in &mut out {
        r.at = Declared {
            file: "--metric (command line)".into(),
            pos: None,
            path: String::new(),
        };
    }
    out
}

fn metric_requests(
    m: &Value,
    path: &str,
    what: &str,
    source: &SourceMap,
    out: &mut Vec<ExecRequest>,
) {
    match m {
        Value::Object(o)
            if o.get("type").and_then(Value::as_str).map(str::trim) == Some("command") =>
        {
            out.push(ExecRequest {
                what: format!("{what} `command`"),
                command: command_text(o.get("command")),
                at: source.at(&crate::yaml::join(path, "command")),
            });
        }
        Value::Array(items) => {
            for (i, it) in items.iter().enumerate() {
                metric_requests(it, &format!("{path}[{i}]"), what, source, out);
            }
        }
        _ => {}
    }
}

fn command_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Refuse `requests` unless the runner allowed processes. The error lists
/// every refused request (all at once, like program diagnostics) with the
/// ways to allow them.
pub fn check(trust: &Trust, requests: &[ExecRequest]) -> Result<(), String> {
    if requests.is_empty() || trust.exec.is_some() {
        return Ok(());
    }
    let hint = format!(
        "lmc starts no process a file asks for unless you allow it; if you trust these files, pass --allow-exec, set {}=1, or put `allow_exec: true` in your user config ({}). Never allow it for files from an untrusted pull request",
        super::ENV_ALLOW_EXEC,
        trust.config_hint()
    );
    let diags: Vec<Diagnostic> = requests
        .iter()
        .map(|r| {
            let mut d = Diagnostic::error(format!(
                "refused to run `{}` ({}): running processes is not allowed",
                r.command, r.what
            ))
            .at(r.at.pos)
            .path(r.at.path.clone())
            .hint(hint.clone());
            d.file = Some(r.at.file.clone().into());
            d
        })
        .collect();
    Err(Diagnostics(diags).to_string())
}

const UNSET: u8 = 0;
const DENIED: u8 = 1;
const PERMITTED: u8 = 2;
static POLICY: AtomicU8 = AtomicU8::new(UNSET);

/// Refuse every process from now on, until [`permit`] (the CLI's start-up).
pub fn deny() {
    POLICY.store(DENIED, Ordering::SeqCst);
}

/// Allow processes (after [`check`] passed with a grant).
pub fn permit() {
    POLICY.store(PERMITTED, Ordering::SeqCst);
}

/// Whether a spawn site may start a process now.
pub fn permitted() -> bool {
    POLICY.load(Ordering::SeqCst) != DENIED
}

/// The error a spawn site reports when [`permitted`] is false.
pub const REFUSED: &str =
    "refused: running processes is not allowed (pass --allow-exec or set LMC_ALLOW_EXEC=1)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::Grant;

    const PROG: &str = "name: t\ninputs: {q: str}\nnodes:\n  n: {kind: predict, signature: q -> a, inputs: {q: input.q}}\noutputs: {a: n.a}\ntools:\n  sh: {kind: command, command: [touch, x], enabled: true}\nmetric:\n  - {type: exact_match, field: a}\n  - {type: command, command: python3 m.py, weight: 2}\n";

    #[test]
    fn finds_metrics_and_tools_with_positions() {
        let p = crate::program::load_str(PROG, std::path::Path::new("t.yaml")).unwrap();
        let reqs = requests(&p, &SourceMap::new("t.yaml", PROG));
        let shown: Vec<String> = reqs
            .iter()
            .map(|r| format!("{} | {} | {}", r.what, r.command, r.at))
            .collect();
        assert_eq!(
            shown,
            vec![
                "metric `command` | python3 m.py | t.yaml:10:30 (metric[1].command)",
                "command tool `sh` | touch x | t.yaml:7:32 (tools.sh.command)",
            ]
        );
        let err = check(&Trust::default(), &reqs).unwrap_err();
        assert!(err.contains("refused to run `touch x`"), "{err}");
        assert!(err.contains("--allow-exec"), "{err}");
        let allowed = Trust {
            exec: Some(Grant::Flag("--allow-exec".into())),
            ..Default::default()
        };
        assert!(check(&allowed, &reqs).is_ok());
    }

    #[test]
    fn finds_a_command_reward_of_a_refine_node() {
        let src = "name: t\ninputs: {q: str}\nnodes:\n  n:\n    kind: refine\n    signature: q -> a\n    inputs: {q: input.q}\n    reward: {type: metric, field: a, expected: {value: x}, metric: {type: command, command: [sh, r.sh]}}\noutputs: {a: n.a}\n";
        let p = crate::program::load_str(src, std::path::Path::new("r.yaml")).unwrap();
        let reqs = requests(&p, &SourceMap::new("r.yaml", src));
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        assert_eq!(reqs[0].what, "reward of node `n` `command`");
        assert_eq!(reqs[0].command, "sh r.sh");
        assert_eq!(reqs[0].at.path, "nodes.n.reward.metric.command");
        assert_eq!(reqs[0].at.pos.map(|p| p.line), Some(8));
    }

    #[test]
    fn cli_metric_commands_are_found() {
        assert_eq!(cli_metric_requests("exact_match:answer"), vec![]);
        let r = cli_metric_requests("{type: command, command: [sh, -c, 'touch x']}");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].command, "sh -c touch x");
        let j = cli_metric_requests(r#"[{"type":"command","command":"sh x.sh"}]"#);
        assert_eq!(j.len(), 1);
    }
}
