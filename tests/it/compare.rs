//! `lmc compare` (issue 15) through the real binary: the shipped sentiment
//! program and an artifact compiled from it, each under two LM variants
//! pointing at two local stub servers that answer differently. The table,
//! the paired test (exact McNemar, with p-values worked out by hand), the
//! flipped rows and `--fail-if-worse`'s exit code are checked against known
//! answers, including a difference that is not significant (gate exits 0).
//! The HTML report is checked in headless Chromium when it is installed.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::senti::{csv, label, other, reply, row_of};
use crate::support::stub::{StubReply, StubServer};
use crate::support::{lmc, root, run};

/// A stub that answers right except on the `wrong` rows.
fn scripted(wrong: &[usize]) -> StubServer {
    let wrong: HashSet<usize> = wrong.iter().copied().collect();
    StubServer::start(move |req| {
        let row = row_of(req);
        if wrong.contains(&row) {
            StubReply::Ok(reply(other(label(row))))
        } else {
            StubReply::Ok(reply(label(row)))
        }
    })
}

/// A temp dir with a 30-row dataset, a train set, and an artifact compiled
/// from programs/sentiment.yaml (labeled few-shot: demos, no LM call).
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(rows: usize) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dev.csv"), csv(1..=rows)).unwrap();
        std::fs::write(dir.path().join("train.csv"), csv(101..=104)).unwrap();
        let s = Setup { dir };
        let stub = scripted(&[]);
        let mut c = lmc();
        c.arg("compile")
            .arg(root().join("programs/sentiment.yaml"))
            .args([
                "--optimizer",
                "labeled_few_shot",
                "--opt",
                "k=2",
                "--trainset",
            ])
            .arg(s.path("train.csv"))
            .arg("--valset")
            .arg(s.path("train.csv"))
            .args(["--quiet", "-o"])
            .arg(s.path("sentiment.compiled.json"));
        stub_env(&mut c, &stub.url(), &s.path("cache"));
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 0, "compile failed: {err}");
        s
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `lmc compare programs/sentiment.yaml ARTIFACT` with variants `a`
    /// (stub `sa`, model stub-a) and `b` (stub `sb`, model stub-b).
    fn compare(&self, sa: &StubServer, sb: &StubServer, extra: &[&str]) -> Command {
        let mut c = lmc();
        c.current_dir(self.dir.path())
            .arg("compare")
            .arg(root().join("programs/sentiment.yaml"))
            .arg("sentiment.compiled.json")
            .args(["--dataset", "dev.csv", "--quiet"])
            .arg("--lm-variant")
            .arg(format!("a=model=stub-a,base_url={}", sa.url()))
            .arg("--lm-variant")
            .arg(format!(
                "b=model=stub-b,base_url={},price_prompt_per_mtok=1,price_completion_per_mtok=2",
                sb.url()
            ))
            .args(extra);
        stub_env(&mut c, "", &self.path("cache"));
        c
    }
}

/// OpenAI provider, a private cache, nothing from the developer's env.
fn stub_env(c: &mut Command, base_url: &str, cache: &Path) {
    c.args(["--provider", "openai"]);
    if !base_url.is_empty() {
        c.args(["--model", "stub", "--base-url", base_url]);
    }
    c.env("LMC_CACHE_DIR", cache)
        .env_remove("OPENAI_API_KEY")
        .env_remove("LMC_BASE_URL")
        .env_remove("LMC_PROVIDER")
        .env_remove("LMC_MODEL");
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

#[test]
fn significantly_worse_variant_fails_the_gate_with_exact_mcnemar() {
    let s = Setup::new(30);
    let sa = scripted(&[]); // right on all 30
    let sb = scripted(&[1, 2, 3, 4, 5, 6, 7, 8]); // wrong on 8
    let (code, out, err) = run(&mut s.compare(&sa, &sb, &["--json", "--fail-if-worse"]));
    assert_eq!(code, 1, "gate must fail\n{out}\n{err}");
    assert!(err.contains("gate fail-if-worse failed"), "{err}");
    assert!(err.contains("sentiment.yaml @ b is worse"), "{err}");
    let r = json(&out);
    assert_eq!(r["format"], "lmc-compare/1");
    let names: Vec<&str> = r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sentiment.yaml @ a",
            "sentiment.yaml @ b",
            "sentiment.compiled.json @ a",
            "sentiment.compiled.json @ b"
        ]
    );
    assert!(close(&r["cells"][0]["summary"]["mean"], 1.0));
    assert!(close(&r["cells"][1]["summary"]["mean"], 22.0 / 30.0));
    assert_eq!(r["cells"][1]["model"], "stub-b");
    // Only the priced variant has a cost per 1,000 examples.
    assert!(r["cells"][0]["cost_per_1k"].is_null());
    assert!(r["cells"][1]["cost_per_1k"].as_f64().unwrap() > 0.0);
    let cmp = &r["comparisons"];
    assert_eq!(cmp.as_array().unwrap().len(), 3);
    // Cell 2 vs reference: 8 regressions, 0 improvements:
    // one-sided P(X >= 8 | n = 8, 1/2) = 1/256; two-sided 2/256.
    let b = &cmp[0];
    assert_eq!(b["cell"], 1);
    assert_eq!(b["test"], "mc_nemar_exact");
    assert!(close(&b["p_worse"], 1.0 / 256.0), "{b}");
    assert!(close(&b["p_two_sided"], 2.0 / 256.0), "{b}");
    assert!(close(&b["mean_diff"], -8.0 / 30.0), "{b}");
    assert_eq!(b["significantly_worse"], true);
    let worse: Vec<u64> = b["worse_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(worse, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(b["better_rows"].as_array().unwrap().len(), 0);
    // The artifact answers like the program under the same LM: no flips.
    let art_a = &cmp[1];
    assert_eq!(art_a["cell"], 2);
    assert!(close(&art_a["p_worse"], 1.0) && close(&art_a["mean_diff"], 0.0));
    assert_eq!(art_a["significantly_worse"], false);
    assert_eq!(cmp[2]["significantly_worse"], true);
    // Both servers were used, one request per example and cell (the
    // artifact's prompts differ from the program's: demos).
    assert_eq!(sa.requests(), 60, "stub a");
    assert_eq!(sb.requests(), 60, "stub b");
    assert_eq!(r["examples"].as_array().unwrap().len(), 30);
}

#[test]
fn a_difference_that_is_not_significant_passes_the_gate() {
    let s = Setup::new(30);
    let sa = scripted(&[4]); // the reference misses row 4
    let sb = scripted(&[1, 2, 3]); // the candidate misses 1-3, gets 4
    let md = s.path("summary.md");
    let (code, out, err) = run(&mut s.compare(
        &sa,
        &sb,
        &["--fail-if-worse", "--markdown", md.to_str().unwrap()],
    ));
    // 3 regressions, 1 improvement: P(X >= 3 | n = 4, 1/2) = 5/16.
    assert_eq!(code, 0, "not significant: the gate passes\n{out}\n{err}");
    eprintln!("{out}");
    assert!(out.contains("p(worse)"), "{out}");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("2 ") && l.contains("@ b"))
        .unwrap_or_else(|| panic!("no row for cell 2:\n{out}"));
    assert!(line.contains("-0.0667"), "{line}");
    assert!(line.contains("0.3125"), "{line}");
    assert!(line.contains("3/1"), "{line}");
    assert!(!line.contains("WORSE"), "{line}");
    assert!(
        out.contains("#2 vs #1: -0.0667, McNemar's exact test"),
        "{out}"
    );
    assert!(
        out.contains("sentiment.yaml @ b worse on rows 1, 2, 3"),
        "{out}"
    );
    assert!(out.contains("sentiment.yaml @ b better on rows 4"), "{out}");
    assert!(out.contains("gate fail-if-worse passed"), "{out}");
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("| 2 | sentiment.yaml @ b | `stub-b` |"), "{md}");
    assert!(md.contains("0.3125"), "{md}");
    assert!(md.contains("**Gate passed**"), "{md}");

    // The same run with the candidate as reference: cell 1 is now the
    // candidate and is better, so nothing is worse.
    let (code, out, err) =
        run(&mut s.compare(&sa, &sb, &["--fail-if-worse", "--reference", "2", "--json"]));
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["reference"], 1);
    // Now 1 regression (row 4) against 3 improvements: P(X >= 1 | n = 4) = 15/16.
    assert!(
        close(&r["comparisons"][0]["p_worse"], 15.0 / 16.0),
        "{}",
        r["comparisons"]
    );
}

#[test]
fn bad_variants_and_references_are_input_errors() {
    let s = Setup::new(4);
    let sa = scripted(&[]);
    let sb = scripted(&[]);
    let (code, _, err) = run(&mut s.compare(&sa, &sb, &["--lm-variant", "c=modle=x"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `model`"), "{err}");
    let (code, _, err) = run(&mut s.compare(&sa, &sb, &["--reference", "9"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--reference 9 is not a cell: there are 4"),
        "{err}"
    );
    // Two variants that differ only by URL would share cached replies.
    let mut c = lmc();
    c.current_dir(s.dir.path())
        .arg("compare")
        .arg(root().join("programs/sentiment.yaml"))
        .args(["--dataset", "dev.csv", "--quiet"])
        .arg("--lm-variant")
        .arg(format!("a=model=m,base_url={}", sa.url()))
        .arg("--lm-variant")
        .arg(format!("b=model=m,base_url={}", sb.url()));
    stub_env(&mut c, "", &s.path("cache"));
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("differ only in their base URL"), "{err}");
    assert_eq!(
        sa.requests() + sb.requests(),
        0,
        "no LM call before the check"
    );

    // Two programs scored by different metrics cannot be paired.
    let program = std::fs::read_to_string(root().join("programs/sentiment.yaml")).unwrap();
    let f1 = program.replace(
        "metric: {type: exact_match, field: sentiment}",
        "metric: {type: f1, field: sentiment}",
    );
    assert_ne!(f1, program);
    std::fs::write(s.path("f1.yaml"), f1.replace("../datasets/sst2/", "")).unwrap();
    let mut c = lmc();
    c.current_dir(s.dir.path())
        .arg("compare")
        .arg(root().join("programs/sentiment.yaml"))
        .arg("f1.yaml")
        .args(["--dataset", "dev.csv", "--quiet"]);
    stub_env(&mut c, &sa.url(), &s.path("cache"));
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a comparison needs one metric"), "{err}");
    assert_eq!(sa.requests(), 0);
}

/// The compare report in a real browser: no script error, its four plots
/// rendered with marks, flips outlined, the examples table filters.
#[test]
fn compare_html_renders_plots_in_chromium() {
    if !crate::support::browser::available() {
        return;
    }
    let s = Setup::new(24);
    let sa = scripted(&[4]);
    let sb = scripted(&[1, 2, 3, 10, 12]);
    let html = s.path("compare.html");
    let (code, _, err) = run(&mut s.compare(&sa, &sb, &["--html", html.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        !text.contains("<script src") && !text.contains("<link"),
        "self-contained: no external script or stylesheet"
    );
    let shot = std::env::var("LMC_CHECK_HTML_SCREENSHOT_COMPARE").ok();
    let (code, out, err) = crate::support::browser::check(&html, true, "number 1", shot.as_deref());
    eprintln!("{out}");
    assert_eq!(code, 0, "browser checks failed:\n{out}\n{err}");
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(seen["plots"], 4, "{seen}");
    assert_eq!(seen["script_errors"].as_array().unwrap().len(), 0, "{seen}");
    // Cells 2 and 4 differ from the reference on rows 1-4, 10, 12: 6 each.
    assert_eq!(seen["flips"], 12, "{seen}");
    assert_eq!(seen["total"], 24, "{seen}");

    // The checker itself fails on a page that throws or has no plot.
    let broken = s.path("broken.html");
    std::fs::write(
        &broken,
        text.replace("</body>", "<script>throw new Error('boom')</script></body>"),
    )
    .unwrap();
    let plotless = s.path("plotless.html");
    std::fs::write(&plotless, text.replace("class=\"plot\"", "class=\"gone\"")).unwrap();
    for (page, want) in [(&broken, "boom"), (&plotless, "rendered plot")] {
        let (code, out, _) = crate::support::browser::check(page, true, "number 1", None);
        assert_eq!(code, 1, "{}: the check must fail\n{out}", page.display());
        assert!(out.contains(want), "{out}");
    }
}

/// All cells share one concurrency budget: with `--concurrency 2`, two
/// cells of 12 examples against servers that take 200 ms per reply need at
/// least 24 × 0.2 / 2 = 2.4 s. Per-cell budgets (2 each, 4 in flight) would
/// finish in about half that.
#[test]
fn cells_share_one_concurrency_budget() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dev.csv"), csv(1..=12)).unwrap();
    let slow = || {
        StubServer::builder()
            .latency(std::time::Duration::from_millis(200))
            .start(|req| StubReply::Ok(reply(label(row_of(req)))))
    };
    let (sa, sb) = (slow(), slow());
    let mut c = lmc();
    c.current_dir(dir.path())
        .arg("compare")
        .arg(root().join("programs/sentiment.yaml"))
        .args(["--dataset", "dev.csv", "--quiet", "--concurrency", "2"])
        .arg("--lm-variant")
        .arg(format!("a=model=stub-a,base_url={}", sa.url()))
        .arg("--lm-variant")
        .arg(format!("b=model=stub-b,base_url={}", sb.url()));
    stub_env(&mut c, "", &dir.path().join("cache"));
    let started = std::time::Instant::now();
    let (code, out, err) = run(&mut c);
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(sa.requests() + sb.requests(), 24);
    assert!(
        wall >= 2.4,
        "24 calls of 200 ms, 2 at a time, took {wall:.2} s"
    );
}

/// SIGINT mid-comparison: one notice (not one per cell), exit 130 whatever
/// the gate would say, and the reports written from what finished, marked
/// incomplete.
#[test]
fn sigint_mid_compare_exits_130_with_incomplete_reports() {
    use crate::interrupt::{Running, DEADLINE};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dev.csv"), csv(1..=40)).unwrap();
    let slow = |wrong: bool| {
        StubServer::builder()
            .latency(std::time::Duration::from_millis(250))
            .start(move |req| {
                let l = label(row_of(req));
                StubReply::Ok(reply(if wrong { other(l) } else { l }))
            })
    };
    // b is wrong everywhere: a complete run would fail the gate (exit 1).
    let (sa, sb) = (slow(false), slow(true));
    let mut c = lmc();
    c.current_dir(dir.path())
        .arg("compare")
        .arg(root().join("programs/sentiment.yaml"))
        .args(["--dataset", "dev.csv", "--quiet", "--concurrency", "2"])
        .args(["--fail-if-worse", "--json", "--html", "c.html"])
        .arg("--lm-variant")
        .arg(format!("a=model=stub-a,base_url={}", sa.url()))
        .arg("--lm-variant")
        .arg(format!("b=model=stub-b,base_url={}", sb.url()))
        .env_remove("LMC_INTERRUPT_GRACE")
        .stdout(std::fs::File::create(dir.path().join("out.json")).unwrap());
    stub_env(&mut c, "", &dir.path().join("cache"));
    let mut job = Running::spawn(&mut c);
    job.wait_for("6 requests", |_| sa.requests() + sb.requests() >= 6);
    job.signal("INT");
    let (code, _, err) = job.exit_code(DEADLINE);
    assert_eq!(code, 130, "{err}");
    assert_eq!(err.matches("SIGINT: stopping").count(), 1, "{err}");
    assert!(err.contains("re-running the same command resumes"), "{err}");
    let text = std::fs::read_to_string(dir.path().join("out.json")).unwrap();
    let r = json(&text);
    assert_eq!(r["complete"], false, "{r}");
    let n: u64 = r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["summary"]["n"].as_u64().unwrap())
        .sum();
    assert!((1..80).contains(&n), "examples done across cells: {n}");
    let html = std::fs::read_to_string(dir.path().join("c.html")).unwrap();
    assert!(html.contains("<b>Incomplete</b>"), "the HTML says so");
}

/// A variant `lm=NAME` runs the cell on a named LM of the program's
/// `lms:` (resolved like any other LM): each cell's requests reach its own
/// server with its own model, and an unknown name is an input error with a
/// did-you-mean before any call.
#[test]
fn a_variant_can_run_a_named_lm_of_the_program() {
    let s = Setup::new(12);
    let sa = scripted(&[]);
    let sb = scripted(&[1, 2, 3]);
    let program = std::fs::read_to_string(root().join("programs/sentiment.yaml")).unwrap();
    let program = format!(
        "{program}\nlms:\n  alt: {{provider: openai, model: stub-b, base_urls: [\"{}\"]}}\n",
        sb.url()
    );
    std::fs::write(s.path("two.yaml"), program).unwrap();
    let compare = |variant: &str| {
        let mut c = lmc();
        c.current_dir(s.path(""))
            .args([
                "compare",
                "two.yaml",
                "--dataset",
                "dev.csv",
                "--quiet",
                "--json",
            ])
            .arg("--lm-variant")
            .arg(format!("main=model=stub-a,base_url={}", sa.url()))
            .arg("--lm-variant")
            .arg(variant);
        stub_env(&mut c, "", &s.path("cache"));
        c
    };
    let (code, out, err) = run(&mut compare("alt=lm=alt"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(sa.requests(), 12, "the main cell runs on stub a");
    assert_eq!(
        sb.requests(),
        12,
        "the alt cell runs on the named LM's server"
    );
    assert!(sb.received().iter().all(|r| r["model"] == "stub-b"));
    let j = json(&out);
    let cells = j["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    assert!(close(&cells[0]["summary"]["mean"], 1.0), "{}", cells[0]);
    assert!(close(&cells[1]["summary"]["mean"], 0.75), "{}", cells[1]);
    assert_eq!(cells[1]["model"], "stub-b");

    let (code, _, err) = run(&mut compare("alt=lm=alx"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `alt`"), "{err}");
    assert_eq!(sa.requests() + sb.requests(), 24, "no call for a bad name");
}
