//! Optimizer settings from the program file's and `lmc.yaml`'s `compile:`
//! section (issue #12): checked where they are read (file:line:col,
//! did-you-mean, expected type) by `lmc check` and `lmc compile` alike,
//! before any LM call; applied under `--opt`; recorded in the lineage with
//! where each came from.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::senti::stub_lm;
use crate::support::stub::StubServer;
use crate::support::{lmc, run};

const HEAD: &str = r#"name: senti
signatures:
  classify: "sentence -> sentiment: enum[positive, negative]"
inputs:
  sentence: str
nodes:
  classify: {kind: predict, signature: classify}
outputs:
  sentiment: classify.sentiment
metric: {type: exact_match, field: sentiment}
datasets: {train: train.csv, dev: train.csv}
"#;

const REPLY: &str = "[[ ## sentiment ## ]]\npositive\n\n[[ ## completed ## ]]";

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A project whose program ends with `compile` (lines 12 on).
    fn new(compile: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prog.yaml"), format!("{HEAD}{compile}")).unwrap();
        let mut csv = String::from("sentence,sentiment\n");
        for i in 0..6 {
            let l = if i % 2 == 0 { "positive" } else { "negative" };
            csv.push_str(&format!("review {i},{l}\n"));
        }
        std::fs::write(dir.path().join("train.csv"), csv).unwrap();
        Project { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `lmc <sub> prog.yaml` against `stub`, run from the project directory.
    fn cmd(&self, sub: &str, stub: &StubServer) -> Command {
        let mut c = lmc();
        c.current_dir(self.dir.path())
            .arg(sub)
            .arg(self.path("prog.yaml"));
        stub_lm(&mut c, &stub.url());
        c
    }

    fn dry_run(&self, stub: &StubServer, extra: &[&str]) -> Value {
        let (code, out, err) = run(self
            .cmd("compile", stub)
            .args(["--dry-run", "--json"])
            .args(extra));
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

#[test]
fn a_misspelt_setting_in_the_program_is_located_before_any_lm_call() {
    let p = Project::new("compile:\n  optimizer: labeled_few_shot\n  settings:\n    kk: 2\n");
    let stub = StubServer::fixed(REPLY);
    let (code, _, err) = run(&mut p.cmd("compile", &stub));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown setting `kk` for optimizer `labeled_few_shot`"),
        "{err}"
    );
    assert!(err.contains("prog.yaml:15:5"), "{err}");
    assert!(err.contains("did you mean `k`?"), "{err}");
    assert_eq!(stub.requests(), 0);
    // `lmc check` finds it too.
    let (code, _, err) = run(lmc().arg("check").arg(p.path("prog.yaml")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("prog.yaml:15:5"), "{err}");
}

#[test]
fn a_misspelt_optimizer_or_a_wrong_type_is_located_too() {
    let p = Project::new("compile:\n  optimizer: labeled_fewshot\n");
    let (code, _, err) = run(lmc().arg("check").arg(p.path("prog.yaml")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown optimizer `labeled_fewshot`"), "{err}");
    assert!(err.contains("prog.yaml:13:14"), "{err}");
    assert!(err.contains("did you mean `labeled_few_shot`?"), "{err}");

    let p = Project::new("compile:\n  optimizer: labeled_few_shot\n  settings: {k: many}\n");
    let (code, _, err) = run(lmc().arg("check").arg(p.path("prog.yaml")));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("setting `k` of optimizer `labeled_few_shot`: expected a non-negative integer, got \"many\""),
        "{err}"
    );
    assert!(err.contains("prog.yaml:14:17"), "{err}");

    let p = Project::new("compile:\n  optimiser: mipro\n");
    let (code, _, err) = run(lmc().arg("check").arg(p.path("prog.yaml")));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown key `optimiser` in `compile`"),
        "{err}"
    );
    assert!(err.contains("did you mean `optimizer`?"), "{err}");
    assert!(!err.contains("unknown setting"), "no cascade: {err}");
}

#[test]
fn file_settings_reach_the_lineage_and_opt_overrides_them() {
    let p = Project::new("compile:\n  optimizer: labeled_few_shot\n  settings:\n    k: 2\n");
    let stub = StubServer::fixed(REPLY);
    let (code, _, err) = run(p
        .cmd("compile", &stub)
        .arg("--quiet")
        .arg("-o")
        .arg(p.path("a.json")));
    assert_eq!(code, 0, "{err}");
    let art: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("a.json")).unwrap()).unwrap();
    let l = &art["lineage"];
    assert_eq!(l["optimizer"], "labeled_few_shot", "{l}");
    assert_eq!(l["settings"]["k"], 2, "{l}");
    let from = l["settings_from"]["k"].as_str().unwrap();
    assert!(from.ends_with("prog.yaml:15:5"), "{from}");
    assert_eq!(
        art["predictors"]["classify"]["demos"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let (code, _, err) = run(p
        .cmd("compile", &stub)
        .args(["--quiet", "--opt", "k=1", "-o"])
        .arg(p.path("b.json")));
    assert_eq!(code, 0, "{err}");
    let art: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("b.json")).unwrap()).unwrap();
    assert_eq!(art["lineage"]["settings"]["k"], 1);
    assert_eq!(art["lineage"]["settings_from"]["k"], "--opt");
    assert_eq!(
        art["predictors"]["classify"]["demos"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A wrong --opt value is still refused with the key and expected form.
    let (code, _, err) = run(p.cmd("compile", &stub).args(["--opt", "k=-1"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("setting `k`"), "{err}");
}

#[test]
fn the_project_file_overrides_the_program_and_another_optimizer_sets_both_aside() {
    let p = Project::new("compile:\n  optimizer: labeled_few_shot\n  settings: {k: 2}\n");
    std::fs::write(
        p.path("lmc.yaml"),
        "program: prog.yaml\ncompile:\n  optimizer: labeled_few_shot\n  settings:\n    k: 3\n",
    )
    .unwrap();
    let stub = StubServer::fixed(REPLY);
    let plan = p.dry_run(&stub, &[]);
    assert_eq!(plan["optimizer"], "labeled_few_shot");
    assert_eq!(plan["settings"]["k"], 3, "{plan}");
    assert!(
        plan["settings_from"]["k"]
            .as_str()
            .unwrap()
            .ends_with("lmc.yaml:5:5"),
        "{plan}"
    );

    // --optimizer picks another optimizer: the sections are for
    // labeled_few_shot, so they are set aside, with a note.
    let (code, out, err) =
        run(p
            .cmd("compile", &stub)
            .args(["--dry-run", "--json", "--optimizer", "knn_few_shot"]));
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["optimizer"], "knn_few_shot");
    assert_eq!(plan["settings_from"], serde_json::json!({}), "{plan}");
    assert!(
        err.contains("are for `labeled_few_shot`, not `knn_few_shot`: set aside"),
        "{err}"
    );
    assert_eq!(stub.requests(), 0);
}

#[test]
fn a_misspelt_setting_in_lmc_yaml_is_located() {
    let p = Project::new("");
    std::fs::write(
        p.path("lmc.yaml"),
        "program: prog.yaml\ncompile:\n  optimizer: bootstrap_random_search\n  settings:\n    num_candidates: 3\n",
    )
    .unwrap();
    let stub = StubServer::fixed(REPLY);
    let (code, _, err) = run(&mut p.cmd("compile", &stub));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lmc.yaml:5:5"), "{err}");
    assert!(
        err.contains("unknown setting `num_candidates` for optimizer `bootstrap_random_search`"),
        "{err}"
    );
    assert!(err.contains("num_candidate_programs"), "{err}");
    assert_eq!(stub.requests(), 0);
}

#[test]
fn both_schemas_describe_the_compile_section_from_the_registry() {
    for args in [&["schema"][..], &["schema", "--project"][..]] {
        let (code, out, err) = run(lmc().args(args));
        assert_eq!(code, 0, "{err}");
        let schema: Value = serde_json::from_str(&out).unwrap();
        // A stage mapping, or a list of stages (a pipeline) that each name
        // their optimizer.
        let one_of = &schema["properties"]["compile"]["oneOf"];
        let c = &one_of[0];
        assert_eq!(one_of[1]["type"], "array", "{args:?}");
        assert_eq!(one_of[1]["items"]["required"][0], "optimizer");
        assert_eq!(c["additionalProperties"], false, "{args:?}");
        let names = c["properties"]["optimizer"]["enum"].as_array().unwrap();
        assert!(names.iter().any(|n| n == "mipro"), "{names:?}");
        let mipro = c["allOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["if"]["properties"]["optimizer"]["const"] == "mipro")
            .expect("a branch for mipro");
        let settings = &mipro["then"]["properties"]["settings"];
        assert_eq!(settings["additionalProperties"], false);
        assert!(settings["properties"]["num_trials"]["description"].is_string());
    }
}
