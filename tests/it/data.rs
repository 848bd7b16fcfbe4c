//! Tests for the data area: loading CSV and JSONL datasets onto a program's
//! typed fields, column mapping, bad rows named by file and row (or counted
//! when skipped), seeded sampling and splits, and the content hash, on the
//! fixtures in tests/fixtures/data and the shipped datasets.

use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lmc::data::{self, parse_split, DataError, Dataset, LoadOptions};
use lmc::program::Program;

use crate::support::root;

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/data").join(name)
}

fn program(path: &Path) -> Program {
    lmc::program::load::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn typed() -> Program {
    program(&fixture("typed.yaml"))
}

fn load(path: &Path, prog: &Program, opts: &LoadOptions) -> Result<Dataset, DataError> {
    data::load(path, prog, opts)
}

#[test]
fn csv_rows_become_typed_inputs_expected_and_extra() {
    let ds = load(&fixture("typed.csv"), &typed(), &LoadOptions::default()).unwrap();
    assert_eq!(ds.examples.len(), 2);
    let a = &ds.examples[0];
    assert_eq!((a.index, a.row), (0, 1));
    assert_eq!(a.inputs["text"], json!("Great film, loved it"));
    assert_eq!(a.inputs["count"], json!(3));
    assert_eq!(a.inputs["tags"], json!(["a", "b"]));
    assert_eq!(a.inputs["strict"], json!(true));
    assert_eq!(a.inputs["note"], json!(null));
    assert_eq!(a.expected["label"], json!("positive"));
    assert_eq!(a.expected["confidence"], json!(0.9));
    assert_eq!(a.expected["meta"], json!({"k": 1}));
    assert_eq!(a.extra["source"], json!("imdb"));
    let b = &ds.examples[1];
    assert_eq!((b.index, b.row), (1, 2));
    // Enum values are matched case-insensitively and stored as declared.
    assert_eq!(b.expected["label"], json!("negative"));
    assert_eq!(b.inputs["strict"], json!(false));
    assert_eq!(b.inputs["note"], json!("seen twice"));
    assert!(ds.bad_rows.is_empty());
}

#[test]
fn hash_is_sha256_of_the_file_bytes() {
    let path = fixture("typed.csv");
    let ds = load(&path, &typed(), &LoadOptions::default()).unwrap();
    let want = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(&path).unwrap()))
    );
    assert_eq!(ds.hash, want);
    assert_eq!(ds.path, path);
}

#[test]
fn jsonl_rows_are_numbered_by_line_and_values_coerced() {
    let prog = typed();
    let err = load(&fixture("typed.jsonl"), &prog, &LoadOptions::default()).unwrap_err();
    // Line 2 is blank, so the third record is on line 4.
    let msg = err.to_string();
    assert!(msg.ends_with("typed.jsonl: row 4: no column for program input `tags`; columns are: text, count, strict, label, confidence, meta; map one with `--map COLUMN=tags` or `datasets.columns`"), "{msg}");

    let opts = LoadOptions {
        skip_bad_rows: true,
        ..Default::default()
    };
    let ds = load(&fixture("typed.jsonl"), &prog, &opts).unwrap();
    assert_eq!(ds.examples.len(), 2);
    assert_eq!(ds.bad_rows.len(), 1);
    assert_eq!(ds.bad_rows[0].row, 4);
    let (a, b) = (&ds.examples[0], &ds.examples[1]);
    assert_eq!((a.row, b.row), (1, 3));
    assert_eq!(a.inputs["count"], json!(3), "\"3\" becomes an int");
    assert_eq!(a.inputs["strict"], json!(true), "1 becomes true");
    assert_eq!(a.expected["meta"], json!({"k": [1, 2]}));
    assert_eq!(
        b.inputs["tags"],
        json!(["x", "y"]),
        "JSON text of a list is parsed"
    );
    assert_eq!(b.expected["meta"], json!({"k": 2}));
    // A list for an enum output is a list of acceptable answers.
    assert_eq!(b.expected["label"], json!(["negative", "positive"]));
}

#[test]
fn a_bad_row_names_file_row_and_column() {
    let path = fixture("bad.csv");
    let err = load(&path, &typed(), &LoadOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: row 3: column `label`: \"maybe\" is not one of positive, negative",
            path.display()
        )
    );
}

#[test]
fn skip_bad_rows_counts_them_and_keeps_the_rest() {
    let opts = LoadOptions {
        skip_bad_rows: true,
        ..Default::default()
    };
    let ds = load(&fixture("bad.csv"), &typed(), &opts).unwrap();
    let rows: Vec<usize> = ds.examples.iter().map(|e| e.row).collect();
    assert_eq!(rows, vec![1, 2, 5]);
    let indexes: Vec<usize> = ds.examples.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![0, 1, 2]);
    assert_eq!(ds.bad_rows.len(), 2);
    assert_eq!(ds.bad_rows[0].row, 3);
    assert_eq!(ds.bad_rows[1].row, 4);
    assert_eq!(
        ds.bad_rows[1].message,
        "column `count`: \"four\" is not an integer"
    );
}

#[test]
fn invalid_utf8_and_ragged_rows_are_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enc.csv");
    let mut bytes =
        b"text,count,tags,strict,label,confidence,meta\nok,1,[],true,positive,1,{}\n".to_vec();
    bytes.extend_from_slice(b"caf\xe9,1,[],true,positive,1,{}\nshort,1\n");
    std::fs::write(&path, bytes).unwrap();
    let err = load(&path, &typed(), &LoadOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("enc.csv: row 2: column `text`: invalid UTF-8 (byte 4 of the value)"),
        "{err}"
    );
    let opts = LoadOptions {
        skip_bad_rows: true,
        ..Default::default()
    };
    let ds = load(&path, &typed(), &opts).unwrap();
    assert_eq!(ds.examples.len(), 1);
    assert_eq!(ds.bad_rows[1].row, 3);
    assert_eq!(ds.bad_rows[1].message, "has 2 fields, the header has 7");
}

#[test]
fn a_missing_input_column_is_one_file_error_even_when_skipping() {
    let opts = LoadOptions {
        skip_bad_rows: true,
        ..Default::default()
    };
    let err = load(&fixture("renamed.csv"), &typed(), &opts).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("renamed.csv: no column for program input `text`"),
        "{msg}"
    );
    assert!(
        msg.contains("columns are: review, n, labels, strict_mode, label, confidence, meta"),
        "{msg}"
    );
}

#[test]
fn column_mapping_overrides_names() {
    let columns: BTreeMap<String, String> = [
        ("review", "text"),
        ("n", "count"),
        ("labels", "tags"),
        ("strict_mode", "strict"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let opts = LoadOptions {
        columns,
        ..Default::default()
    };
    let ds = load(&fixture("renamed.csv"), &typed(), &opts).unwrap();
    let ex = &ds.examples[0];
    assert_eq!(ex.inputs["text"], json!("Good"));
    assert_eq!(ex.inputs["count"], json!(1));
    assert_eq!(ex.inputs["tags"], json!([]));
    assert!(ex.extra.is_empty(), "{:?}", ex.extra);
}

#[test]
fn shipped_sst2_dev_loads_with_the_programs_mapping() {
    let prog = program(&root().join("programs/sentiment.yaml"));
    let opts = LoadOptions {
        columns: prog.datasets.columns.clone(),
        ..Default::default()
    };
    let path = prog
        .datasets
        .dev
        .clone()
        .expect("sentiment names a dev set");
    let ds = load(&path, &prog, &opts).unwrap();
    assert!(ds.examples.len() >= 100, "{}", ds.examples.len());
    for ex in &ds.examples {
        assert!(ex.inputs["sentence"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
        let label = ex.expected["sentiment"].as_str().unwrap();
        assert!(label == "positive" || label == "negative");
    }
}

#[test]
fn shipped_spider_jsonl_keeps_db_id_as_extra() {
    let dir = tempfile::tempdir().unwrap();
    let prog_path = dir.path().join("sql.yaml");
    std::fs::write(
        &prog_path,
        "name: sql\nsignatures:\n  s: \"question -> sql\"\ninputs:\n  question: str\nnodes:\n  s:\n    kind: predict\n    signature: s\noutputs:\n  sql: s.sql\n",
    )
    .unwrap();
    let prog = program(&prog_path);
    let opts = LoadOptions {
        columns: [("query".to_string(), "sql".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let ds = load(&root().join("datasets/spider/dev.jsonl"), &prog, &opts).unwrap();
    assert_eq!(ds.examples.len(), 231);
    let ex = &ds.examples[0];
    assert_eq!(ex.extra["db_id"], json!("concert_singer"));
    assert_eq!(ex.expected["sql"], json!("SELECT count(*) FROM singer"));
    assert_eq!(ex.inputs["question"], json!("How many singers do we have?"));
}

#[test]
fn sampling_is_deterministic_per_seed() {
    let prog = program(&root().join("programs/sentiment.yaml"));
    let path = prog.datasets.dev.clone().unwrap();
    let rows = |seed, sample, limit| {
        let opts = LoadOptions {
            columns: prog.datasets.columns.clone(),
            sample,
            limit,
            seed,
            ..Default::default()
        };
        load(&path, &prog, &opts)
            .unwrap()
            .examples
            .iter()
            .map(|e| e.row)
            .collect::<Vec<_>>()
    };
    let a = rows(7, Some(20), None);
    assert_eq!(a.len(), 20);
    assert_eq!(a, rows(7, Some(20), None));
    assert_ne!(a, rows(8, Some(20), None));
    assert!(a.windows(2).all(|w| w[0] < w[1]), "file order kept");
    assert_eq!(rows(7, None, Some(5)), vec![1, 2, 3, 4, 5]);
}

#[test]
fn train_and_dev_splits_partition_the_file() {
    let prog = program(&root().join("programs/sentiment.yaml"));
    let path = prog.datasets.dev.clone().unwrap();
    let part = |s: &str| {
        let opts = LoadOptions {
            columns: prog.datasets.columns.clone(),
            split: Some(parse_split(s).unwrap()),
            seed: 3,
            ..Default::default()
        };
        load(&path, &prog, &opts).unwrap()
    };
    let train = part("train:0.8");
    let dev = part("dev:0.8");
    let total = load(
        &path,
        &prog,
        &LoadOptions {
            columns: prog.datasets.columns.clone(),
            ..Default::default()
        },
    )
    .unwrap()
    .examples
    .len();
    assert_eq!(train.examples.len() + dev.examples.len(), total);
    assert_eq!(
        train.examples.len(),
        ((total as f64) * 0.8).round() as usize
    );
    let mut rows: Vec<usize> = train
        .examples
        .iter()
        .chain(&dev.examples)
        .map(|e| e.row)
        .collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), total, "no row in both parts");
    assert_eq!(train.hash, dev.hash);
    assert!(parse_split("train:1.5").is_err());
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let err = load(&fixture("nope.csv"), &typed(), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().contains("nope.csv"), "{err}");
}

#[test]
fn lmc_eval_reports_a_bad_row_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.csv");
    std::fs::write(
        &path,
        "sentence,label\ngood film,positive\nbad film,maybe\n",
    )
    .unwrap();
    let (code, _out, err) = crate::support::run(
        crate::support::lmc()
            .env("LMC_CACHE_DIR", dir.path().join("cache"))
            .args(["eval", "programs/sentiment.yaml", "--dataset"])
            .arg(&path),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}: row 2: column `label`: \"maybe\" is not one of positive, negative",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn tsv_files_are_tab_separated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.tsv");
    std::fs::write(
        &path,
        "text\tcount\ttags\tstrict\tlabel\tconfidence\tmeta\nhi, there\t2\t[]\tfalse\tpositive\t1\t{}\n",
    )
    .unwrap();
    let ds = load(&path, &typed(), &LoadOptions::default()).unwrap();
    assert_eq!(ds.examples[0].inputs["text"], json!("hi, there"));
    assert_eq!(ds.examples[0].inputs["count"], json!(2));
}

#[test]
fn a_mapping_to_a_near_miss_of_a_field_is_an_error() {
    let opts = LoadOptions {
        columns: [("review".to_string(), "txt".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let err = load(&fixture("renamed.csv"), &typed(), &opts).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "renamed.csv: column mapping `review=txt`: `txt` is not a program input or output (did you mean `text`?)"
        ),
        "{err}"
    );
    // Renaming to a name that is no field at all is fine: it is extra.
    let opts = LoadOptions {
        columns: [
            ("review".to_string(), "text".to_string()),
            ("meta".to_string(), "db_id".to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let mut opts = opts;
    opts.columns.insert("n".into(), "count".into());
    opts.columns.insert("labels".into(), "tags".into());
    opts.columns.insert("strict_mode".into(), "strict".into());
    let ds = load(&fixture("renamed.csv"), &typed(), &opts).unwrap();
    assert_eq!(ds.examples[0].extra["db_id"], json!("{}"));
}
