//! Named LMs (issue 16): `lms:` in the program and lmc.yaml, `lm: NAME` on
//! nodes, on the `llm_judge` metric and on optimizer roles, usage per LM,
//! `lmc config` with the source of every value, and the credential rule
//! for named LMs. Every test runs the real binary against local stub
//! servers, one per LM, and checks which server each request reached.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, root, run};

/// `lmc` with no LM setting from the developer's environment.
fn clean() -> Command {
    let mut c = lmc();
    for v in [
        "LMC_BASE_URL",
        "LMC_PROVIDER",
        "LMC_HTTP_MODEL",
        "LMC_MODEL",
        "OPENAI_API_KEY",
    ] {
        c.env_remove(v);
    }
    c
}

/// Replies for text_to_sql's three signatures, chosen by instructions.
fn sql_reply(req: &StubRequest) -> StubReply {
    let sys = req.system();
    let text = if sys.contains("Pick the database tables") {
        "[[ ## relevant_tables ## ]]\n[\"singer\"]\n\n[[ ## completed ## ]]"
    } else if sys.contains("Write one SQLite SELECT") {
        "[[ ## reasoning ## ]]\nCount the rows.\n\n[[ ## sql ## ]]\nSELECT count(*) FROM singer\n\n[[ ## completed ## ]]"
    } else {
        "[[ ## answer ## ]]\nThere are 6 singers.\n\n[[ ## completed ## ]]"
    };
    StubReply::Ok(text.to_string())
}

/// The system prompts a stub received.
fn systems(stub: &StubServer) -> Vec<String> {
    stub.received()
        .iter()
        .map(|b| {
            b["messages"][0]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn lm_usage<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["lms"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("no usage for LM `{name}` in {}", report["lms"]))
}

#[test]
fn text_to_sql_sends_each_node_to_its_own_lm_and_reports_usage_per_lm() {
    let strong = StubServer::start(sql_reply);
    let small = StubServer::start(sql_reply);
    let reports = tempfile::tempdir().unwrap();
    let (md, html) = (reports.path().join("r.md"), reports.path().join("r.html"));
    let (code, out, err) = run(clean()
        .args([
            "eval",
            "programs/text_to_sql.yaml",
            "--limit",
            "2",
            "--json",
        ])
        .args(["--provider", "openai", "--model", "big", "--base-url"])
        .arg(strong.url())
        .args(["--lm", &format!("small.base_urls={}", small.url())])
        .args(["--lm", "small.model=tiny"])
        .arg("--markdown")
        .arg(&md)
        .arg("--html")
        .arg(&html));
    assert_eq!(code, 0, "{err}");
    // Table picking went to the small LM only, SQL and answers to the default.
    let small_sys = systems(&small);
    assert_eq!(small_sys.len(), 2, "{small_sys:?}");
    assert!(small_sys
        .iter()
        .all(|s| s.contains("Pick the database tables")));
    let strong_sys = systems(&strong);
    assert_eq!(strong_sys.len(), 4, "{strong_sys:?}");
    assert!(strong_sys
        .iter()
        .all(|s| !s.contains("Pick the database tables")));
    assert!(small.received().iter().all(|b| b["model"] == "tiny"));
    assert!(strong.received().iter().all(|b| b["model"] == "big"));
    // Usage per LM in --json, next to the unchanged totals.
    let report: Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(lm_usage(&report, "small")["calls"], 2);
    assert_eq!(lm_usage(&report, "small")["model"], "tiny");
    assert_eq!(lm_usage(&report, "default")["calls"], 4);
    assert!(
        lm_usage(&report, "small")["prompt_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(report["summary"]["lm_calls"], 6);
    // And on stderr.
    assert!(err.contains("LM small (tiny): 2 calls"), "{err}");
    assert!(err.contains("LM default (big): 4 calls"), "{err}");
    // And in the Markdown and HTML reports.
    let md = std::fs::read_to_string(md).unwrap();
    assert!(
        md.contains("| LM `small` | tiny: 2 calls (cache hits 0)"),
        "{md}"
    );
    assert!(md.contains("| LM `default` | big: 4 calls"), "{md}");
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("<h2>LMs</h2>"));
    assert!(
        html.contains("<tr><td>small</td><td>tiny</td><td>2</td>"),
        "LMs table"
    );
}

/// A word-reversing program whose metric is an LLM judge on the LM `judge`
/// and whose GEPA reflection runs on the LM `reflector`.
fn judged_program(dir: &Path, judge: &StubServer, reflector: &StubServer) {
    let prog = format!(
        "name: reverse\n\
         inputs: {{word: str}}\n\
         nodes:\n  flip: {{kind: predict, signature: word -> answer, inputs: {{word: input.word}}}}\n\
         outputs: {{answer: flip.answer}}\n\
         lms:\n  judge: {{base_urls: [{}], model: judge-m}}\n  reflector: {{base_urls: [{}], model: reflect-m}}\n\
         metric: {{type: llm_judge, lm: judge}}\n\
         compile: {{optimizer: gepa, reflection_lm: reflector, settings: {{max_metric_calls: 24, use_merge: false}}}}\n",
        judge.url(),
        reflector.url()
    );
    std::fs::write(dir.join("prog.yaml"), prog).unwrap();
    std::fs::copy(
        root().join("tests/fixtures/instruction/words.csv"),
        dir.join("words.csv"),
    )
    .unwrap();
}

#[test]
fn llm_judge_and_gepa_reflection_reach_the_lms_the_file_names() {
    let task = StubServer::start(|_| {
        StubReply::Ok("[[ ## answer ## ]]\nlevel\n\n[[ ## completed ## ]]".into())
    });
    let judge = StubServer::start(|_| {
        StubReply::Ok(
            "[[ ## score ## ]]\n0.5\n\n[[ ## feedback ## ]]\nReverse the word.\n\n[[ ## completed ## ]]"
                .into(),
        )
    });
    let reflector = StubServer::start(|_| {
        StubReply::Ok(
            "[[ ## new_instruction ## ]]\nWrite the word in REVERSE order.\n\n[[ ## completed ## ]]"
                .into(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    judged_program(dir.path(), &judge, &reflector);
    let (code, _, err) = run(clean()
        .current_dir(dir.path())
        .args([
            "compile",
            "prog.yaml",
            "--quiet",
            "--json",
            "-o",
            "out.json",
        ])
        .args(["--trainset", "words.csv", "--valset", "words.csv"])
        .args(["--provider", "openai", "--model", "task-m", "--base-url"])
        .arg(task.url()));
    assert_eq!(code, 0, "{err}");
    let judge_sys = systems(&judge);
    let reflect_sys = systems(&reflector);
    let task_sys = systems(&task);
    assert!(!judge_sys.is_empty() && !reflect_sys.is_empty() && !task_sys.is_empty());
    assert!(
        judge_sys.iter().all(|s| s.contains("Judge how well")),
        "{judge_sys:?}"
    );
    assert!(
        reflect_sys
            .iter()
            .all(|s| s.contains("An assistant was given the instruction")),
        "{reflect_sys:?}"
    );
    assert!(task_sys
        .iter()
        .all(|s| !s.contains("Judge how well") && !s.contains("An assistant was given")));
    // The artifact records every LM, without secrets.
    let art: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.json")).unwrap())
            .unwrap();
    assert_eq!(art["lms"]["judge"]["model"], "judge-m");
    assert_eq!(art["lms"]["reflector"]["model"], "reflect-m");
    assert_eq!(art["lm"]["model"], "task-m");
}

#[test]
fn an_unknown_role_or_metric_lm_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubServer::fixed("[[ ## answer ## ]]\nx\n\n[[ ## completed ## ]]");
    judged_program(dir.path(), &stub, &stub);
    let p = dir.path().join("prog.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("lm: judge}", "lm: jugde}")).unwrap();
    let (code, _, err) = run(clean()
        .current_dir(dir.path())
        .args(["eval", "prog.yaml", "--dataset", "words.csv", "--quiet"])
        .args(["--provider", "openai", "--model", "m", "--base-url"])
        .arg(stub.url()));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the metric `llm_judge` names the LM `jugde`, which is not declared"),
        "{err}"
    );
    assert!(err.contains("did you mean `judge`?"), "{err}");
    assert_eq!(stub.requests(), 0);
}

#[test]
fn check_reports_an_unknown_node_lm_with_did_you_mean_and_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prog.yaml"),
        "name: t\n\
         lms:\n  small: {model: s}\n\
         inputs: {q: str}\n\
         nodes:\n  n:\n    kind: predict\n    signature: q -> a\n    inputs: {q: input.q}\n    lm: smal\n\
         outputs: {a: n.a}\n",
    )
    .unwrap();
    let (code, out, err) = run(clean().current_dir(dir.path()).args(["check", "prog.yaml"]));
    assert_eq!(code, 2, "{out}{err}");
    let all = format!("{out}{err}");
    let expected = "error: unknown LM `smal` (not a key of `lms:`)\n  --> prog.yaml:10:9\n   | nodes.n.lm\n   = help: did you mean `small`?";
    assert!(all.contains(expected), "got:\n{all}");
}

/// A project directory (bounded by `.git`) with `prog.yaml` and `lmc.yaml`.
fn layered_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    std::fs::write(
        dir.path().join("prog.yaml"),
        "name: t\n\
         lm:\n  base_urls: [http://127.0.0.1:9/v1]\n  model: prog\n  temperature: 0.5\n\
         lms:\n  small: {model: prog-small}\n\
         inputs: {q: str}\n\
         nodes:\n  n: {kind: predict, signature: q -> a, inputs: {q: input.q}, lm: small}\n\
         outputs: {a: n.a}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lmc.yaml"),
        "program: prog.yaml\nlm:\n  model: proj\n  max_tokens: 100\n",
    )
    .unwrap();
    dir
}

fn config_json(cmd: &mut Command) -> Value {
    let (code, out, err) = run(cmd.arg("--json"));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn config_shows_each_value_and_its_source_flag_env_project_program_default() {
    let dir = layered_project();
    let cfg = || {
        let mut c = clean();
        c.current_dir(dir.path()).arg("config");
        c
    };
    let j = config_json(&mut cfg());
    let d = &j["lms"]["default"];
    // lmc.yaml beats the program; the program beats the default.
    assert_eq!(d["model"]["value"], "proj");
    assert_eq!(d["model"]["source"], "lmc.yaml:3:10");
    assert_eq!(d["max_tokens"]["source"], "lmc.yaml:4:15");
    assert_eq!(d["temperature"]["value"], 0.5);
    assert_eq!(d["temperature"]["source"], "prog.yaml:5:16");
    assert_eq!(d["base_urls"]["source"], "prog.yaml:3:14");
    assert_eq!(d["concurrency"]["value"], 8);
    assert_eq!(d["concurrency"]["source"], "default");
    assert_eq!(d["provider"]["value"], "openai");
    // A named LM: its own entry, the rest from the default.
    let s = &j["lms"]["small"];
    assert_eq!(s["model"]["value"], "prog-small");
    assert_eq!(s["model"]["source"], "prog.yaml:7:18");
    assert_eq!(s["base_urls"]["source"], "prog.yaml:3:14");
    // The environment beats the files.
    let j = config_json(cfg().env("LMC_HTTP_MODEL", "env-m"));
    assert_eq!(j["lms"]["default"]["model"]["value"], "env-m");
    assert_eq!(j["lms"]["default"]["model"]["source"], "env LMC_HTTP_MODEL");
    // A flag beats the environment; --lm NAME.key=value sets a named LM.
    let j = config_json(cfg().env("LMC_HTTP_MODEL", "env-m").args([
        "--model",
        "flag-m",
        "--lm",
        "small.model=flag-s",
    ]));
    assert_eq!(j["lms"]["default"]["model"]["value"], "flag-m");
    assert_eq!(j["lms"]["default"]["model"]["source"], "flag --model");
    assert_eq!(j["lms"]["small"]["model"]["value"], "flag-s");
    assert_eq!(j["lms"]["small"]["model"]["source"], "flag --lm");
    // The text form names the same sources.
    let (code, out, err) = run(&mut cfg());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("default:\n"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("model") && l.contains("proj") && l.ends_with("(lmc.yaml:3:10)")),
        "{out}"
    );
    assert!(out.contains("\nsmall:\n"), "{out}");
    // A misspelt --lm name is refused rather than adding an unused LM.
    let (code, _, err) = run(cfg().args(["--lm", "smal.model=x"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no LM `smal` is declared"), "{err}");
    assert!(err.contains("did you mean `small`?"), "{err}");
}

const SECRET: &str = "sk-test-named-lm-secret-42";

#[test]
fn a_named_lm_gets_no_key_the_file_chose_unless_the_runner_allows_it() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let strong = StubServer::start(move |r| {
        s.lock().unwrap().push(r.authorization.clone());
        StubReply::Ok("[[ ## a ## ]]\nyes\n\n[[ ## completed ## ]]".into())
    });
    let task = StubServer::fixed("[[ ## a ## ]]\nyes\n\n[[ ## completed ## ]]");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prog.yaml"),
        format!(
            "name: t\n\
             lms:\n  strong:\n    base_urls: [{}]\n    model: m\n    api_key_env: MY_LLM_KEY\n\
             inputs: {{q: str}}\n\
             nodes:\n  n: {{kind: predict, signature: q -> a, inputs: {{q: input.q}}, lm: strong}}\n\
             outputs: {{a: n.a}}\n\
             datasets: {{dev: dev.jsonl}}\n",
            strong.url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dev.jsonl"),
        "{\"q\": \"one\", \"a\": \"yes\"}\n",
    )
    .unwrap();
    let eval = || {
        let mut c = clean();
        c.current_dir(dir.path())
            .args(["eval", "prog.yaml", "--quiet", "--json"])
            .args(["--provider", "openai", "--model", "d", "--base-url"])
            .arg(task.url())
            .env("MY_LLM_KEY", SECRET);
        c
    };
    let (code, out, err) = run(&mut eval());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refused to send the API key in `MY_LLM_KEY`"),
        "{err}"
    );
    assert!(
        err.contains("prog.yaml:6:18 (lms.strong.api_key_env)"),
        "{err}"
    );
    assert!(
        err.contains("prog.yaml:4:16 (lms.strong.base_urls)"),
        "{err}"
    );
    assert!(!err.contains(SECRET) && !out.contains(SECRET));
    assert_eq!(
        strong.requests() + task.requests(),
        0,
        "no request before the check"
    );
    // The runner allows the host and names the variable: the key goes there.
    let host = strong
        .url()
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string();
    let (code, _, err) = run(eval().args(["--allow-host", &host, "--allow-key-env", "MY_LLM_KEY"]));
    assert_eq!(code, 0, "{err}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].as_deref(), Some(&format!("Bearer {SECRET}")[..]));
}

#[test]
fn a_bootstrapping_teacher_named_in_compile_runs_on_its_own_lm() {
    // The teacher answers right (reversed), the task LM echoes: the demos
    // come from the teacher's server, the scoring from the task's.
    let reply = |word_rev: bool| {
        move |r: &StubRequest| {
            let word = r
                .last_user()
                .split("[[ ## word ## ]]\n")
                .nth(1)
                .and_then(|rest| rest.lines().next())
                .unwrap_or("")
                .trim()
                .to_string();
            let answer: String = if word_rev {
                word.chars().rev().collect()
            } else {
                word
            };
            StubReply::Ok(format!(
                "[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
            ))
        }
    };
    let task = StubServer::start(reply(false));
    let teacher = StubServer::start(reply(true));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prog.yaml"),
        format!(
            "name: reverse\n\
             inputs: {{word: str}}\n\
             nodes:\n  flip: {{kind: predict, signature: word -> answer, inputs: {{word: input.word}}}}\n\
             outputs: {{answer: flip.answer}}\n\
             lms:\n  teacher: {{base_urls: [{}], model: teacher-m}}\n\
             metric: {{type: exact_match, field: answer}}\n\
             compile: {{optimizer: bootstrap_few_shot, teacher_lm: teacher, settings: {{max_labeled_demos: 0}}}}\n",
            teacher.url()
        ),
    )
    .unwrap();
    std::fs::copy(
        root().join("tests/fixtures/instruction/words.csv"),
        dir.path().join("words.csv"),
    )
    .unwrap();
    let (code, out, err) = run(clean()
        .current_dir(dir.path())
        .args(["compile", "prog.yaml", "--json", "-o", "out.json"])
        .args(["--trainset", "words.csv", "--valset", "words.csv"])
        .args(["--provider", "openai", "--model", "task-m", "--base-url"])
        .arg(task.url()));
    assert_eq!(code, 0, "{err}");
    assert!(teacher.requests() > 0, "the teacher LM was never called");
    assert!(teacher.received().iter().all(|b| b["model"] == "teacher-m"));
    assert!(task.requests() > 0);
    // Bootstrapped demos hold the teacher's (reversed) answers.
    let art: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.json")).unwrap())
            .unwrap();
    let demos = art["predictors"]["flip"]["demos"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        demos.iter().any(|d| d["fields"]["answer"] == "olleh"),
        "demos: {demos:?}\n{out}"
    );
    // Usage per LM in compile --json.
    let j: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = j["lms"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["default", "teacher"], "{out}");
    // And one line per LM on stderr.
    assert!(err.contains("LM teacher (teacher-m): "), "{err}");
}
