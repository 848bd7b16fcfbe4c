//! The optimizer registry seen from the CLI (issue 12): `--opt` errors name
//! the key and the expected form and exit 2, `lmc compile --list` prints
//! every optimizer with its settings, the docs' settings tables are the
//! registry's own, and every optimizer shows a progress bar with the best
//! score so far in a terminal and none with `--json`/`-q`.

use crate::optimizer_snapshots::{sentiment_handler, RUNS};
use crate::support::{lmc, root, run};
use serde_json::Value;

/// `lmc compile` of the reverse fixture with `--opt` pairs; no LM is built
/// before settings are checked, so no server is needed.
fn compile_opts(optimizer: &str, opts: &[&str]) -> (i32, String, String) {
    let mut cmd = lmc();
    cmd.args(["compile", "tests/fixtures/instruction/reverse.yaml"])
        .args(["--trainset", "tests/fixtures/instruction/words.csv"])
        .args(["--optimizer", optimizer, "--dry-run"]);
    for o in opts {
        cmd.args(["--opt", o]);
    }
    run(&mut cmd)
}

#[test]
fn issue12_wrong_type_names_the_key_and_the_expected_type() {
    for (opt, setting, key, expected) in [
        (
            "mipro",
            "num_trials=abc",
            "num_trials",
            "a non-negative integer or null",
        ),
        (
            "gepa",
            "max_metric_calls=abc",
            "max_metric_calls",
            "an integer >= 1 or null",
        ),
        ("gepa", "use_merge=maybe", "use_merge", "true or false"),
        ("mipro", "auto=huge", "auto", "light, medium, heavy or none"),
        (
            "bootstrap_few_shot",
            "max_labeled_demos=-1",
            "max_labeled_demos",
            "a non-negative integer",
        ),
    ] {
        let (code, out, err) = compile_opts(opt, &[setting]);
        assert_eq!(code, 2, "{opt} {setting}: {out}{err}");
        assert!(
            err.contains(&format!("setting `{key}`"))
                && err.contains(&format!("expected {expected}")),
            "{opt} {setting}: {err}"
        );
    }
}

#[test]
fn issue12_unknown_setting_gets_a_did_you_mean() {
    let (code, _, err) = compile_opts("copro", &["breath=3"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown setting `breath` (did you mean `breadth`?)"),
        "{err}"
    );
    assert!(
        err.contains("known settings: breadth, depth, init_temperature"),
        "{err}"
    );
}

#[test]
fn issue12_out_of_range_values_are_refused() {
    for (opt, setting, key, expected) in [
        ("copro", "breadth=1", "breadth", "an integer >= 2"),
        (
            "gepa",
            "temperature=5",
            "temperature",
            "a number from 0 to 2",
        ),
        ("knn_few_shot", "k=0", "k", "an integer >= 1"),
    ] {
        let (code, _, err) = compile_opts(opt, &[setting]);
        assert_eq!(code, 2, "{opt} {setting}: {err}");
        assert!(
            err.contains(&format!("setting `{key}`"))
                && err.contains(&format!("expected {expected}")),
            "{opt} {setting}: {err}"
        );
    }
}

#[test]
fn issue12_valid_settings_still_dry_run() {
    let (code, out, err) = compile_opts("mipro", &["num_trials=3", "auto=none"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dry run: mipro"), "{out}");
}

fn list_json() -> Vec<Value> {
    let (code, out, err) = run(lmc().args(["compile", "--list", "--json"]));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out)
        .expect("--list --json is JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn issue12_list_prints_every_optimizer_with_settings_and_dspy_name() {
    let all = list_json();
    let names: Vec<&str> = all.iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "labeled_few_shot",
            "bootstrap_few_shot",
            "bootstrap_random_search",
            "knn_few_shot",
            "copro",
            "mipro",
            "gepa",
            "simba"
        ]
    );
    let (code, text, _) = run(lmc().args(["compile", "--list"]));
    assert_eq!(code, 0);
    for o in &all {
        assert!(
            text.contains(&format!(
                "{}  (DSPy {})",
                o["name"].as_str().unwrap_or(""),
                o["dspy"].as_str().unwrap_or("")
            )),
            "{text}"
        );
        for s in o["settings"].as_array().into_iter().flatten() {
            assert!(
                text.contains(&format!("--opt {}=", s["key"].as_str().unwrap_or(""))),
                "{text}"
            );
        }
    }
    assert!(
        text.contains("--opt num_trials=…  a non-negative integer or null; default null"),
        "{text}"
    );
    // `--help` names them from the same registry.
    let (_, help, _) = run(lmc().args(["compile", "--help"]));
    for n in names {
        assert!(help.contains(n), "{n} missing from --help");
    }
}

/// The docs' settings table of one optimizer, as the registry renders it.
fn table(o: &Value) -> String {
    let mut s =
        String::from("| setting | expects | default | meaning |\n| --- | --- | --- | --- |\n");
    for d in o["settings"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            d["key"].as_str().unwrap_or(""),
            d["expected"].as_str().unwrap_or(""),
            d["default"],
            d["help"].as_str().unwrap_or("")
        ));
    }
    s
}

#[test]
fn issue12_docs_list_the_registry_settings() {
    let docs = [
        std::fs::read_to_string(root().join("docs/optimizers.md")).expect("docs/optimizers.md"),
        std::fs::read_to_string(root().join("docs/instruction-search.md"))
            .expect("docs/instruction-search.md"),
    ]
    .join("\n");
    let all = list_json();
    for o in &all {
        let name = o["name"].as_str().unwrap_or("");
        let open = format!("<!-- settings: {name} -->\n");
        let expected = table(o);
        let found = docs.find(&open).map(|i| {
            let rest = &docs[i + open.len()..];
            rest[..rest.find("<!-- /settings -->").unwrap_or(rest.len())].to_string()
        });
        assert_eq!(
            found.as_deref(),
            Some(expected.as_str()),
            "docs disagree with the registry for `{name}`; the block should read:\n{open}{expected}<!-- /settings -->"
        );
    }
    // No table for an optimizer the registry does not have.
    for (i, _) in docs.match_indices("<!-- settings: ") {
        let name = docs[i + 15..].split(' ').next().unwrap_or("");
        assert!(
            all.iter().any(|o| o["name"] == name),
            "docs table for unknown optimizer `{name}`"
        );
    }
}

/// Runs `lmc compile` under `script` (a pseudo-terminal), returning what
/// the terminal saw; `None` when `script` is not installed.
fn in_terminal(args: &[String]) -> Option<(i32, String)> {
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("skipping: `script` (util-linux) is not installed");
        return None;
    }
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let line = format!("'{}' {}", env!("CARGO_BIN_EXE_lmc"), quoted.join(" "));
    // `script` runs lmc with the environment `lmc()` sets (a fresh cache).
    let cmd = lmc();
    let mut sh = std::process::Command::new("script");
    sh.args(["-qefc", &line, "/dev/null"]).current_dir(root());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let (code, out, err) = run(&mut sh);
    // Styles off: what matters is the text the terminal shows.
    let ansi = regex::Regex::new("\x1b\\[[0-9;?]*[A-Za-z]").expect("ansi regex");
    Some((
        code,
        ansi.replace_all(&format!("{out}{err}"), "").into_owned(),
    ))
}

#[test]
fn issue12_every_optimizer_shows_a_progress_bar_with_the_best_so_far() {
    let stub = crate::support::stub::StubServer::builder()
        .latency(std::time::Duration::from_millis(2))
        .start(sentiment_handler());
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, opts) in RUNS {
        let out = dir.path().join(format!("{name}.json"));
        let mut args: Vec<String> = [
            "compile",
            "programs/sentiment.yaml",
            "--optimizer",
            name,
            "--train-limit",
            "12",
            "--val-limit",
            "8",
            "--provider",
            "openai",
            "--model",
            "scripted",
            "--concurrency",
            "2",
            "--base-url",
            &stub.url(),
            "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(out.display().to_string());
        for o in *opts {
            args.push("--opt".into());
            args.push(o.to_string());
        }
        let Some((code, seen)) = in_terminal(&args) else {
            return;
        };
        assert_eq!(code, 0, "{name}: {seen}");
        assert!(
            seen.contains("evaluating ["),
            "{name}: no progress bar:\n{seen}"
        );
        assert!(seen.contains("best 0."), "{name}: no best-so-far:\n{seen}");
        // The same run with --json or -q draws nothing on the terminal.
        for quiet in ["--json", "-q"] {
            let mut a = args.clone();
            a.push(quiet.into());
            let (code, seen) = in_terminal(&a).expect("script ran above");
            assert_eq!(code, 0, "{name} {quiet}: {seen}");
            for phase in ["evaluating [", "minibatch [", "bootstrapping ["] {
                assert!(
                    !seen.contains(phase),
                    "{name} {quiet}: a bar was drawn:\n{seen}"
                );
            }
        }
    }
}

#[test]
fn issue12_prompt_lm_runs_the_same_checks_as_every_entry_point() {
    // A program without predictors: `--prompt-lm` used to call the
    // instruction search directly and skip this check.
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus.jsonl");
    std::fs::write(&corpus, "{\"title\": \"a\", \"text\": \"alpha beta\"}\n").expect("corpus");
    let prog = dir.path().join("search.yaml");
    std::fs::write(
        &prog,
        format!(
            "name: search\ntools:\n  docs: {{kind: retrieve, corpus: {}, k: 1}}\ninputs:\n  query: str\nnodes:\n  find:\n    kind: retrieve\n    tool: docs\n    inputs:\n      query: input.query\noutputs:\n  passages: find.passages\n",
            corpus.display()
        ),
    )
    .expect("program");
    let data = dir.path().join("d.csv");
    std::fs::write(&data, "query,passages\nalpha,\"[\"\"x\"\"]\"\n").expect("data");
    for extra in [
        &[][..],
        &[
            "--prompt-lm",
            "other",
            "--prompt-base-url",
            "http://127.0.0.1:9/v1",
        ][..],
    ] {
        let (code, out, err) = run(lmc()
            .arg("compile")
            .arg(&prog)
            .arg("--trainset")
            .arg(&data)
            .args([
                "--optimizer",
                "copro",
                "--provider",
                "openai",
                "--model",
                "m",
            ])
            .args(["--base-url", "http://127.0.0.1:9/v1", "-q", "-o"])
            .arg(dir.path().join("out.json"))
            .args(extra));
        assert_ne!(code, 0, "{extra:?}: {out}{err}");
        assert!(err.contains("no predictors"), "{extra:?}: {err}");
    }
}
