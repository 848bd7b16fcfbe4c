//! Eval throughput against a local stub LM with a fixed 50 ms latency.
//!
//! Run with `cargo bench --bench eval_throughput`. It evaluates a one-
//! predictor sentiment program on 512 examples at concurrency 1, 16 and 256
//! through the real HTTP backend (cache off, so every example is a request)
//! and prints examples/s beside the ideal rate `concurrency / 0.05 s`
//! (capped at 512 examples in one latency period), i.e. how much of the
//! time goes to lmc itself rather than waiting for the server.

#[path = "../tests/support/stub.rs"]
mod stub;

use std::path::Path;
use std::time::{Duration, Instant};

use lmc::data::Example;
use lmc::eval::{evaluate, EvalOptions, NoopReporter};
use lmc::lm::{build_lm, LmOptions};
use lmc::metric::Metric;
use lmc::overlay::Overlay;
use lmc::program::LmConfig;
use lmc::run::RunContext;
use serde_json::{json, Map, Value};
use stub::{StubReply, StubServer};

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
  classify:
    kind: predict
    signature: classify
outputs:
  sentiment: classify.sentiment
"#;

const N: usize = 512;
const LATENCY: Duration = Duration::from_millis(50);

fn label(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "positive"
    } else {
        "negative"
    }
}

fn main() {
    let program = match lmc::program::load_str(PROGRAM, Path::new("bench.yaml")) {
        Ok(p) => p,
        Err(d) => {
            eprintln!("bench program does not load:\n{d}");
            std::process::exit(2);
        }
    };
    let server = StubServer::builder()
        .latency(LATENCY)
        .record(false)
        .start(|req| {
            let text = req.input("sentence").unwrap_or_default();
            let row: usize = text
                .split("review number ")
                .nth(1)
                .unwrap_or("")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0);
            StubReply::Ok(format!(
                "[[ ## sentiment ## ]]\n{}\n\n[[ ## completed ## ]]",
                label(row)
            ))
        });
    let examples: Vec<Example> = (0..N)
        .map(|i| {
            let mut inputs = Map::new();
            inputs.insert(
                "sentence".into(),
                Value::String(format!("review number {i}")),
            );
            let mut expected = Map::new();
            expected.insert("sentiment".into(), Value::String(label(i).into()));
            Example {
                index: i,
                row: i + 1,
                inputs,
                expected,
                extra: Map::new(),
            }
        })
        .collect();
    let metric = Metric::from_spec(
        &json!({"type": "exact_match", "field": "sentiment"}),
        Path::new("."),
    )
    .expect("metric");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    println!(
        "eval throughput: {N} examples, stub latency {} ms, HTTP backend, cache off",
        LATENCY.as_millis()
    );
    println!(
        "{:>11} | {:>9} | {:>10} | {:>11} | {:>8} | {:>5}",
        "concurrency", "wall s", "examples/s", "ideal ex/s", "% ideal", "score"
    );
    println!("{}", "-".repeat(70));
    for concurrency in [1usize, 16, 256] {
        let cfg = LmConfig {
            provider: Some("openai".into()),
            model: Some("stub".into()),
            base_urls: vec![server.url()],
            concurrency: Some(concurrency),
            max_retries: Some(0),
            ..LmConfig::default()
        };
        let opts = LmOptions {
            no_cache: true,
            ..LmOptions::default()
        };
        let (lm, _meter) =
            build_lm(&lmc::lm::ResolvedLm::from_config(&cfg).expect("LM"), &opts).expect("LM");
        let ctx = RunContext::new(lm);
        let eval_opts = EvalOptions {
            concurrency,
            max_errors: None,
            keep_traces: false,
        };
        let started = Instant::now();
        let report = rt
            .block_on(evaluate(
                &ctx,
                &program,
                &Overlay::default(),
                &examples,
                &metric,
                &eval_opts,
                &NoopReporter,
            ))
            .expect("eval");
        let wall = started.elapsed().as_secs_f64();
        let rate = N as f64 / wall;
        // With more in flight than examples, all of them fit in one period.
        let ideal = concurrency.min(N) as f64 / LATENCY.as_secs_f64();
        println!(
            "{concurrency:>11} | {wall:>9.2} | {rate:>10.1} | {ideal:>11.1} | {:>7.1}% | {:>5.3}",
            100.0 * rate / ideal,
            report.summary.mean
        );
        assert_eq!(report.summary.errors, 0, "stub replies must all parse");
    }
}
