//! The trust boundary through the real binary (issue #11, docs/security.md):
//! a program, artifact or `lmc.yaml` cannot make lmc start a process or send
//! an API key to a host the runner did not allow. Refusals exit 2, name what
//! was refused, where it was declared (file:line:col) and how to allow it;
//! the refused command never ran (the file it would create is absent) and
//! the refused key never reached the stub server (it records every
//! `Authorization` header it saw).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::stub::{StubReply, StubServer};
use crate::support::{lmc, run};

const ANSWER: &str = "[[ ## a ## ]]\nyes\n\n[[ ## completed ## ]]";

/// A stub answering `a: yes` that keeps every Authorization header it saw
/// (`None` for a request without one).
fn recording_stub() -> (StubServer, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let stub = StubServer::start(move |r| {
        s.lock().unwrap().push(r.authorization.clone());
        StubReply::Ok(ANSWER.into())
    });
    (stub, seen)
}

/// A directory with `prog.yaml` (`q -> a`, plus `extra` YAML appended) and a
/// two-row dataset.
fn project(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let prog = format!(
        "name: t\ninputs: {{q: str}}\nnodes:\n  n: {{kind: predict, signature: q -> a, inputs: {{q: input.q}}}}\noutputs: {{a: n.a}}\ndatasets: {{dev: dev.jsonl}}\n{extra}"
    );
    std::fs::write(dir.path().join("prog.yaml"), prog).unwrap();
    std::fs::write(
        dir.path().join("dev.jsonl"),
        "{\"q\": \"one\", \"a\": \"yes\"}\n{\"q\": \"two\", \"a\": \"yes\"}\n",
    )
    .unwrap();
    dir
}

/// `lmc eval prog.yaml` in `dir` against `stub`'s URL given on the command
/// line (a URL the runner chose, with no key).
fn eval(dir: &Path, stub: &StubServer) -> Command {
    let mut c = lmc();
    c.current_dir(dir)
        .args(["eval", "prog.yaml", "--quiet", "--json"])
        .args(["--provider", "openai", "--model", "stub", "--base-url"])
        .arg(stub.url())
        .env_remove("OPENAI_API_KEY");
    c
}

/// A metric that would create `marker` if it ran.
fn touch_metric(marker: &Path) -> String {
    format!(
        "metric: {{type: command, command: [python3, -c, \"open(r'{}', 'w').write('x'); print(1)\"]}}\n",
        marker.display()
    )
}

// ---------- processes ----------

#[test]
fn a_command_metric_is_refused_without_the_runners_permission() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("pwned");
    let dir = project(&touch_metric(&marker));
    let (stub, _) = recording_stub();
    let (code, _, err) = run(&mut eval(dir.path(), &stub));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused to run `python3 -c"), "{err}");
    // Where it was declared: the `command` value on line 7.
    assert!(err.contains("--> prog.yaml:7:34"), "{err}");
    assert!(err.contains("metric.command"), "{err}");
    assert!(
        err.contains("--allow-exec") && err.contains("LMC_ALLOW_EXEC=1"),
        "{err}"
    );
    assert!(!marker.exists(), "the refused command ran");
    assert_eq!(stub.requests(), 0, "nothing runs before the check");

    // Each of the three grants lets it run.
    let (code, _, err) = run(eval(dir.path(), &stub).arg("--allow-exec"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("note: the flag --allow-exec allows running processes: `python3 -c"),
        "{err}"
    );
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    let (code, _, err) = run(eval(dir.path(), &stub).env("LMC_ALLOW_EXEC", "1"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("note: $LMC_ALLOW_EXEC allows"), "{err}");
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    let cfg = marker_dir.path().join("config.yaml");
    std::fs::write(&cfg, "allow_exec: true\n").unwrap();
    let (code, _, err) = run(eval(dir.path(), &stub).env("LMC_CONFIG", &cfg));
    assert_eq!(code, 0, "{err}");
    assert!(marker.exists());
}

#[test]
fn an_lmc_yaml_in_the_repository_grants_nothing() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("pwned");
    let dir = project(&touch_metric(&marker));
    // A project file is part of the repository: it cannot allow anything.
    std::fs::write(dir.path().join("lmc.yaml"), "program: prog.yaml\n").unwrap();
    let (stub, _) = recording_stub();
    let mut c = lmc();
    c.current_dir(dir.path())
        .args(["eval", "--quiet", "--provider", "openai", "--model", "stub"])
        .arg("--base-url")
        .arg(stub.url());
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused to run"), "{err}");
    assert!(!marker.exists());
    // A bad grant is an error, not silently "no".
    let (code, _, err) = run(eval(dir.path(), &stub).env("LMC_ALLOW_EXEC", "maybe"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("LMC_ALLOW_EXEC"), "{err}");
    let cfg = marker_dir.path().join("config.yaml");
    std::fs::write(&cfg, "allow_exce: true\n").unwrap();
    let (code, _, err) = run(eval(dir.path(), &stub).env("LMC_CONFIG", &cfg));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("allow_exce"), "{err}");
    assert!(!marker.exists());
}

#[test]
fn a_command_given_with_metric_on_the_command_line_needs_the_grant_too() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("pwned");
    let dir = project("");
    let (stub, _) = recording_stub();
    let spec = format!(
        "{{\"type\": \"command\", \"command\": [\"python3\", \"-c\", \"open(r'{}', 'w'); print(1)\"]}}",
        marker.display()
    );
    let (code, _, err) = run(eval(dir.path(), &stub).args(["--metric", &spec]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--metric (command line)"), "{err}");
    assert!(!marker.exists());
    let (code, _, err) = run(eval(dir.path(), &stub).args(["--metric", &spec, "--allow-exec"]));
    assert_eq!(code, 0, "{err}");
    assert!(marker.exists());
}

#[test]
fn an_enabled_command_tool_is_not_enough() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("pwned");
    let dir = tempfile::tempdir().unwrap();
    let prog = format!(
        "name: t\ninputs: {{q: str}}\ntools:\n  sh: {{kind: command, enabled: true, command: [python3, -c, \"open(r'{}', 'w'); print('ran')\"]}}\nnodes:\n  call: {{kind: tool, tool: sh, inputs: {{q: input.q}}}}\noutputs: {{result: call.result}}\n",
        marker.display()
    );
    std::fs::write(dir.path().join("prog.yaml"), prog).unwrap();
    let mut c = lmc();
    c.current_dir(dir.path())
        .args(["run", "prog.yaml", "--input", "q=x"])
        .args([
            "--provider",
            "openai",
            "--model",
            "m",
            "--base-url",
            "http://127.0.0.1:9/v1",
        ]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("command tool `sh`"), "{err}");
    assert!(err.contains("--> prog.yaml:4:"), "{err}");
    assert!(err.contains("tools.sh.command"), "{err}");
    assert!(!marker.exists(), "the refused tool ran");
    let (code, out, err) = run(c.arg("--allow-exec"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ran"), "{out}");
    assert!(marker.exists());
}

/// Compile `dir`'s `prog.yaml` (labeled few-shot on `dev.jsonl`) against
/// `stub` into `prog.compiled.json`; its path and parsed JSON.
fn compile_artifact(dir: &Path, stub: &StubServer) -> (PathBuf, Value) {
    let mut c = lmc();
    c.current_dir(dir)
        .args([
            "compile",
            "prog.yaml",
            "--optimizer",
            "labeled_few_shot",
            "--quiet",
        ])
        .args(["--trainset", "dev.jsonl", "-o", "prog.compiled.json"])
        .args(["--provider", "openai", "--model", "stub", "--base-url"])
        .arg(stub.url());
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    let path = dir.join("prog.compiled.json");
    let art = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (path, art)
}

/// An artifact whose embedded program was edited to add a command (hash
/// recomputed, as an attacker would) is refused like the program itself,
/// with the position inside the embedded source.
#[test]
fn an_artifact_with_an_edited_embedded_command_is_refused() {
    let dir = project("metric: {type: exact_match, field: a}\n");
    let (stub, _) = recording_stub();
    let (path, mut art) = compile_artifact(dir.path(), &stub);
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("pwned");
    let source = art["program"]["source"].as_str().unwrap().replace(
        "metric: {type: exact_match, field: a}\n",
        &touch_metric(&marker),
    );
    art["program"]["content_hash"] = Value::from(hex::encode(Sha256::digest(source.as_bytes())));
    art["program"]["source"] = Value::from(source);
    std::fs::write(&path, serde_json::to_string_pretty(&art).unwrap()).unwrap();
    let mut c = lmc();
    c.current_dir(dir.path())
        .args([
            "eval",
            "prog.compiled.json",
            "--dataset",
            "dev.jsonl",
            "--quiet",
        ])
        .args(["--provider", "openai", "--model", "stub", "--base-url"])
        .arg(stub.url());
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused to run"), "{err}");
    assert!(
        err.contains("(embedded in prog.compiled.json):7:34"),
        "{err}"
    );
    assert!(!marker.exists());
}

/// Issue #11: `lmc eval prog.yaml` from the program's own directory gave
/// the command metric the empty path as its working directory.
#[test]
fn issue_11_a_command_metric_starts_for_a_bare_program_file_name() {
    let dir = project("metric: {type: command, command: [python3, ./score.py]}\n");
    std::fs::write(
        dir.path().join("score.py"),
        "import json, sys\nd = json.load(sys.stdin)\nprint(1 if d['outputs']['a'] == d['expected']['a'] else 0)\n",
    )
    .unwrap();
    let (stub, _) = recording_stub();
    let (code, out, err) = run(eval(dir.path(), &stub).arg("--allow-exec"));
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["summary"]["mean"], 1.0, "{out}");
    assert_eq!(report["summary"]["errors"], 0, "{out}");
    assert!(!out.contains("cannot start"), "{out}");
}

// ---------- credentials ----------

const SECRET: &str = "sk-test-very-secret-0123";

fn with_lm(dir: &Path, lm: &str) {
    let p = dir.join("prog.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}{lm}")).unwrap();
}

/// `lmc eval prog.yaml` with every LM setting from the program.
fn eval_program_lm(dir: &Path) -> Command {
    let mut c = lmc();
    c.current_dir(dir)
        .args(["eval", "prog.yaml", "--quiet", "--json"])
        .env("OPENAI_API_KEY", SECRET)
        .env("GH_SECRET_TOKEN", SECRET)
        .env("MY_LLM_KEY", SECRET)
        .env_remove("LMC_BASE_URL");
    c
}

fn host_of(stub: &StubServer) -> String {
    stub.url()
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string()
}

#[test]
fn a_program_cannot_send_a_well_known_key_to_its_own_host() {
    let dir = project("");
    let (stub, seen) = recording_stub();
    with_lm(
        dir.path(),
        &format!(
            "lm:\n  provider: openai\n  model: stub\n  base_urls: [{}]\n  api_key_env: OPENAI_API_KEY\n",
            stub.url()
        ),
    );
    let (code, out, err) = run(&mut eval_program_lm(dir.path()));
    assert_eq!(code, 2, "{err}");
    let host = host_of(&stub);
    assert!(
        err.contains(&format!(
            "refused to send the API key in `OPENAI_API_KEY` to {host}"
        )),
        "{err}"
    );
    assert!(
        err.contains("--> prog.yaml:11:16 (lm.api_key_env)"),
        "{err}"
    );
    assert!(err.contains("--> prog.yaml:10:14 (lm.base_urls)"), "{err}");
    assert!(err.contains(&format!("--allow-host {host}")), "{err}");
    assert!(!err.contains(SECRET) && !out.contains(SECRET));
    assert_eq!(stub.requests(), 0, "no request before the check");

    // Allowing the host is not enough: the runner must name the variable too.
    let (code, _, err) = run(eval_program_lm(dir.path()).args(["--allow-host", &host]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--api-key-env OPENAI_API_KEY"), "{err}");
    assert_eq!(stub.requests(), 0);
    // Both: the key goes there.
    let (code, _, err) = run(eval_program_lm(dir.path())
        .env("LMC_ALLOW_HOSTS", &host)
        .env("LMC_ALLOW_KEY_ENVS", "OPENAI_API_KEY"));
    assert_eq!(code, 0, "{err}");
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen
        .iter()
        .all(|a| a.as_deref() == Some(&format!("Bearer {SECRET}")[..])));
}

#[test]
fn a_program_cannot_read_an_arbitrary_variable_even_for_the_runners_host() {
    let dir = project("lm: {api_key_env: GH_SECRET_TOKEN}\n");
    let (stub, seen) = recording_stub();
    // The runner chose the URL; the file chose the variable.
    let mut c = eval_program_lm(dir.path());
    c.args(["--provider", "openai", "--model", "stub", "--base-url"])
        .arg(stub.url());
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`GH_SECRET_TOKEN`"), "{err}");
    assert!(err.contains("a file chose the variable"), "{err}");
    assert!(err.contains("prog.yaml:7:19 (lm.api_key_env)"), "{err}");
    assert!(err.contains("--api-key-env GH_SECRET_TOKEN"), "{err}");
    assert_eq!(stub.requests(), 0);
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn an_lmc_yaml_cannot_redirect_the_key_either() {
    let dir = project("");
    let (stub, _) = recording_stub();
    std::fs::write(
        dir.path().join("lmc.yaml"),
        format!(
            "program: prog.yaml\nlm:\n  provider: openai\n  model: stub\n  base_urls: [{}]\n  api_key_env: MY_LLM_KEY\n",
            stub.url()
        ),
    )
    .unwrap();
    // The runner named the variable, but the host is the project file's.
    let mut c = eval_program_lm(dir.path());
    c.args(["--allow-key-env", "MY_LLM_KEY"]);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lmc.yaml:5:14 (lm.base_urls)"), "{err}");
    assert!(err.contains("a file chose the host"), "{err}");
    assert_eq!(stub.requests(), 0);
}

#[test]
fn keys_go_where_the_runner_points_them_and_keyless_requests_are_free() {
    let dir = project("");
    let (stub, seen) = recording_stub();
    // The runner's URL and the runner's variable: sent.
    let mut c = eval_program_lm(dir.path());
    c.args([
        "--provider",
        "openai",
        "--model",
        "stub",
        "--api-key-env",
        "MY_LLM_KEY",
    ])
    .arg("--base-url")
    .arg(stub.url());
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .all(|a| a.as_deref() == Some(&format!("Bearer {SECRET}")[..])));
    seen.lock().unwrap().clear();
    // A program-named local server without a key: no check, no header.
    let dir = project("");
    with_lm(
        dir.path(),
        &format!(
            "lm: {{provider: openai, model: stub, base_urls: [{}]}}\n",
            stub.url()
        ),
    );
    let (code, _, err) = run(&mut eval_program_lm(dir.path()));
    assert_eq!(code, 0, "{err}");
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(Option::is_none), "{seen:?}");
}

#[test]
fn offline_replay_reads_no_key_and_needs_no_grant() {
    let dir = project("");
    let (stub, _) = recording_stub();
    let cache = dir.path().join("cache");
    // Record with the runner's own settings, keyless.
    let (code, _, err) = run(eval(dir.path(), &stub).arg("--cache-dir").arg(&cache));
    assert_eq!(code, 0, "{err}");
    // Replay with a program that names a hostile host and a secret variable.
    with_lm(
        dir.path(),
        "lm: {provider: openai, model: stub, base_urls: [\"http://attacker.invalid/v1\"], api_key_env: GH_SECRET_TOKEN}\n",
    );
    let mut c = eval_program_lm(dir.path());
    c.arg("--offline").arg("--cache-dir").arg(&cache);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
}

/// An artifact's stored `lm` is a file under test too: an edited
/// `api_key_env` is refused, located in the artifact's JSON.
#[test]
fn an_artifact_cannot_name_a_key_variable_either() {
    let dir = project("metric: {type: exact_match, field: a}\n");
    let (stub, seen) = recording_stub();
    let (path, mut art) = compile_artifact(dir.path(), &stub);
    assert_eq!(art["lm"]["base_urls"][0], Value::from(stub.url()), "{art}");
    art["lm"]["api_key_env"] = Value::from("GH_SECRET_TOKEN");
    let text = serde_json::to_string_pretty(&art).unwrap();
    std::fs::write(&path, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("\"api_key_env\""))
        .unwrap()
        + 1;
    let mut c = lmc();
    c.current_dir(dir.path())
        .args([
            "eval",
            "prog.compiled.json",
            "--dataset",
            "dev.jsonl",
            "--quiet",
        ])
        .env("GH_SECRET_TOKEN", SECRET);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`GH_SECRET_TOKEN`"), "{err}");
    assert!(
        err.contains(&format!("prog.compiled.json:{line}:")) && err.contains("(lm.api_key_env)"),
        "{err}"
    );
    assert!(seen.lock().unwrap().iter().all(Option::is_none));
}
