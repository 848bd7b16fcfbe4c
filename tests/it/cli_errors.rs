//! How `lmc` words a failure on stderr: the `error:` prefix is added in one
//! place (`cli::report`), so a command that wraps a rendered diagnostic never
//! prints `error: error: …`. Snapshots pin the whole stderr of `lmc eval`
//! and `lmc compile` on an invalid program.

use crate::support::{lmc, run};

const PROGRAM: &str = "tests/fixtures/invalid/unknown_top_key.yaml";
const DATA: &str = "tests/fixtures/data/typed.csv";

/// Exit 2, and stderr opens with exactly one `error:` and names the file.
fn assert_one_prefix(what: &str, code: i32, err: &str) {
    assert_eq!(code, 2, "{what}: {err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "{what}: {err}");
    assert!(!first.starts_with("error: error:"), "{what}: {err}");
    assert_eq!(first.matches("error:").count(), 1, "{what}: {err}");
    assert!(err.contains(&format!("--> {PROGRAM}:8:1")), "{what}: {err}");
}

#[test]
fn eval_on_an_invalid_program_prints_one_error_prefix() {
    let (code, out, err) = run(lmc().args(["eval", PROGRAM, "--dataset", DATA]));
    assert!(out.is_empty(), "{out}");
    assert_one_prefix("eval", code, &err);
    insta::assert_snapshot!("eval_invalid_program", err);
}

#[test]
fn compile_on_an_invalid_program_prints_one_error_prefix() {
    let (code, out, err) = run(lmc().args(["compile", PROGRAM, "--trainset", DATA]));
    assert!(out.is_empty(), "{out}");
    assert_one_prefix("compile", code, &err);
    insta::assert_snapshot!("compile_invalid_program", err);
}

/// A message built without a prefix (a bad flag value) gets exactly one.
#[test]
fn a_plain_input_error_gets_the_prefix_once() {
    let (code, _, err) =
        run(lmc().args(["eval", PROGRAM, "--dataset", DATA, "--concurrency", "0"]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(err, "error: --concurrency must be at least 1\n");
}
