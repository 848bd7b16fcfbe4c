//! The plumbing every command shares (`cli::common`), through the real
//! binary: `--input` values (and `lmc run`'s stdin) go through the same
//! typed conversion as dataset cells, `KEY=VALUE` flags are checked by one
//! clap value parser, and an invalid program reads the same, with one
//! `error:` prefix, from `run`, `inspect` and `eval`.

use crate::support::stub::StubServer;
use crate::support::{lmc, run, run_with_stdin};
use serde_json::Value;

const INVALID: &str = "tests/fixtures/invalid/unknown_top_key.yaml";

/// A program with a bool input, so `yes` must become `true`.
const FLAGS: &str = "\
name: flags
signatures:
  judge:
    inputs: {claim: str, flag: bool}
    outputs: {verdict: str}
inputs: {claim: str, flag: bool}
nodes:
  judge:
    kind: predict
    signature: judge
    inputs: {claim: input.claim, flag: input.flag}
outputs: {verdict: judge.verdict}
metric: {type: exact_match, field: verdict}
";

const REPLY: &str = "[[ ## verdict ## ]]\nok\n\n[[ ## completed ## ]]";

struct Fixture {
    dir: tempfile::TempDir,
    stub: StubServer,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flags.yaml"), FLAGS).unwrap();
        std::fs::write(
            dir.path().join("flags.csv"),
            "claim,flag,verdict\nthe sky is blue,yes,ok\n",
        )
        .unwrap();
        Fixture {
            dir,
            stub: StubServer::fixed(REPLY),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `lmc CMD flags.yaml` against the stub, with a cache of its own.
    fn cmd(&self, cmd: &str) -> std::process::Command {
        let mut c = lmc();
        c.env(
            "LMC_CACHE_DIR",
            self.dir.path().join(format!("cache-{cmd}")),
        )
        .args([cmd, &self.path("flags.yaml")])
        .args(["--provider", "openai", "--model", "stub", "--base-url"])
        .arg(self.stub.url());
        c
    }

    /// The last user message of every request the stub received.
    fn user_messages(&self) -> Vec<String> {
        self.stub
            .received()
            .iter()
            .map(|b| {
                b["messages"]
                    .as_array()
                    .and_then(|m| m.last())
                    .and_then(|m| m["content"].as_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }
}

fn json_line(out: &str) -> Value {
    serde_json::from_str(out.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn run_input_yes_on_a_bool_field_works_like_the_csv_path() {
    let f = Fixture::new();
    let (code, out, err) = run(f.cmd("run").args([
        "--json",
        "--input",
        "claim=the sky is blue",
        "--input",
        "flag=yes",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        json_line(&out)["inputs"]["flag"],
        Value::Bool(true),
        "{out}"
    );

    // The same row from a CSV: the request the LM sees is byte-identical.
    let (code, _, err) = run(f
        .cmd("eval")
        .args(["--dataset", &f.path("flags.csv"), "--quiet"]));
    assert_eq!(code, 0, "{err}");
    let sent = f.user_messages();
    assert_eq!(sent.len(), 2, "one request per command: {sent:?}");
    assert_eq!(
        sent[0], sent[1],
        "run --input and the CSV row must render alike"
    );
}

#[test]
fn stdin_inputs_are_converted_like_flags() {
    let f = Fixture::new();
    let (code, out, err) = run_with_stdin(
        f.cmd("run").arg("--json"),
        "{\"claim\": \"a\", \"flag\": \"yes\"}\n{\"claim\": \"b\", \"flag\": 0}\n",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["inputs"]["flag"], Value::Bool(true));
    assert_eq!(lines[1]["inputs"]["flag"], Value::Bool(false));
}

#[test]
fn a_bad_input_value_names_the_field_and_costs_no_call() {
    let f = Fixture::new();
    let (code, _, err) = run(f
        .cmd("run")
        .args(["--input", "claim=x", "--input", "flag=maybe"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: --input `flag`: "), "{err}");
    assert!(err.contains("not a boolean"), "{err}");

    let (code, _, err) = run_with_stdin(
        &mut f.cmd("run"),
        "{\"claim\": \"a\", \"flag\": true}\n{\"claim\": \"b\", \"flag\": \"maybe\"}\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: stdin line 2: `flag`: "), "{err}");

    let (code, _, err) = run_with_stdin(&mut f.cmd("run"), "{\"claim\": \"a\", \"flg\": true}\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no input `flg`"), "{err}");
    assert!(err.contains("did you mean `flag`"), "{err}");
    assert_eq!(f.stub.requests(), 0, "no LM call on bad input");
}

#[test]
fn key_value_flags_are_checked_by_one_parser() {
    let f = Fixture::new();
    for (cmd, flag, bad) in [
        ("run", "--input", "claim"),
        ("inspect", "--input", "=x"),
        ("eval", "--map", "verdict="),
        ("compile", "--map", "verdict"),
    ] {
        let (code, _, err) = run(f.cmd_plain(cmd).args([flag, bad]));
        assert_eq!(code, 2, "{cmd} {flag} {bad}: {err}");
        assert!(
            err.starts_with(&format!("error: invalid value '{bad}' for '{flag}")),
            "{cmd}: {err}"
        );
    }
    assert_eq!(f.stub.requests(), 0);
}

impl Fixture {
    /// `lmc CMD flags.yaml` with no LM flags (inspect takes none).
    fn cmd_plain(&self, cmd: &str) -> std::process::Command {
        let mut c = lmc();
        c.args([cmd, &self.path("flags.yaml")]);
        c
    }
}

/// Exit 2, one `error:` prefix on the first line, located at the bad key.
fn assert_one_prefix(what: &str, code: i32, out: &str, err: &str) {
    assert_eq!(code, 2, "{what}: {err}");
    assert!(out.is_empty(), "{what}: {out}");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "{what}: {err}");
    assert_eq!(first.matches("error:").count(), 1, "{what}: {err}");
    assert!(err.contains(&format!("--> {INVALID}:8:1")), "{what}: {err}");
}

#[test]
fn run_on_an_invalid_program_prints_one_error_prefix() {
    let (code, out, err) = run(lmc().args(["run", INVALID, "--input", "question=x"]));
    assert_one_prefix("run", code, &out, &err);
    insta::assert_snapshot!("run_invalid_program", err);
}

#[test]
fn inspect_on_an_invalid_program_prints_one_error_prefix() {
    let (code, out, err) = run(lmc().args(["inspect", INVALID]));
    assert_one_prefix("inspect", code, &out, &err);
    insta::assert_snapshot!("inspect_invalid_program", err);
}

/// eval, run and inspect word the same invalid program identically (eval's
/// own snapshot is `cli_errors::eval_invalid_program`).
#[test]
fn eval_run_and_inspect_agree_on_an_invalid_program() {
    let (_, _, eval) = run(lmc().args([
        "eval",
        INVALID,
        "--dataset",
        "tests/fixtures/data/typed.csv",
    ]));
    let (_, _, run_err) = run(lmc().args(["run", INVALID, "--input", "question=x"]));
    let (_, _, inspect) = run(lmc().args(["inspect", INVALID]));
    assert!(!eval.is_empty());
    assert_eq!(eval, run_err);
    assert_eq!(eval, inspect);
}

#[test]
fn trace_show_on_a_bad_file_prints_one_error_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.jsonl");
    std::fs::write(&p, "not a trace\n").unwrap();
    let (code, _, err) = run(lmc().args(["trace", "show"]).arg(&p));
    assert_ne!(code, 0, "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "{err}");
    assert_eq!(first.matches("error:").count(), 1, "{err}");
}

const SQL_PROGRAM: &str = "\
name: sql
signatures:
  write: {inputs: {question: str}, outputs: {sql: str}}
inputs: {question: str}
nodes:
  write: {kind: predict, signature: write, inputs: {question: input.question}}
outputs: {sql: write.sql}
metric: {type: sql_execution, field: sql, database: db.sqlite}
";

/// A metric's relative paths are the program file's, also through an
/// artifact written elsewhere (it records the program relative to itself):
/// eval and compile resolve them with the same `common::program_dir`.
#[test]
fn an_artifacts_metric_paths_are_relative_to_its_program_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("programs")).unwrap();
    std::fs::write(d.join("programs/sql.yaml"), SQL_PROGRAM).unwrap();
    std::fs::copy(
        crate::support::root()
            .join("datasets/spider/database/concert_singer/concert_singer.sqlite"),
        d.join("programs/db.sqlite"),
    )
    .unwrap();
    std::fs::write(
        d.join("data.csv"),
        "question,sql\nhow many singers?,SELECT count(*) FROM singer\n",
    )
    .unwrap();
    let stub =
        StubServer::fixed("[[ ## sql ## ]]\nSELECT count(*) FROM singer\n\n[[ ## completed ## ]]");
    let lmc_in = |args: &[&str]| {
        let mut c = lmc();
        c.current_dir(d)
            .env("LMC_CACHE_DIR", d.join("cache"))
            .args(args)
            .args(["--provider", "openai", "--model", "stub", "--base-url"])
            .arg(stub.url());
        run(&mut c)
    };
    let compile = |from: &str, to: &str| {
        lmc_in(&[
            "compile",
            from,
            "--trainset",
            "data.csv",
            "--optimizer",
            "labeled_few_shot",
            "--quiet",
            "-o",
            to,
        ])
    };
    let (code, _, err) = compile("programs/sql.yaml", "out/sql.compiled.json");
    assert_eq!(code, 0, "{err}");
    // Composing from the artifact scores with the same database.
    let (code, _, err) = compile("out/sql.compiled.json", "out/sql2.compiled.json");
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = lmc_in(&[
        "eval",
        "out/sql2.compiled.json",
        "--dataset",
        "data.csv",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["summary"]["mean"].as_f64(), Some(1.0), "{out}");
}
