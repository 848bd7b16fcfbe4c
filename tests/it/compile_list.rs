//! `compile:` as a list of stages (issue #14): the program's (or
//! `lmc.yaml`'s) pipeline runs like `--optimizer A --then B` — same
//! artifact, every stage in the lineage — each stage is checked with
//! located errors, and a pipeline's finished stages are kept by its
//! checkpoint for `--resume`.

use crate::simba::{scripted, RULE};
use crate::support::stub::StubServer;
use crate::support::{lmc, run};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const PROGRAM: &str = "tests/fixtures/instruction/reverse.yaml";

/// The words program with `section` appended, written in `dir`.
fn program_with(dir: &Path, section: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(PROGRAM).unwrap();
    let path = dir.join("prog.yaml");
    std::fs::write(&path, format!("{text}{section}")).unwrap();
    path
}

fn compile_cmd(stub: &StubServer, cache: &Path, target: &Path, out: &Path) -> Command {
    let mut cmd = lmc();
    cmd.env("LMC_CACHE_DIR", cache)
        .arg("compile")
        .arg(target)
        .args(["--trainset", "tests/fixtures/instruction/words.csv"])
        .args(["--valset", "tests/fixtures/instruction/words.csv"])
        .args(["--seed", "3", "--provider", "openai", "--model", "scripted"])
        .args(["--base-url", &stub.url()])
        .arg("-o")
        .arg(out);
    cmd
}

fn artifact(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("artifact written")).expect("artifact json")
}

const LIST: &str = "compile:\n  - optimizer: labeled_few_shot\n    settings: {k: 2}\n  - optimizer: copro\n    settings: {breadth: 2, depth: 1}\n";

#[test]
fn issue14_a_compile_list_runs_like_then() {
    let stub = scripted(RULE);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let prog = program_with(d, LIST);
    let listed = d.join("listed.json");
    let (code, out, err) = run(&mut compile_cmd(&stub, &d.join("c1"), &prog, &listed));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("labeled_few_shot → copro"), "{out}");
    // The same pipeline on the command line, its own cache.
    let then = d.join("then.json");
    std::fs::create_dir(d.join("plain")).unwrap();
    let plain = program_with(&d.join("plain"), "");
    let (code, out, err) = run(compile_cmd(&stub, &d.join("c2"), &plain, &then)
        .args(["--optimizer", "labeled_few_shot", "--opt", "k=2"])
        .args([
            "--then",
            "copro",
            "--opt",
            "copro.breadth=2",
            "--opt",
            "copro.depth=1",
        ]));
    assert_eq!(code, 0, "{out}{err}");
    let (a, b) = (artifact(&listed), artifact(&then));
    assert_eq!(a["predictors"], b["predictors"]);
    assert_eq!(a["lineage"]["optimizer"], "copro");
    assert_eq!(a["lineage"]["settings"], b["lineage"]["settings"]);
    assert_eq!(a["lineage"]["stages"], b["lineage"]["stages"]);
    assert_eq!(a["lineage"]["stages"][0]["optimizer"], "labeled_few_shot");
    assert_eq!(a["lineage"]["stages"][0]["settings"]["k"], 2);

    // `--opt NAME.KEY` reaches a listed stage; `--optimizer` replaces the list.
    let one = d.join("one.json");
    let (code, out, err) = run(compile_cmd(&stub, &d.join("c1"), &prog, &one).args([
        "--optimizer",
        "labeled_few_shot",
        "--quiet",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let o = artifact(&one);
    assert_eq!(o["lineage"]["optimizer"], "labeled_few_shot");
    assert!(
        o["lineage"]
            .get("stages")
            .is_none_or(|s| s.as_array().is_some_and(Vec::is_empty)),
        "{o}"
    );
}

#[test]
fn issue14_a_pipeline_checkpoint_keeps_finished_stages_for_resume() {
    let stub = scripted(RULE);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let prog = program_with(d, LIST);
    let out = d.join("out.json");
    let (code, o, err) =
        run(compile_cmd(&stub, &d.join("c"), &prog, &out).arg("--keep-checkpoint"));
    assert_eq!(code, 0, "{o}{err}");
    let first = artifact(&out);
    assert!(
        d.join("out.checkpoint.json").exists(),
        "--keep-checkpoint keeps it"
    );
    // A resume against a server that must not be called: both stages are
    // restored from the checkpoint, not run again.
    let silent = StubServer::fixed("never");
    let (code, o, err) = run(compile_cmd(&silent, &d.join("fresh"), &prog, &out).arg("--resume"));
    assert_eq!(code, 0, "{o}{err}");
    assert!(
        err.contains("2 finished stages (labeled_few_shot, copro) kept"),
        "{err}"
    );
    assert_eq!(silent.requests(), 0, "no stage ran again");
    let again = artifact(&out);
    assert_eq!(again["predictors"], first["predictors"]);
    assert_eq!(again["lineage"]["stages"], first["lineage"]["stages"]);
    assert_eq!(again["lineage"]["lm_calls"], first["lineage"]["lm_calls"]);
    assert!(!d.join("out.checkpoint.json").exists());
}

#[test]
fn issue14_every_bad_stage_of_a_compile_list_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = program_with(
        dir.path(),
        "compile:\n  - settings: {k: 2}\n  - optimizer: copro\n    settings: {bredth: 2}\n",
    );
    let (code, _, err) = run(lmc().arg("check").arg(&prog));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("stage `compile[0]` names no optimizer"),
        "{err}"
    );
    assert!(err.contains("prog.yaml:18:5"), "{err}");
    assert!(
        err.contains("unknown setting `bredth` for optimizer `copro`"),
        "{err}"
    );
    assert!(err.contains("prog.yaml:20:16"), "{err}");
    assert!(err.contains("did you mean `breadth`?"), "{err}");
    let prog = program_with(dir.path(), "compile: []\n");
    let (code, _, err) = run(lmc().arg("check").arg(&prog));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`compile` is an empty list of stages"),
        "{err}"
    );
}
