//! A new user's first hour (issue 13, part A): failures are loud and early,
//! defaults are honest. Every test runs the real `lmc` binary; the LM is the
//! local stub server, which counts requests, so "before any LM call" is a
//! measured 0.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::senti::{label, reply, row_of, stub_lm};
use crate::support::stub::{StubReply, StubServer};
use crate::support::{lmc, run};

const PROGRAM: &str = r#"name: senti
signatures:
  classify:
    instructions: Classify the sentiment of a movie review sentence.
    inputs:
      sentence: {type: str}
    outputs:
      sentiment: {type: "enum[positive, negative]"}
inputs:
  sentence: str
nodes:
  classify: {kind: predict, signature: classify}
outputs:
  sentiment: classify.sentiment
metric: {type: exact_match, field: sentiment}
datasets:
  train: train.csv
  dev: dev.csv
  columns: {label: sentiment}
"#;

fn csv(header: &str, n: usize) -> String {
    let mut s = format!("{header}\n");
    for i in 1..=n {
        s.push_str(&format!("review number {i},{}\n", label(i)));
    }
    s
}

/// A stub that answers every request with the right label of its row.
fn oracle() -> StubServer {
    StubServer::start(|req| {
        let row = row_of(req);
        StubReply::Ok(reply(label(row)))
    })
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(dev_header: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prog.yaml"), PROGRAM).unwrap();
        std::fs::write(dir.path().join("train.csv"), csv("sentence,label", 6)).unwrap();
        std::fs::write(dir.path().join("dev.csv"), csv(dev_header, 6)).unwrap();
        Project { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `lmc SUBCOMMAND prog.yaml` against `url`, in the project directory.
    fn cmd(&self, sub: &str, url: &str, extra: &[&str]) -> Command {
        self.cmd_on(sub, "prog.yaml", url, extra)
    }

    /// `lmc SUBCOMMAND FILE` against `url`, in the project directory.
    fn cmd_on(&self, sub: &str, file: &str, url: &str, extra: &[&str]) -> Command {
        let mut c = lmc();
        c.current_dir(self.dir.path()).arg(sub).arg(file);
        stub_lm(&mut c, url)
            .args(extra)
            .env("LMC_CACHE_DIR", self.path("cache"));
        c
    }
}

/// `file:line:col` of `prog.yaml` appears in `err`.
fn located(err: &str, file: &str) -> bool {
    err.lines().any(|l| {
        l.trim_start().strip_prefix("--> ").is_some_and(|loc| {
            let parts: Vec<&str> = loc.rsplitn(3, ':').collect();
            parts.len() == 3
                && parts[2].ends_with(file)
                && parts[0].parse::<usize>().is_ok()
                && parts[1].parse::<usize>().is_ok()
        })
    })
}

#[test]
fn issue13_missing_label_column_is_exit_2_before_any_lm_call() {
    let p = Project::new("sentence,rating");
    let stub = oracle();
    let (code, out, err) = run(&mut p.cmd("eval", &stub.url(), &["--quiet"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("no column `label`"), "{err}");
    assert!(err.contains("sentence, rating"), "names the columns: {err}");
    assert!(located(&err, "prog.yaml"), "located: {err}");
    assert!(err.contains("datasets.columns.label"), "{err}");
    assert_eq!(stub.requests(), 0, "no LM call before the check");

    // The same check guards compile (its valset is the same file).
    let (code, _, err) = run(&mut p.cmd("compile", &stub.url(), &["--quiet", "-o", "a.json"]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(stub.requests(), 0);

    // With the column present the same command runs and scores.
    std::fs::write(p.path("dev.csv"), csv("sentence,label", 6)).unwrap();
    let (code, out, err) = run(&mut p.cmd("eval", &stub.url(), &["--quiet"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(stub.requests(), 6);
}

#[test]
fn issue13_server_down_is_exit_3_with_the_cause_on_stderr() {
    let p = Project::new("sentence,label");
    // A port that was just free: nothing listens on it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let (code, out, err) = run(&mut p.cmd("eval", &url, &["--quiet", "--max-retries", "1"]));
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("6 of 6 examples failed (1 cause)"), "{err}");
    assert!(
        err.to_lowercase().contains("connect"),
        "names the cause: {err}"
    );
    assert!(err.contains("every one of the 6 examples failed"), "{err}");
    // Not mistaken for a failed quality gate (exit 1).
    let (code, _, err) = run(&mut p.cmd(
        "eval",
        &url,
        &["--quiet", "--max-retries", "1", "--min-score", "0.5"],
    ));
    assert_eq!(code, 3, "{err}");
}

#[test]
fn issue13_errors_are_summarised_by_cause() {
    let p = Project::new("sentence,label");
    // Rows 1 and 2 get a server error; the others are answered.
    let stub = StubServer::start(|req| {
        if row_of(req) <= 2 {
            StubReply::Status(500, None)
        } else {
            StubReply::Ok(reply("positive"))
        }
    });
    let (code, out, err) = run(&mut p.cmd("eval", &stub.url(), &["--quiet", "--max-retries", "0"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("2 of 6 examples failed (1 cause)"), "{err}");
    assert!(err.contains("500"), "{err}");
    assert!(err.contains("(first: row 1)"), "{err}");
}

#[test]
fn issue13_max_cost_without_prices_is_a_usage_error() {
    let p = Project::new("sentence,label");
    let stub = oracle();
    let (code, _, err) = run(&mut p.cmd("eval", &stub.url(), &["--quiet", "--max-cost", "2.00"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("price_prompt_per_mtok"), "{err}");
    assert!(err.contains("price_completion_per_mtok"), "{err}");
    assert_eq!(stub.requests(), 0);
    // With prices the budget is honoured: the run proceeds.
    let priced = PROGRAM.replace(
        "metric:",
        "lm: {price_prompt_per_mtok: 0.15, price_completion_per_mtok: 0.6}\nmetric:",
    );
    std::fs::write(p.path("prog.yaml"), priced).unwrap();
    let (code, out, err) = run(&mut p.cmd("eval", &stub.url(), &["--quiet", "--max-cost", "2.00"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(stub.requests(), 6);
}

#[test]
fn issue13_check_finds_missing_dataset_and_missing_mapped_column() {
    let p = Project::new("sentence,label");
    // train lacks the mapped label column; dev does not exist.
    std::fs::write(p.path("train.csv"), csv("sentence,stars", 3)).unwrap();
    std::fs::remove_file(p.path("dev.csv")).unwrap();
    let (code, out, err) = run(lmc().current_dir(p.dir.path()).args(["check", "prog.yaml"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("dataset dev.csv does not exist"),
        "missing path: {err}"
    );
    assert!(err.contains("| datasets.dev"), "{err}");
    assert!(err.contains("train.csv has no column `label`"), "{err}");
    assert!(err.contains("| datasets.columns.label"), "{err}");
    // Both located at their lines in the program.
    let lines: Vec<usize> = err
        .lines()
        .filter_map(|l| l.trim().strip_prefix("--> prog.yaml:"))
        .filter_map(|l| l.split(':').next()?.parse().ok())
        .collect();
    let src: Vec<&str> = PROGRAM.lines().collect();
    let line_of = |needle: &str| src.iter().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(lines.contains(&line_of("dev: dev.csv")), "{lines:?}\n{err}");
    assert!(lines.contains(&line_of("columns:")), "{lines:?}\n{err}");
    // Repaired, it passes.
    std::fs::write(p.path("train.csv"), csv("sentence,label", 3)).unwrap();
    std::fs::write(p.path("dev.csv"), csv("sentence,label", 3)).unwrap();
    let (code, out, err) = run(lmc().current_dir(p.dir.path()).args(["check", "prog.yaml"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok  prog.yaml"), "{out}");
}

#[test]
fn issue13_check_reads_lmc_yaml_as_a_project_file() {
    let p = Project::new("sentence,label");
    std::fs::write(p.path("lmc.yaml"), "program: prog.yaml\n").unwrap();
    let (code, out, err) = run(lmc().current_dir(p.dir.path()).args(["check", "lmc.yaml"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("project file") && out.contains("prog.yaml"),
        "{out}"
    );
    std::fs::write(p.path("lmc.yaml"), "program: nope.yaml\nlmm: {}\n").unwrap();
    let (code, _, err) = run(lmc().current_dir(p.dir.path()).args(["check", "lmc.yaml"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown key `lmm`"), "{err}");
    assert!(!err.contains("signatures"), "not read as a program: {err}");
    std::fs::write(p.path("lmc.yaml"), "program: nope.yaml\n").unwrap();
    let (code, _, err) = run(lmc().current_dir(p.dir.path()).args(["check", "lmc.yaml"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope.yaml` does not exist"), "{err}");
}

/// `outer/lmc.yaml` (pointing at the stub) above `outer/<child>/sub`.
fn nested(outer: &Path, child: &str, url: &str, git: bool) -> PathBuf {
    std::fs::write(outer.join("prog.yaml"), PROGRAM).unwrap();
    std::fs::write(outer.join("dev.csv"), csv("sentence,label", 4)).unwrap();
    std::fs::write(outer.join("train.csv"), csv("sentence,label", 4)).unwrap();
    std::fs::write(
        outer.join("lmc.yaml"),
        format!(
            "program: prog.yaml\nlm: {{provider: openai, model: stub, base_urls: [\"{url}\"]}}\n"
        ),
    )
    .unwrap();
    let repo = outer.join(child);
    if git {
        std::fs::create_dir_all(repo.join(".git")).unwrap();
    }
    let sub = repo.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    sub
}

#[test]
fn issue13_empty_subfolder_of_a_checkout_does_not_start_an_eval() {
    let outer = tempfile::tempdir().unwrap();
    let stub = oracle();
    let sub = nested(outer.path(), "repo", &stub.url(), true);
    let (code, out, err) = run(lmc()
        .current_dir(&sub)
        .args(["eval", "--quiet"])
        .env("LMC_CACHE_DIR", outer.path().join("cache")));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("no program given"), "{err}");
    assert!(err.contains("repository root"), "{err}");
    assert_eq!(stub.requests(), 0, "no eval started");

    // Without the `.git` boundary the project above is found — and said.
    let sub = nested(outer.path(), "plain", &stub.url(), false);
    let (code, out, err) = run(lmc()
        .current_dir(&sub)
        .args(["eval", "--quiet"])
        .env("LMC_CACHE_DIR", outer.path().join("cache")));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("note: using ") && err.contains("prog.yaml (from "),
        "{err}"
    );
    assert!(err.contains("lmc.yaml)"), "{err}");
    assert!(
        err.contains("note: dataset ") && err.contains("datasets.dev"),
        "{err}"
    );
    assert_eq!(stub.requests(), 4);
}

#[test]
fn issue13_a_changed_program_warns_when_its_artifact_is_run() {
    let p = Project::new("sentence,label");
    let stub = oracle();
    let (code, out, err) = run(&mut p.cmd(
        "compile",
        &stub.url(),
        &["--quiet", "--optimizer", "labeled_few_shot", "-o", "a.json"],
    ));
    assert_eq!(code, 0, "{out}{err}");
    let eval_artifact = |extra: &[&str]| {
        let mut args = vec!["--quiet"];
        args.extend_from_slice(extra);
        run(&mut p.cmd_on("eval", "a.json", &stub.url(), &args))
    };
    let (code, _, err) = eval_artifact(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("compiled from a different version"), "{err}");

    let edited = PROGRAM.replace("Classify the sentiment", "Label the sentiment");
    std::fs::write(p.path("prog.yaml"), edited).unwrap();
    let (code, _, err) = eval_artifact(&[]);
    assert_eq!(code, 0, "a warning, not a failure: {err}");
    assert!(
        err.contains("warning: a.json was compiled from a different version of"),
        "{err}"
    );
    let (code, _, err) = eval_artifact(&["--strict"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("error: a.json was compiled from"), "{err}");
}

#[test]
fn issue13_long_run_off_a_terminal_prints_progress_lines() {
    let p = Project::new("sentence,label");
    std::fs::write(p.path("dev.csv"), csv("sentence,label", 40)).unwrap();
    // 40 examples one at a time at 200 ms each: an 8 s run, past the 5 s
    // of quiet start.
    let stub = StubServer::builder()
        .latency(std::time::Duration::from_millis(200))
        .start(|req| StubReply::Ok(reply(label(row_of(req)))));
    // Not --quiet; stderr is a pipe here, so the bar is hidden and lines print.
    let (code, out, err) = run(&mut p.cmd("eval", &stub.url(), &["--concurrency", "1"]));
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("eval: ")).collect();
    assert!(
        (1..=10).contains(&lines.len()),
        "one line per tenth once past 5 s: {err}"
    );
    let first = lines[0];
    assert!(
        first.contains("/40 (") && first.contains("%) · score 1.000"),
        "{first}"
    );
    assert!(lines.iter().all(|l| l.contains("s left")), "{lines:?}");
    // A short run (here: every reply cached) prints none, nor does --quiet.
    let (_, _, err) = run(&mut p.cmd("eval", &stub.url(), &["--concurrency", "1"]));
    assert!(!err.contains("eval: "), "{err}");
    let (_, _, err) = run(&mut p.cmd("eval", &stub.url(), &["--quiet", "--no-cache"]));
    assert!(!err.contains("eval: "), "{err}");
}

#[test]
fn issue13_cache_clear_model_deletes_only_that_model() {
    let p = Project::new("sentence,label");
    let stub = oracle();
    let (code, _, err) = run(&mut p.cmd("eval", &stub.url(), &["--quiet"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(lmc()
        .current_dir(p.dir.path())
        .args(["eval", "prog.yaml", "--quiet", "--provider", "openai"])
        .args(["--model", "other", "--base-url", &stub.url()])
        .env("LMC_CACHE_DIR", p.path("cache")));
    assert_eq!(code, 0, "{err}");
    let cache = p.path("cache");
    let cache = cache.to_str().unwrap();
    let (code, out, err) =
        run(lmc().args(["cache", "clear", "--model", "stub", "--cache-dir", cache]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cleared 6 entries of model stub"), "{out}");
    let (_, out, _) = run(lmc().args(["cache", "stats", "--cache-dir", cache]));
    assert!(out.contains("entries: 6"), "{out}");
    assert!(out.contains("other: 6") && !out.contains("stub:"), "{out}");
}

#[test]
fn issue13_compile_says_when_it_kept_the_zero_shot_program() {
    let p = Project::new("sentence,label");
    // A perfect zero-shot program: no candidate can beat it.
    let stub = oracle();
    let (code, out, err) = run(&mut p.cmd(
        "compile",
        &stub.url(),
        &[
            "--quiet",
            "--optimizer",
            "bootstrap_random_search",
            "--opt",
            "num_candidate_programs=2",
            "-o",
            "z.json",
        ],
    ));
    assert_eq!(code, 0, "{out}{err}");
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("z.json")).unwrap()).unwrap();
    let demos: usize = a["predictors"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["demos"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(demos, 0, "ties keep the zero-shot program: {out}");
    assert!(out.contains("kept the zero-shot program"), "{out}");
    assert!(out.contains("zero-shot 1.0000"), "{out}");
    assert!(out.contains("none of 4 other candidates beat it"), "{out}");
}

#[test]
fn issue13_readme_shows_the_shipped_sentiment_program_verbatim() {
    let readme = std::fs::read_to_string(crate::support::root().join("README.md")).unwrap();
    let shipped =
        std::fs::read_to_string(crate::support::root().join("programs/sentiment.yaml")).unwrap();
    let marker = "(the whole of `programs/sentiment.yaml`)";
    let after = &readme[readme.find(marker).expect("README names the file") + marker.len()..];
    let start = after.find("```yaml\n").expect("a yaml block follows") + "```yaml\n".len();
    let end = after[start..].find("```").expect("the block ends") + start;
    assert_eq!(
        &after[start..end],
        shipped,
        "README block differs from the shipped file"
    );
}
