//! Issue #11, bounded parsing: hostile or careless inputs (alias bombs, deep
//! nesting, allocation-sizing numbers, malformed artifacts and imports)
//! exit 2 with a located diagnostic, quickly and in little memory, through
//! the real binary. Memory is measured as the child's peak RSS with
//! `/usr/bin/time` and asserted with a wide margin; no wall-clock assertion
//! beyond a generous ceiling, so the tests are not timing-flaky.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{lmc, root, run};

/// Peak RSS allowed for a refused input (the issue asks for under 100 MB).
const MAX_RSS_KB: u64 = 100 * 1024;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Run `lmc args...` in `dir`, returning (code, stderr, peak RSS in KB when
/// `/usr/bin/time` is there to measure it).
fn run_measured(dir: &Path, args: &[&str]) -> (i32, String, Option<u64>) {
    let time = Path::new("/usr/bin/time");
    let start = Instant::now();
    let (code, stderr, rss) = if time.exists() {
        let bin = lmc().get_program().to_owned();
        let mut c = Command::new(time);
        c.arg("-f").arg("LMC_PEAK_RSS_KB=%M").arg(bin).args(args);
        c.current_dir(dir).env_remove("LMC_PROGRAM");
        c.env("LMC_CACHE_DIR", dir.join("cache"));
        let (code, _, err) = run(&mut c);
        let rss = err
            .lines()
            .find_map(|l| l.strip_prefix("LMC_PEAK_RSS_KB="))
            .and_then(|n| n.trim().parse().ok());
        (code, err, rss)
    } else {
        let (code, _, err) = run(lmc().current_dir(dir).args(args));
        (code, err, None)
    };
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    (code, stderr, rss)
}

fn assert_small(rss: Option<u64>, what: &str) {
    if let Some(kb) = rss {
        assert!(kb < MAX_RSS_KB, "{what}: peak RSS {kb} KB");
    } else {
        eprintln!("note: /usr/bin/time not found, {what}: memory not measured");
    }
}

/// The 9×9 "billion laughs" document: 9^9 `lol`s if aliases were expanded.
fn alias_bomb() -> String {
    let mut s = String::from("name: bomb\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let mut prev = 'a';
    for c in "bcdefghi".chars() {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        s.push_str(&format!("{c}: &{c} [{refs}]\n"));
        prev = c;
    }
    s
}

#[test]
fn issue_11_alias_bomb_exits_2_located_in_little_memory() {
    let dir = tmp();
    std::fs::write(dir.path().join("bomb.yaml"), alias_bomb()).unwrap();
    let (code, err, rss) = run_measured(dir.path(), &["check", "bomb.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("aliases expand"), "{err}");
    assert!(err.contains("bomb.yaml:"), "{err}");
    assert!(err.contains("= help:"), "{err}");
    assert_small(rss, "alias bomb");
}

#[test]
fn issue_11_alias_bomb_in_the_project_file_is_refused_too() {
    let dir = tmp();
    std::fs::write(dir.path().join("lmc.yaml"), alias_bomb()).unwrap();
    let (code, err, rss) = run_measured(dir.path(), &["check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lmc.yaml"), "{err}");
    assert!(err.contains("aliases expand"), "{err}");
    assert_small(rss, "alias bomb in lmc.yaml");
}

fn program_with_output_type(ty: &str) -> String {
    format!(
        "name: deep\nsignatures:\n  s:\n    inputs: {{q: str}}\n    outputs:\n      a: {ty}\n\
         inputs: {{q: str}}\nnodes:\n  n: {{kind: predict, signature: s, inputs: {{q: input.q}}}}\n\
         outputs: {{a: n.a}}\n"
    )
}

#[test]
fn issue_11_type_nested_20000_deep_exits_2_located() {
    let dir = tmp();
    let ty = format!("{}str{}", "list[".repeat(20_000), "]".repeat(20_000));
    std::fs::write(dir.path().join("deep.yaml"), program_with_output_type(&ty)).unwrap();
    let (code, err, rss) = run_measured(dir.path(), &["check", "deep.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nested more than"), "{err}");
    assert!(err.contains("deep.yaml:6:10"), "{err}");
    assert!(err.contains("signatures.s.outputs.a"), "{err}");
    // The message quotes a clipped type, not 120 KB of it.
    assert!(err.len() < 2_000, "{} bytes of stderr", err.len());
    assert_small(rss, "deep type");
}

#[test]
fn issue_11_deep_yaml_nesting_exits_2_located() {
    let dir = tmp();
    let flow = format!(
        "name: x\ndescription: {}1{}\n",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    std::fs::write(dir.path().join("flow.yaml"), flow).unwrap();
    let block: String = std::iter::once("name: x\n".to_string())
        .chain((0..5_000).map(|i| format!("{}k{i}:\n", " ".repeat(i))))
        .collect();
    std::fs::write(dir.path().join("block.yaml"), block).unwrap();
    for f in ["flow.yaml", "block.yaml"] {
        let (code, err, rss) = run_measured(dir.path(), &["check", f]);
        assert_eq!(code, 2, "{f}: {err}");
        assert!(err.contains("nested more than"), "{f}: {err}");
        assert!(err.contains(&format!("{f}:")), "{f}: {err}");
        assert_small(rss, f);
    }
}

/// An artifact for the shipped sentiment program, made by `lmc import`.
fn artifact(dir: &Path) -> serde_json::Value {
    let dspy = dir.join("dspy.json");
    std::fs::write(
        &dspy,
        r#"{"classify": {"demos": [{"sentence": "great", "sentiment": "positive"}]}}"#,
    )
    .unwrap();
    let out = dir.join("art.json");
    let (code, _, err) = run(lmc()
        .arg("import")
        .arg(&dspy)
        .arg("--program")
        .arg(root().join("programs/sentiment.yaml"))
        .arg("-o")
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

fn write_json(path: &Path, v: &serde_json::Value) -> PathBuf {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
    path.to_path_buf()
}

/// `lmc run` on an artifact: the LM is never reached when loading fails.
fn run_artifact(dir: &Path, file: &str) -> (i32, String, Option<u64>) {
    run_measured(
        dir,
        &[
            "run",
            file,
            "--input",
            "sentence=hi",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
        ],
    )
}

#[test]
fn issue_11_huge_knn_k_artifact_exits_2_located() {
    let dir = tmp();
    let mut a = artifact(dir.path());
    a["predictors"]["classify"]["knn"] = serde_json::json!({
        "k": 1_000_000_000_000_000u64,
        "input_fields": ["sentence"],
        "pool": [{"fields": {"sentence": "x", "sentiment": "positive"}}]
    });
    write_json(&dir.path().join("huge.json"), &a);
    let (code, err, rss) = run_artifact(dir.path(), "huge.json");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("kNN `k` is 1000000000000000"), "{err}");
    assert!(err.contains("predictors.classify.knn.k"), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("--> huge.json:"))
        .unwrap_or("");
    let loc: Vec<&str> = line.rsplit(':').take(2).collect();
    assert!(
        loc.len() == 2 && loc.iter().all(|n| n.parse::<usize>().is_ok()),
        "{err}"
    );
    assert_small(rss, "huge k");
}

#[test]
fn issue_11_malformed_artifact_reports_every_problem_at_once() {
    let dir = tmp();
    let mut a = artifact(dir.path());
    a["predictors"]["classify"]["demos"][0]["augmented"] = "yes".into();
    a["predictors"]["other"] =
        serde_json::json!({"knn": {"k": 5000, "input_fields": [], "pool": []}});
    a["lineage"]["seed"] = "not a number".into();
    write_json(&dir.path().join("bad.json"), &a);
    let (code, err, _) = run_artifact(dir.path(), "bad.json");
    assert_eq!(code, 2, "{err}");
    // `lmc check` validates artifacts the same way.
    let (code, _, check_err) = run(lmc().current_dir(dir.path()).args(["check", "bad.json"]));
    assert_eq!(code, 2, "{check_err}");
    assert!(check_err.contains("3 errors found"), "{check_err}");
    for want in [
        "predictors.classify.demos[0].augmented",
        "predictors.other.knn.k",
        "lineage.seed",
        "3 errors found",
    ] {
        assert!(err.contains(want), "missing {want}: {err}");
    }
    assert_eq!(err.matches("--> bad.json:").count(), 3, "{err}");

    std::fs::write(
        dir.path().join("cut.json"),
        r#"{"format": "lmc.artifact", "predictors": {"#,
    )
    .unwrap();
    let (code, err, _) = run_artifact(dir.path(), "cut.json");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cut.json:1:"), "{err}");
    assert!(err.contains("ends early"), "{err}");
}

/// `lmc import FILE --program programs/sentiment.yaml -o OUT`.
fn import(file: &Path, out: &Path) -> (i32, String, String) {
    run(lmc()
        .arg("import")
        .arg(file)
        .arg("--program")
        .arg(root().join("programs/sentiment.yaml"))
        .arg("-o")
        .arg(out))
}

#[test]
fn issue_11_dspy_import_reports_every_problem_located() {
    let dir = tmp();
    let dspy = dir.path().join("saved.json");
    std::fs::write(
        &dspy,
        "{\n  \"classify\": {\"demos\": [3], \"signature\": {\"fields\": [{}]}},\n  \"nope\": {}\n}\n",
    )
    .unwrap();
    let (code, _, err) = import(&dspy, &dir.path().join("out.json"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("saved.json:2:26"), "{err}");
    assert!(err.contains("classify.demos[0]"), "{err}");
    assert!(err.contains("classify.signature.fields"), "{err}");
    assert!(err.contains("saved.json:3:"), "{err}");
    assert!(err.contains("3 errors found"), "{err}");
    assert!(!dir.path().join("out.json").exists());

    let knn = dir.path().join("knn.json");
    std::fs::write(
        &knn,
        r#"{"classify": {"lmc_knn": {"k": 99999999999, "input_fields": [], "pool": []}}}"#,
    )
    .unwrap();
    let (code, _, err) = import(&knn, &dir.path().join("out.json"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("classify.lmc_knn.k"), "{err}");
    assert!(err.contains("knn.json:1:"), "{err}");
}

#[test]
fn issue_11_long_enums_load() {
    // 20,000 values took seconds with the quadratic duplicate check; the
    // scaling figures are in scripts/load-scaling.sh, not timed here.
    let dir = tmp();
    let vals: Vec<String> = (0..20_000).map(|i| format!("v{i}")).collect();
    let ty = format!("enum[{}]", vals.join(", "));
    std::fs::write(dir.path().join("e.yaml"), program_with_output_type(&ty)).unwrap();
    let (code, err, _) = run_measured(dir.path(), &["check", "e.yaml"]);
    assert_eq!(code, 0, "{err}");
    let dup = format!("enum[{}, v7]", vals.join(", "));
    std::fs::write(dir.path().join("d.yaml"), program_with_output_type(&dup)).unwrap();
    let (code, err, _) = run_measured(dir.path(), &["check", "d.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("duplicate value `v7`"), "{err}");
    assert!(err.len() < 2_000, "{} bytes of stderr", err.len());
}

#[test]
fn issue_11_oversized_cassette_line_is_refused() {
    let dir = tmp();
    let mut f = std::fs::File::create(dir.path().join("c.jsonl")).unwrap();
    use std::io::Write;
    // 65 MiB without a newline: more than one entry may take.
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..65 {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let (code, err, rss) = run_measured(dir.path(), &["cache", "import", "c.jsonl"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("line 1") && err.contains("longer than"),
        "{err}"
    );
    assert!(rss.is_none_or(|kb| kb < 200 * 1024), "peak RSS {rss:?} KB");
}

#[test]
fn issue_11_huge_attempt_counts_are_refused_at_load() {
    // `n: 4000000000` made `lmc check` loop for minutes.
    let dir = tmp();
    std::fs::write(
        dir.path().join("m.yaml"),
        "name: m\nsignatures:\n  s: \"q -> a\"\ninputs: {q: str}\nnodes:\n  \
         n: {kind: multi_chain_comparison, signature: s, n: 4000000000, inputs: {q: input.q}}\n\
         outputs: {a: n.a}\n",
    )
    .unwrap();
    let (code, err, _) = run_measured(dir.path(), &["check", "m.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`n` is 4000000000; at most 1000"), "{err}");
    assert!(err.contains("m.yaml:6:"), "{err}");
}
