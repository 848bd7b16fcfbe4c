//! Fuzz harness for everything lmc reads from a pull request: the YAML
//! program loader, the artifact loader, DSPy import and the dataset reader.
//!
//! cargo-fuzz would need a nightly toolchain and a sanitizer build of the
//! whole dependency tree; these are proptest harnesses instead, run by the
//! stable toolchain the project already uses. Inputs are the shipped
//! programs, an artifact, a DSPy export and dataset rows, mutated with
//! structure-aware edits (YAML/JSON tokens, aliases, brackets, huge numbers,
//! duplicated spans), plus free text. Every case must return (Ok or a
//! typed error) without panicking, and a counting allocator caps what one
//! case may allocate: an input that makes a loader ask for more than
//! [`CASE_MEMORY`] makes the allocation fail, which aborts the run loudly.
//!
//! `cargo test --test fuzz` runs a short, bounded pass (a few hundred
//! inputs per target); `scripts/fuzz.sh [SECONDS]` runs the long one
//! (docs/fuzzing.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Map, Value};

use lmc::artifact::{Artifact, Lineage};
use lmc::overlay::{Demo, KnnDemos, Overlay, PredictorState};
use lmc::program::Program;

/// Live bytes one case (one thread) may hold.
const CASE_MEMORY: usize = 512 << 20;

/// Counts live bytes per thread; refuses an allocation over [`CASE_MEMORY`].
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn add(n: usize) -> bool {
    LIVE.try_with(|l| {
        let now = l.get().saturating_add(n);
        if now > CASE_MEMORY {
            return false;
        }
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        true
    })
    .unwrap_or(true)
}

fn sub(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !add(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if p.is_null() {
            sub(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !add(new_size - layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            if new_size > layout.size() {
                sub(new_size - layout.size());
            }
        } else if new_size < layout.size() {
            sub(layout.size() - new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Tokens spliced into YAML inputs: structure, aliases, types, numbers.
const YAML_TOKENS: &[&str] = &[
    "&a ",
    "*a",
    "&b [*a, *a, *a]",
    "[",
    "]",
    "{",
    "}",
    ": ",
    "\n",
    "\n  ",
    "- ",
    "    ",
    "list[",
    "enum[",
    "optional[",
    "Literal['x', 'y']",
    "json",
    "'",
    "\"",
    "# c",
    "!!str ",
    "~",
    "---\n",
    "? ",
    "|\n  x\n",
    ">\n",
    "\t",
    "kind: predict",
    "kind: react",
    "signature: s",
    "inputs:",
    "outputs:",
    "nodes:",
    "signatures:",
    "tools:",
    "metric:",
    "datasets:",
    " -> ",
    "input.q",
    "n.a",
    "1e309",
    "-1",
    "99999999999999999999",
    "0x1F",
    ".nan",
    "\u{feff}",
    "[[[[[[[[[[[[[[[[",
    "]]]]]]]]]]]]]]]]",
    "a: 1\na: 2\n",
    "\r\n",
    "\u{0}",
    "é",
];

/// Tokens spliced into JSON inputs.
const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"k\"",
    "\"knn\"",
    "\"demos\"",
    "\"pool\"",
    "\"fields\"",
    "\"augmented\"",
    "\"signature\"",
    "\"instructions\"",
    "\"lmc_knn\"",
    "\"predictors\"",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e999",
    "18446744073709551616",
    "1000000000000000",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"x\"",
    "[[[[[[[[[[[[[[[[[[[[",
    "{\"a\":{\"a\":{\"a\":",
    "\"format\": \"lmc.artifact\"",
    "\n",
    " ",
];

/// Tokens spliced into dataset rows.
const ROW_TOKENS: &[&str] = &[
    ",",
    "\"",
    "\n",
    "\r\n",
    "\t",
    "positive",
    "negative",
    "POSITIVE",
    "",
    "{",
    "}",
    "[",
    "]",
    "{\"sentence\": \"x\", \"label\": \"positive\"}",
    "null",
    "1e999",
    "\u{feff}",
    "\u{0}",
    "[1, 2",
    "\"\"",
    "ｘ",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(u32, usize),
    Delete(u32, u16),
    Duplicate(u32, u16, u8),
    Replace(u32, char),
    RepeatToken(u32, usize, u16),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<u32>(), any::<usize>()).prop_map(|(p, t)| Edit::Insert(p, t)),
        2 => (any::<u32>(), 1..200u16).prop_map(|(p, n)| Edit::Delete(p, n)),
        1 => (any::<u32>(), 1..200u16, 1..20u8).prop_map(|(p, n, k)| Edit::Duplicate(p, n, k)),
        2 => (any::<u32>(), any::<char>()).prop_map(|(p, c)| Edit::Replace(p, c)),
        1 => (any::<u32>(), any::<usize>(), 1..2000u16).prop_map(|(p, t, n)| Edit::RepeatToken(p, t, n)),
    ]
}

/// A char boundary of `s` chosen by `p`.
fn at(s: &str, p: u32) -> usize {
    if s.is_empty() {
        return 0;
    }
    let mut i = p as usize % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(seed: &str, edits: &[Edit], tokens: &[&str]) -> String {
    let mut s = seed.to_string();
    for e in edits {
        match *e {
            Edit::Insert(p, t) => {
                let i = at(&s, p);
                s.insert_str(i, tokens[t % tokens.len()]);
            }
            Edit::Delete(p, n) => {
                let i = at(&s, p);
                let j = at(&s, (i + n as usize).min(s.len()) as u32);
                let j = if j < i { i } else { j };
                s.replace_range(i..j, "");
            }
            Edit::Duplicate(p, n, k) => {
                let i = at(&s, p);
                let j = at(&s, (i + n as usize).min(s.len()) as u32).max(i);
                let span = s[i..j].repeat(k as usize);
                s.insert_str(j, &span);
            }
            Edit::Replace(p, c) => {
                let i = at(&s, p);
                if let Some(old) = s[i..].chars().next() {
                    s.replace_range(i..i + old.len_utf8(), c.encode_utf8(&mut [0; 4]));
                }
            }
            Edit::RepeatToken(p, t, n) => {
                let i = at(&s, p);
                s.insert_str(i, &tokens[t % tokens.len()].repeat(n as usize));
            }
        }
    }
    s
}

/// Seed texts mutated with `tokens`, or free text over them.
fn inputs(seeds: Vec<String>, tokens: &'static [&'static str]) -> impl Strategy<Value = String> {
    let n = seeds.len();
    prop_oneof![
        8 => (0..n, prop::collection::vec(edit(), 0..12))
            .prop_map(move |(i, es)| apply(&seeds[i], &es, tokens)),
        1 => prop::collection::vec(any::<usize>(), 0..400)
            .prop_map(move |ts| ts.iter().map(|t| tokens[t % tokens.len()]).collect()),
        1 => any::<String>(),
    ]
}

fn program_seeds() -> Vec<String> {
    let mut v: Vec<String> = ["sentiment", "gsm8k", "hotpotqa", "text_to_sql"]
        .iter()
        .map(|p| read(&format!("programs/{p}.yaml")))
        .collect();
    v.push(
        "name: t\nsignatures:\n  s: \"q, n: int -> a: list[optional[int]], b: enum[x, y], c: json\"\n\
         inputs: {q: str, n: int}\nnodes:\n  p: {kind: chain_of_thought, signature: s, inputs: {q: input.q, n: input.n}}\n\
         outputs: {a: p.a, b: p.b}\nbase: &base {type: str}\n"
            .into(),
    );
    v
}

/// The sentiment program, loaded from its real path (datasets resolve).
fn sentiment() -> Program {
    let path = root().join("programs/sentiment.yaml");
    lmc::program::load_str(&read("programs/sentiment.yaml"), &path).expect("sentiment loads")
}

fn demo(sentence: &str, label: &str) -> Demo {
    let mut fields = Map::new();
    fields.insert("sentence".into(), json!(sentence));
    fields.insert("sentiment".into(), json!(label));
    Demo {
        fields,
        augmented: false,
    }
}

fn sample_overlay() -> Overlay {
    let mut overlay = Overlay::default();
    overlay.predictors.insert(
        "classify".into(),
        PredictorState {
            instructions: Some("Classify.".into()),
            demos: vec![demo("great", "positive"), demo("awful", "negative")],
            knn: Some(KnnDemos {
                k: 2,
                input_fields: vec!["sentence".into()],
                pool: vec![demo("fine", "positive"), demo("bad", "negative")],
            }),
            ..Default::default()
        },
    );
    overlay
}

fn artifact_seed(program: &Program) -> String {
    let lineage = Lineage {
        optimizer: "fuzz".into(),
        ..Default::default()
    };
    Artifact::new(
        program,
        &sample_overlay(),
        None,
        lineage,
        &root().join("fuzz.compiled.json"),
    )
    .to_json()
}

fn dataset_seeds() -> Vec<String> {
    let csv: String = read("datasets/sst2/dev.csv")
        .lines()
        .take(12)
        .map(|l| format!("{l}\n"))
        .collect();
    let jsonl: String = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit_once(','))
        .map(|(s, l)| format!("{}\n", json!({"sentence": s, "label": l})))
        .collect();
    vec![csv, jsonl]
}

/// Run `check` on `cases` inputs from `strategy` with the given seed;
/// return how many ran and the slowest case.
fn drive<S: Strategy<Value = String>>(
    name: &str,
    strategy: S,
    cases: u32,
    seed: u64,
    check: impl Fn(&str) -> Result<(), TestCaseError>,
) -> (u32, Duration) {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let slowest = Cell::new(Duration::ZERO);
    let ran = Cell::new(0u32);
    let result = runner.run(&strategy, |input| {
        ran.set(ran.get() + 1);
        let t = Instant::now();
        let r = check(&input);
        let took = t.elapsed();
        if took > slowest.get() {
            slowest.set(took);
            // Keep the slowest input of each target to look at later.
            if took > Duration::from_millis(500) {
                let path =
                    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-slowest-{name}.txt"));
                let _ = std::fs::write(path, &input);
            }
        }
        r
    });
    if let Err(e) = result {
        panic!("fuzz target `{name}` failed: {e}");
    }
    (ran.get(), slowest.get())
}

fn program_target(input: &str) -> Result<(), TestCaseError> {
    let _ = lmc::program::load_str(input, &root().join("programs/fuzz.yaml"));
    let _ = lmc::yaml::parse(input);
    Ok(())
}

fn artifact_target(input: &str) -> Result<(), TestCaseError> {
    let Ok(a) = Artifact::from_json(input, Path::new("fuzz.compiled.json")) else {
        return Ok(());
    };
    let _ = a.program();
    // What the loader promises the code that sizes allocations from it.
    // (`optimize::knn::select` itself is not called here: it caches one
    // index per distinct pool for the life of the process.)
    for st in a.predictors.values() {
        prop_assert!(st.demos.len() <= lmc::limits::MAX_DEMOS);
        if let Some(knn) = &st.knn {
            prop_assert!(knn.k <= lmc::limits::MAX_KNN_K);
            prop_assert!(knn.pool.len() <= lmc::limits::MAX_DEMOS);
        }
    }
    Ok(())
}

fn dspy_target(program: &Program, input: &str) -> Result<(), TestCaseError> {
    if let Ok(v) = serde_json::from_str::<Value>(input) {
        let _ = lmc::cli::export::from_dspy(program, &v);
    }
    Ok(())
}

fn dataset_target(program: &Program, input: &str) -> Result<(), TestCaseError> {
    let mut opts = lmc::data::LoadOptions::default();
    opts.columns.insert("label".into(), "sentiment".into());
    for name in ["fuzz.csv", "fuzz.jsonl", "fuzz.tsv"] {
        let _ = lmc::data::load_bytes(input.as_bytes(), Path::new(name), program, &opts);
    }
    opts.skip_bad_rows = true;
    let _ = lmc::data::load_bytes(input.as_bytes(), Path::new("fuzz.data"), program, &opts);
    Ok(())
}

/// One pass over all four targets; returns inputs run per target and the
/// slowest case seen.
fn all_targets(cases: u32, seed: u64) -> ([u32; 4], Duration) {
    let program = sentiment();
    let (a, sa) = drive(
        "program",
        inputs(program_seeds(), YAML_TOKENS),
        cases,
        seed,
        program_target,
    );
    let (b, sb) = drive(
        "artifact",
        inputs(vec![artifact_seed(&program)], JSON_TOKENS),
        cases,
        seed,
        artifact_target,
    );
    let dspy =
        serde_json::to_string_pretty(&lmc::cli::export::to_dspy(&program, &sample_overlay()))
            .expect("dspy json");
    let (c, sc) = drive("dspy", inputs(vec![dspy], JSON_TOKENS), cases, seed, |s| {
        dspy_target(&program, s)
    });
    let (d, sd) = drive(
        "dataset",
        inputs(dataset_seeds(), ROW_TOKENS),
        cases,
        seed,
        |s| dataset_target(&program, s),
    );
    ([a, b, c, d], sa.max(sb).max(sc).max(sd))
}

/// The memory cap is real: one case cannot reserve more than [`CASE_MEMORY`].
#[test]
fn allocator_caps_a_case() {
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(CASE_MEMORY + 1).is_err());
    assert!(v.try_reserve(1 << 20).is_ok());
}

/// The bounded pass `cargo test` runs: a few hundred inputs per target.
#[test]
fn fuzz_short() {
    let cases = std::env::var("LMC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let (ran, slowest) = all_targets(cases, 11);
    assert!(ran.iter().all(|&n| n >= cases), "{ran:?}");
    println!("fuzz_short: {ran:?} inputs (program, artifact, dspy, dataset), slowest {slowest:?}");
}

/// The long run: new seeds until `LMC_FUZZ_SECS` (default 600) have passed.
/// Run through `scripts/fuzz.sh`.
#[test]
#[ignore = "long-running; scripts/fuzz.sh"]
fn fuzz_long() {
    let secs: u64 = std::env::var("LMC_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let start = Instant::now();
    let mut total = [0u64; 4];
    let mut slowest = Duration::ZERO;
    let mut seed = std::env::var("LMC_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000u64);
    while start.elapsed() < Duration::from_secs(secs) {
        let (ran, s) = all_targets(500, seed);
        for (t, r) in total.iter_mut().zip(ran) {
            *t += u64::from(r);
        }
        slowest = slowest.max(s);
        seed += 1;
        // A case slower than this is a hang to look at, not noise.
        assert!(slowest < Duration::from_secs(10), "a case took {slowest:?}");
    }
    let peak = PEAK.with(Cell::get);
    println!(
        "fuzz_long: {} inputs in {:?} (program {}, artifact {}, dspy {}, dataset {}), slowest case {slowest:?}, peak live memory of the fuzz thread {} MiB",
        total.iter().sum::<u64>(),
        start.elapsed(),
        total[0],
        total[1],
        total[2],
        total[3],
        peak >> 20
    );
}
