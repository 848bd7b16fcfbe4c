//! Tests for the metric area: every built-in metric scored on examples the
//! way the eval runner calls it (`Metric::score` with an example, outputs
//! and a context), including `sql_execution` on the shipped Spider
//! databases, `command` with small Python scripts in tests/fixtures/metric,
//! and `llm_judge` through the real predictor call with a scripted LM.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lmc::data::{self, Example, LoadOptions};
use lmc::lm::{Lm, LmError, LmRequest, LmResponse, Usage};
use lmc::metric::{Metric, MetricContext, Score};
use lmc::run::RunContext;

use crate::support::root;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn example(inputs: Value, expected: Value, extra: Value) -> Example {
    Example {
        index: 0,
        row: 7,
        inputs: obj(inputs),
        expected: obj(expected),
        extra: obj(extra),
    }
}

fn metric(spec: Value) -> Metric {
    Metric::from_spec(&spec, &root()).unwrap_or_else(|e| panic!("{spec}: {e}"))
}

async fn score(m: &Metric, ex: &Example, outputs: Value) -> Score {
    m.score(ex, &obj(outputs), &MetricContext::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", m.name()))
}

/// Score `answer` = `got` against expected `answer` = `want`.
async fn answer(spec: Value, got: Value, want: Value) -> Score {
    let ex = example(json!({"question": "q"}), json!({"answer": want}), json!({}));
    score(&metric(spec), &ex, json!({"answer": got})).await
}

#[tokio::test]
async fn exact_match_normalises_and_explains_misses() {
    let em = json!({"type": "exact_match", "field": "answer"});
    assert_eq!(
        answer(
            em.clone(),
            json!("The Eiffel Tower."),
            json!("eiffel tower")
        )
        .await
        .score,
        1.0
    );
    let miss = answer(em.clone(), json!("negative"), json!("positive")).await;
    assert_eq!(miss.score, 0.0);
    assert_eq!(
        miss.feedback.as_deref(),
        Some("expected `positive`, got `negative`")
    );
    // A list of acceptable answers.
    let any = answer(em.clone(), json!("NYC"), json!(["New York City", "nyc"])).await;
    assert_eq!(any.score, 1.0);
    let none = answer(em.clone(), json!("LA"), json!(["New York City", "nyc"])).await;
    assert_eq!(
        none.feedback.as_deref(),
        Some("expected one of `New York City`, `nyc`, got `LA`")
    );
    // Numbers compare by their text.
    assert_eq!(answer(em.clone(), json!(18), json!("18")).await.score, 1.0);
    // Without normalisation case matters.
    let raw = json!({"type": "exact_match", "field": "answer", "normalize": false});
    assert_eq!(answer(raw, json!("Paris"), json!("paris")).await.score, 0.0);
}

#[tokio::test]
async fn f1_is_token_f1_max_over_answers() {
    let f1 = json!({"type": "f1", "field": "answer"});
    let s = answer(
        f1.clone(),
        json!("the cat sat on the mat"),
        json!("cat on mat"),
    )
    .await;
    // pred tokens: cat sat on mat (4), gold: cat on mat (3), overlap 3.
    let want = 2.0 * 0.75 * 1.0 / 1.75;
    assert!((s.score - want).abs() < 1e-12, "{}", s.score);
    assert!(s.feedback.unwrap().starts_with("token F1 0.86"));
    let best = answer(
        f1.clone(),
        json!("Barack Obama"),
        json!(["Obama", "Barack Obama"]),
    )
    .await;
    assert_eq!(best.score, 1.0);
    assert_eq!(best.feedback, None);
    assert_eq!(answer(f1, json!("no"), json!("yes")).await.score, 0.0);
}

#[tokio::test]
async fn contains_regex_and_numeric() {
    let c = json!({"type": "contains", "field": "answer"});
    assert_eq!(
        answer(
            c.clone(),
            json!("I think it is Paris, France."),
            json!("paris")
        )
        .await
        .score,
        1.0
    );
    assert_eq!(
        answer(c.clone(), json!("London"), json!("Paris"))
            .await
            .score,
        0.0
    );
    assert_eq!(answer(c, json!("anything"), json!("")).await.score, 0.0);

    let r = json!({"type": "regex", "field": "answer", "pattern": r"^\d{3}-\d{4}$"});
    assert_eq!(
        answer(r.clone(), json!("555-1234"), json!(null))
            .await
            .score,
        1.0
    );
    let miss = answer(r, json!("call 555-1234"), json!(null)).await;
    assert_eq!(miss.score, 0.0);
    assert!(miss.feedback.unwrap().contains("does not match"));
    // No pattern: the expected value is the pattern.
    let per_row =
        json!({"type": "regex", "field": "answer", "full": true, "case_insensitive": true});
    assert_eq!(
        answer(per_row, json!("YES"), json!("yes|y")).await.score,
        1.0
    );

    let n = json!({"type": "numeric", "field": "answer"});
    // GSM8K gold format, prose predictions, commas and dollars.
    assert_eq!(
        answer(
            n.clone(),
            json!("She makes $18 every day."),
            json!("...\n#### 18")
        )
        .await
        .score,
        1.0
    );
    assert_eq!(
        answer(n.clone(), json!("1,200"), json!(1200)).await.score,
        1.0
    );
    let off = answer(n.clone(), json!(17), json!("#### 18")).await;
    assert_eq!(off.feedback.as_deref(), Some("expected 18, got 17"));
    let none = answer(n, json!("I don't know"), json!(18)).await;
    assert!(none.feedback.unwrap().starts_with("no number found"));
    let tol = json!({"type": "numeric", "field": "answer", "rel_tol": 0.01});
    assert_eq!(
        answer(tol.clone(), json!(101.0), json!(100.5)).await.score,
        1.0
    );
    assert_eq!(answer(tol, json!(98.0), json!(100.5)).await.score, 0.0);
}

#[tokio::test]
async fn json_match_gives_partial_credit_by_key() {
    let j = json!({"type": "json_match", "field": "answer"});
    let s = answer(
        j.clone(),
        json!({"name": "Ada", "year": 1815.0, "city": "Paris", "extra": 1}),
        json!({"name": "Ada", "year": 1815, "city": "London", "field": "math"}),
    )
    .await;
    assert_eq!(s.score, 0.5);
    let fb = s.feedback.unwrap();
    assert!(fb.starts_with("2 of 4 keys match"), "{fb}");
    assert!(
        fb.contains("`city`: expected \"London\", got \"Paris\""),
        "{fb}"
    );
    assert!(fb.contains("`field` missing"), "{fb}");
    // JSON text outputs are parsed; strict counts unexpected keys.
    let strict = json!({"type": "json_match", "field": "answer", "strict": true});
    let s = answer(strict, json!(r#"{"a": 1, "b": 2}"#), json!({"a": 1})).await;
    assert_eq!(s.score, 0.5);
}

#[tokio::test]
async fn weighted_lists_combine_and_collect_feedback() {
    let w = json!([
        {"type": "exact_match", "field": "answer", "weight": 3},
        {"type": "f1", "field": "answer", "weight": 1}
    ]);
    let s = answer(w, json!("cat sat"), json!("cat")).await;
    let f1 = 2.0 * 0.5 * 1.0 / 1.5;
    assert!((s.score - 0.25 * f1).abs() < 1e-12, "{}", s.score);
    let fb = s.feedback.unwrap();
    assert!(
        fb.contains("exact_match(answer): expected `cat`, got `cat sat`"),
        "{fb}"
    );
    assert!(fb.contains("f1(answer): token F1 0.67"), "{fb}");
}

#[tokio::test]
async fn field_defaults_skip_reasoning_and_missing_expected_is_an_error() {
    let prog = lmc::program::load::load(&root().join("programs/gsm8k.yaml")).unwrap();
    let m = Metric::default_for(&prog);
    assert_eq!(m.name(), "exact_match(answer)");
    m.check(&prog).unwrap();
    // No field: the first output the example has an expected value for.
    let plain = metric(json!({"type": "numeric"}));
    let ex = example(json!({}), json!({"answer": 18}), json!({}));
    let s = score(
        &plain,
        &ex,
        json!({"reasoning": "9 eggs * $2 = 18", "answer": 18}),
    )
    .await;
    assert_eq!(s.score, 1.0);
    // A typo in `field` is caught against the program before running.
    let typo = metric(json!({"type": "numeric", "field": "answr"}));
    let err = typo.check(&prog).unwrap_err().to_string();
    assert!(err.contains("did you mean `answer`?"), "{err}");
    // An example without the expected value cannot be scored.
    let ex = example(json!({}), json!({}), json!({}));
    let err = metric(json!({"type": "f1", "field": "answer"}))
        .score(&ex, &obj(json!({"answer": "x"})), &MetricContext::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("row 7: no expected value `answer`"),
        "{err}"
    );
}

// ---------- sql_execution ----------

fn spider() -> PathBuf {
    root().join("datasets/spider/database")
}

fn sql_metric(extra: Value) -> Metric {
    let mut spec = obj(json!({"type": "sql_execution", "field": "sql", "databases": spider()}));
    spec.extend(obj(extra));
    metric(Value::Object(spec))
}

async fn sql(m: &Metric, db: &str, gold: &str, pred: &str) -> Score {
    let ex = example(
        json!({"question": "q"}),
        json!({"sql": gold}),
        json!({"db_id": db}),
    );
    score(m, &ex, json!({"sql": pred})).await
}

#[tokio::test]
async fn sql_execution_compares_results_not_text() {
    let m = sql_metric(json!({}));
    let gold = "SELECT count(*) FROM singer";
    assert_eq!(
        sql(
            &m,
            "concert_singer",
            gold,
            "select COUNT(Singer_ID) from singer;"
        )
        .await
        .score,
        1.0
    );
    assert_eq!(
        sql(
            &m,
            "concert_singer",
            gold,
            "```sql\nSELECT count(*) FROM singer\n```"
        )
        .await
        .score,
        1.0
    );
    let wrong = sql(&m, "concert_singer", gold, "SELECT count(*) FROM stadium").await;
    assert_eq!(wrong.score, 0.0);
    let fb = wrong.feedback.unwrap();
    assert!(
        fb.contains("expected 1 row(s) of 1 column(s)")
            && fb.contains("expected first rows [(6)], got [(9)]"),
        "{fb}"
    );
    let broken = sql(&m, "concert_singer", gold, "SELEC count(*) FROM singer").await;
    assert!(broken
        .feedback
        .unwrap()
        .starts_with("the predicted SQL failed: "));
    let empty = sql(&m, "concert_singer", gold, "").await;
    assert_eq!(empty.score, 0.0);
}

#[tokio::test]
async fn sql_execution_order_matters_only_with_order_by() {
    let m = sql_metric(json!({}));
    let unordered = "SELECT name FROM singer";
    let reversed = "SELECT name FROM singer ORDER BY singer_id DESC";
    assert_eq!(
        sql(&m, "concert_singer", unordered, reversed).await.score,
        1.0
    );
    let ordered = "SELECT name, age FROM singer ORDER BY age DESC";
    let asc = "SELECT name, age FROM singer ORDER BY age ASC";
    let s = sql(&m, "concert_singer", ordered, asc).await;
    assert_eq!(s.score, 0.0);
    assert!(s.feedback.unwrap().contains("order matters"));
    // Multisets: duplicates count.
    let dup = "SELECT country FROM singer";
    let distinct = "SELECT DISTINCT country FROM singer";
    assert_eq!(sql(&m, "concert_singer", dup, distinct).await.score, 0.0);
}

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

#[tokio::test]
async fn sql_execution_cannot_write_attach_or_run_forever() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("concert_singer.sqlite");
    std::fs::copy(spider().join("concert_singer/concert_singer.sqlite"), &db).unwrap();
    let before = sha256(&db);
    let m =
        metric(json!({"type": "sql_execution", "field": "sql", "database": db, "timeout_ms": 300}));
    let gold = "SELECT count(*) FROM singer";
    for pred in [
        "DELETE FROM singer",
        "DROP TABLE singer",
        "UPDATE singer SET age = 0",
        "PRAGMA query_only = 0",
        "SELECT 6; DROP TABLE singer",
    ] {
        let s = sql(&m, "", gold, pred).await;
        assert_eq!(s.score, 0.0, "{pred}");
        assert!(
            s.feedback.unwrap().starts_with("the predicted SQL failed"),
            "{pred}"
        );
    }
    let attach = format!(
        "ATTACH DATABASE '{}' AS other",
        dir.path().join("other.db").display()
    );
    assert_eq!(sql(&m, "", gold, &attach).await.score, 0.0);
    assert!(!dir.path().join("other.db").exists());
    assert_eq!(sha256(&db), before, "the database is unchanged");

    let forever =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let started = std::time::Instant::now();
    let s = sql(&m, "", gold, forever).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        s.feedback.as_deref(),
        Some("the predicted SQL failed: exceeded the 300 ms time limit")
    );
}

#[tokio::test]
async fn sql_execution_errors_name_the_problem() {
    let m = sql_metric(json!({}));
    let ex = example(
        json!({}),
        json!({"sql": "SELECT 1"}),
        json!({"db_id": "no_such_db"}),
    );
    let err = m
        .score(
            &ex,
            &obj(json!({"sql": "SELECT 1"})),
            &MetricContext::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("row 7: no database for `no_such_db`"),
        "{err}"
    );
    let ex = example(
        json!({}),
        json!({"sql": "SELECT nope FROM singer"}),
        json!({"db_id": "concert_singer"}),
    );
    let err = m
        .score(
            &ex,
            &obj(json!({"sql": "SELECT 1"})),
            &MetricContext::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the gold SQL failed"), "{err}");
    let bad = Metric::from_spec(
        &json!({"type": "sql_execution", "databases": "nowhere"}),
        &root(),
    );
    assert!(bad.unwrap_err().to_string().contains("does not exist"));
}

#[tokio::test]
async fn every_shipped_spider_gold_query_matches_itself() {
    let dir = tempfile::tempdir().unwrap();
    let prog_path = dir.path().join("sql.yaml");
    std::fs::write(
        &prog_path,
        "name: sql\nsignatures:\n  s: \"question -> sql\"\ninputs:\n  question: str\nnodes:\n  s:\n    kind: predict\n    signature: s\noutputs:\n  sql: s.sql\n",
    )
    .unwrap();
    let prog = lmc::program::load::load(&prog_path).unwrap();
    let opts = LoadOptions {
        columns: [("query".to_string(), "sql".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let m = metric(json!({"type": "sql_execution", "databases": "datasets/spider/database"}));
    for file in ["dev.jsonl", "train_department_store.jsonl"] {
        let ds = data::load(&root().join("datasets/spider").join(file), &prog, &opts).unwrap();
        for ex in &ds.examples {
            let s = m
                .score(ex, &ex.expected, &MetricContext::default())
                .await
                .unwrap();
            assert_eq!(s.score, 1.0, "{file} row {}: {:?}", ex.row, s.feedback);
        }
    }
}

// ---------- command ----------

fn script(name: &str) -> String {
    root()
        .join("tests/fixtures/metric")
        .join(name)
        .display()
        .to_string()
}

async fn cmd_score(m: &Metric, got: &str, want: &str) -> Result<Score, String> {
    let ex = example(
        json!({"question": "capital?"}),
        json!({"answer": want}),
        json!({}),
    );
    m.score(&ex, &obj(json!({"answer": got})), &MetricContext::default())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn command_metric_runs_a_python_script_per_example() {
    let m = metric(json!({"type": "command", "command": ["python3", script("score.py")]}));
    assert_eq!(cmd_score(&m, "Paris", "paris").await.unwrap().score, 1.0);
    let half = cmd_score(&m, "Paris France", "paris").await.unwrap();
    assert_eq!(half.score, 0.5);
    assert_eq!(
        half.feedback.as_deref(),
        Some("partly right: expected 'paris', got 'paris france'")
    );
    // json.load(sys.stdin) scripts work: stdin is closed after the line.
    let bare = metric(json!({"type": "command", "command": ["python3", script("bare.py")]}));
    assert_eq!(cmd_score(&bare, "x", "x").await.unwrap().score, 1.0);
    assert_eq!(cmd_score(&bare, "x", "y").await.unwrap().score, 0.0);
    // Concurrent examples queue for the process slots.
    let one = metric(
        json!({"type": "command", "command": ["python3", script("bare.py")], "max_parallel": 1}),
    );
    let all = futures::future::join_all((0..3).map(|_| cmd_score(&one, "x", "x"))).await;
    assert!(
        all.iter().all(|s| s.as_ref().is_ok_and(|s| s.score == 1.0)),
        "{all:?}"
    );
}

#[tokio::test]
async fn command_metric_can_keep_one_process_running() {
    let m = metric(
        json!({"type": "command", "command": ["python3", script("score.py")], "keep_running": true}),
    );
    let ex = example(json!({}), json!({"answer": "a"}), json!({}));
    let outputs = obj(json!({"answer": "a"}));
    let mcx = MetricContext::default();
    // Concurrent callers share the one process, one example at a time.
    let scores = futures::future::join_all((0..6).map(|_| m.score(&ex, &outputs, &mcx))).await;
    for s in scores {
        assert_eq!(s.unwrap().score, 1.0);
    }
    // One process served them all: a counting script sees every example.
    let counter = metric(json!({
        "type": "command",
        "command": ["python3", "-c", "import sys, json\nfor i, _ in enumerate(sys.stdin, 1):\n    print(json.dumps({'score': 1, 'feedback': f'n={i}'}), flush=True)"],
        "keep_running": true
    }));
    for _ in 0..4 {
        counter.score(&ex, &outputs, &mcx).await.unwrap();
    }
    let last = counter.score(&ex, &outputs, &mcx).await.unwrap();
    assert_eq!(last.feedback.as_deref(), Some("n=5"));
}

#[tokio::test]
async fn command_metric_errors_name_the_command() {
    let m = metric(json!({"type": "command", "command": ["python3", script("fail.py")]}));
    let err = cmd_score(&m, "a", "a").await.unwrap_err();
    assert!(err.starts_with("metric command `python3 "), "{err}");
    assert!(err.contains("fail.py`: exit status: 3"), "{err}");
    assert!(
        err.contains("stderr: cannot score: missing model file"),
        "{err}"
    );
    let missing = metric(json!({"type": "command", "command": ["no-such-binary-lmc"]}));
    let err = cmd_score(&missing, "a", "a").await.unwrap_err();
    assert!(
        err.starts_with("metric command `no-such-binary-lmc`: cannot start"),
        "{err}"
    );
    // A long-running metric that dies is reported with its stderr.
    let kept = metric(json!({
        "type": "command",
        "command": ["python3", "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"],
        "keep_running": true
    }));
    let err = cmd_score(&kept, "a", "a").await.unwrap_err();
    assert!(
        err.contains("before answering") && err.contains("stderr: boom"),
        "{err}"
    );
    let slow = metric(json!({"type": "command", "command": ["sleep", "5"], "timeout_ms": 200}));
    let err = cmd_score(&slow, "a", "a").await.unwrap_err();
    assert!(err.ends_with("no answer within 200 ms"), "{err}");
}

#[test]
fn command_metric_hash_covers_the_script_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("m.py");
    std::fs::write(&s, "print(1)\n").unwrap();
    let spec = json!({"type": "command", "command": ["python3", "m.py"]});
    let a = Metric::from_spec(&spec, dir.path()).unwrap().content_hash();
    std::fs::write(&s, "print(0)\n").unwrap();
    let b = Metric::from_spec(&spec, dir.path()).unwrap().content_hash();
    assert_ne!(a, b);
}

// ---------- llm_judge ----------

/// An LM that answers every request with one scripted reply and keeps the
/// requests it saw (a test double; product code has none).
struct ScriptedLm {
    reply: String,
    seen: Mutex<Vec<LmRequest>>,
}

#[async_trait::async_trait]
impl Lm for ScriptedLm {
    // Nothing recorded here, so nothing to flag (the trait makes
    // every implementation say so: a wrapper must pass it down).
    fn mark_unusable(&self, _req: &lmc::lm::LmRequest) {}
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
        self.seen.lock().unwrap().push(req.clone());
        Ok(LmResponse {
            text: self.reply.clone(),
            usage: Usage::default(),
            cache_hit: false,
            latency: Duration::ZERO,
            retries: 0,
            cost: 0.0,
            choices: Vec::new(),
        })
    }
    fn model(&self) -> String {
        "scripted".into()
    }
}

#[tokio::test]
async fn llm_judge_runs_the_judge_signature() {
    let lm = Arc::new(ScriptedLm {
        reply: "[[ ## score ## ]]\n1.7\n\n[[ ## feedback ## ]]\nNames the city but not the country.\n\n[[ ## completed ## ]]".into(),
        seen: Mutex::new(Vec::new()),
    });
    let ctx = MetricContext {
        judge: Some(RunContext::new(lm.clone())),
    };
    let m = metric(json!({"type": "llm_judge", "field": "answer"}));
    let ex = example(
        json!({"question": "Where is the Louvre?"}),
        json!({"answer": "Paris, France"}),
        json!({}),
    );
    let s = m
        .score(&ex, &obj(json!({"answer": "Paris"})), &ctx)
        .await
        .unwrap();
    assert_eq!(s.score, 1.0, "clamped to 0..=1");
    assert_eq!(
        s.feedback.as_deref(),
        Some("Names the city but not the country.")
    );
    let user = lm.seen.lock().unwrap()[0]
        .messages
        .last()
        .unwrap()
        .content
        .clone();
    assert!(
        user.contains("[[ ## question ## ]]\nWhere is the Louvre?"),
        "{user}"
    );
    assert!(
        user.contains("[[ ## expected ## ]]\nParis, France"),
        "{user}"
    );
    assert!(user.contains("[[ ## prediction ## ]]\nParis"), "{user}");
    // Without an LM the judge cannot score.
    let err = m
        .score(
            &ex,
            &obj(json!({"answer": "Paris"})),
            &MetricContext::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs an LM"), "{err}");
}

#[test]
fn lmc_eval_rejects_a_misspelled_metric_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _out, err) = crate::support::run(
        crate::support::lmc()
            .env("LMC_CACHE_DIR", dir.path())
            .args([
                "eval",
                "programs/sentiment.yaml",
                "--limit",
                "2",
                "--metric",
                "{type: exact_mtch, field: sentiment}",
            ]),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown metric type `exact_mtch` (did you mean `exact_match`?)"),
        "{err}"
    );
}

/// The whole path through the CLI: a Spider JSONL row's `db_id` (an extra
/// column) picks the database, the stub LM's SQL is executed and compared.
#[test]
fn lmc_eval_scores_spider_rows_by_execution() {
    use crate::support::stub::StubServer;
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("sql.yaml");
    std::fs::write(
        &prog,
        format!(
            "name: sql\nsignatures:\n  s: \"question -> sql\"\ninputs:\n  question: str\nnodes:\n  s:\n    kind: predict\n    signature: s\noutputs:\n  sql: s.sql\nmetric: {{type: sql_execution, field: sql, databases: {}}}\ndatasets:\n  columns: {{query: sql}}\n",
            spider().display()
        ),
    )
    .unwrap();
    let stub =
        StubServer::fixed("[[ ## sql ## ]]\nSELECT count(*) FROM singer\n\n[[ ## completed ## ]]");
    let (code, out, err) = crate::support::run(
        crate::support::lmc()
            .arg("eval")
            .arg(&prog)
            .arg("--dataset")
            .arg(root().join("datasets/spider/dev.jsonl"))
            .args(["--limit", "3", "--json", "--quiet"])
            .args(["--provider", "openai", "--model", "stub", "--base-url"])
            .arg(stub.url())
            .env("LMC_CACHE_DIR", dir.path().join("cache"))
            .env_remove("OPENAI_API_KEY"),
    );
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let scores: Vec<f64> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    // Rows 1 and 2 ask for the number of singers; row 3 for names by age.
    assert_eq!(scores, vec![1.0, 1.0, 0.0]);
    let fb = report["results"][2]["feedback"].as_str().unwrap();
    assert!(fb.contains("order matters"), "{fb}");
    assert_eq!(report["metric"], json!("sql_execution(sql)"));
}
