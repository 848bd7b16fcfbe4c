//! Embedded engine throughput on the default model (`cargo bench --bench
//! embedded`): model load time, prompt tokens/s, generated tokens/s, and
//! examples/s on 64 SST-2 sentiment prompts (chat adapter, grammar-
//! constrained) one at a time vs batched, for 1 and 2 threads; peak RSS.
//!
//! `LMC_BENCH_THREADS=1,2` picks the thread counts, `LMC_BENCH_N=64` the
//! number of SST-2 examples, `LMC_BENCH_BATCH=8` the sequences per batch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lmc::adapter::{AdapterKind, Message, Role};
use lmc::lm::embedded::{default_model_path, EmbeddedConfig, EmbeddedLm, EngineStats};
use lmc::lm::{Lm, LmRequest, Usage};
use lmc::signature::{Field, FieldType, Signature};
use serde_json::{Map, Value};

fn sentiment() -> Signature {
    let mut sentence = Field::new("sentence", FieldType::String);
    sentence.description = Some("a sentence from a movie review".into());
    let mut label = Field::new(
        "sentiment",
        FieldType::Enum {
            values: vec!["positive".into(), "negative".into()],
        },
    );
    label.description = Some("the sentiment the sentence expresses".into());
    Signature {
        instructions: Some("Classify the sentiment of a movie review sentence.".into()),
        inputs: vec![sentence],
        outputs: vec![label],
    }
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn sst2(n: usize) -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = [
        root.join("datasets/sst2/dev.csv"),
        PathBuf::from("/work/shared/datasets/sst2/dev.csv"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .expect("datasets/sst2/dev.csv");
    let mut rdr = csv::Reader::from_path(&path).expect("read sst2");
    rdr.records()
        .filter_map(Result::ok)
        .filter_map(|r| Some((r.get(0)?.to_string(), r.get(1)?.to_string())))
        .take(n)
        .collect()
}

fn req(model: &str, messages: Vec<Message>, grammar: Option<String>, max_tokens: u32) -> LmRequest {
    LmRequest {
        model: model.into(),
        messages,
        temperature: 0.0,
        max_tokens,
        rollout_id: None,
        grammar,
        response_format: None,
    }
}

/// Run requests one at a time or all at once; (seconds, usage, texts).
fn run(
    rt: &tokio::runtime::Runtime,
    lm: &EmbeddedLm,
    reqs: &[LmRequest],
    batched: bool,
) -> (f64, Usage, Vec<String>) {
    let t = Instant::now();
    let results: Vec<_> = if batched {
        rt.block_on(futures::future::join_all(
            reqs.iter().map(|r| lm.complete(r)),
        ))
    } else {
        reqs.iter().map(|r| rt.block_on(lm.complete(r))).collect()
    };
    let secs = t.elapsed().as_secs_f64();
    let mut usage = Usage::default();
    let mut texts = Vec::new();
    for r in results {
        let r = r.expect("completion");
        usage += r.usage;
        texts.push(r.text);
    }
    (secs, usage, texts)
}

fn delta(a: EngineStats, b: EngineStats) -> (u64, u64) {
    (
        b.prompt_tokens - a.prompt_tokens,
        b.reused_tokens - a.reused_tokens,
    )
}

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let model_path = default_model_path();
    if !Path::new(&model_path).is_file() {
        eprintln!(
            "no model at {}: run `bash scripts/setup.sh`",
            model_path.display()
        );
        std::process::exit(2);
    }
    let n = env_list("LMC_BENCH_N", &[64])[0];
    let batch = env_list("LMC_BENCH_BATCH", &[8])[0];
    let threads = env_list("LMC_BENCH_THREADS", &[1, 2]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sig = sentiment();
    let grammar = AdapterKind::Chat.grammar(&sig, 64);
    let grammar = (!grammar.is_empty()).then_some(grammar);
    let examples = sst2(n);
    println!("embedded engine, {}", model_path.display());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} logical CPUs, load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut rows: Vec<(String, String)> = Vec::new();
    for &t in &threads {
        let started = Instant::now();
        let lm = EmbeddedLm::load(EmbeddedConfig {
            model_path: model_path.clone(),
            threads: Some(t),
            context: Some(4096),
            max_batch: Some(batch),
        })
        .expect("load model");
        let load = started.elapsed().as_secs_f64();
        let model = lm.model();
        row(
            &mut rows,
            format!("[threads={t}] model load"),
            format!("{load:.2} s"),
        );

        // Prompt processing: prompts that share (almost) no prefix, so
        // nothing is reused; one reply token each.
        let cold: Vec<LmRequest> = examples
            .iter()
            .take(batch)
            .enumerate()
            .map(|(i, (s, _))| {
                let mut inputs = Map::new();
                inputs.insert("sentence".into(), Value::String(s.clone()));
                let mut msgs = AdapterKind::Chat.render(&sig, &[], &inputs);
                msgs[0].content = format!("Request {i}.\n{}", msgs[0].content);
                req(&model, msgs, None, 1)
            })
            .collect();
        let s0 = rt.block_on(lm.stats()).expect("stats");
        let (secs, _, _) = run(&rt, &lm, &cold, true);
        let s1 = rt.block_on(lm.stats()).expect("stats");
        let (p, r) = delta(s0, s1);
        row(
            &mut rows,
            format!("[threads={t}] prompt tokens/s ({batch} cold prompts, batched)"),
            format!(
                "{:.0}  ({} tokens in {secs:.2} s)",
                (p - r) as f64 / secs,
                p - r
            ),
        );

        // Decoding: the same prompts again (their KV is cached, so this is
        // almost pure generation), unconstrained, 64 tokens each.
        let long: Vec<LmRequest> = cold
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.max_tokens = 64;
                r.messages.push(Message::new(
                    Role::User,
                    "Now describe the film in a few sentences.",
                ));
                r
            })
            .collect();
        let (secs, usage, _) = run(&rt, &lm, &long[..1], false);
        row(
            &mut rows,
            format!("[threads={t}] generated tokens/s (1 sequence)"),
            format!("{:.1}", usage.completion_tokens as f64 / secs),
        );
        let (secs, usage, _) = run(&rt, &lm, &long, true);
        row(
            &mut rows,
            format!("[threads={t}] generated tokens/s ({batch} sequences batched)"),
            format!("{:.1}", usage.completion_tokens as f64 / secs),
        );

        // SST-2 with the chat adapter and its grammar.
        let reqs: Vec<LmRequest> = examples
            .iter()
            .map(|(s, _)| {
                let mut inputs = Map::new();
                inputs.insert("sentence".into(), Value::String(s.clone()));
                req(
                    &model,
                    AdapterKind::Chat.render(&sig, &[], &inputs),
                    grammar.clone(),
                    64,
                )
            })
            .collect();
        let mut outputs = Vec::new();
        for batched in [false, true] {
            let s0 = rt.block_on(lm.stats()).expect("stats");
            let (secs, usage, texts) = run(&rt, &lm, &reqs, batched);
            let s1 = rt.block_on(lm.stats()).expect("stats");
            let (p, r) = delta(s0, s1);
            let parsed: Vec<Option<String>> = texts
                .iter()
                .map(|t| {
                    AdapterKind::Chat
                        .parse(&sig, t)
                        .ok()
                        .and_then(|m| m.get("sentiment")?.as_str().map(str::to_string))
                })
                .collect();
            row(
                &mut rows,
                format!("[threads={t}]   time in decode / sampling+grammar"),
                format!(
                    "{:.1} s / {:.1} s",
                    (s1.decode_time - s0.decode_time).as_secs_f64(),
                    (s1.sample_time - s0.sample_time).as_secs_f64()
                ),
            );
            let ok = parsed.iter().filter(|p| p.is_some()).count();
            let correct = parsed
                .iter()
                .zip(&examples)
                .filter(|(p, (_, gold))| p.as_deref() == Some(gold.as_str()))
                .count();
            let mode = if batched { "batched" } else { "one at a time" };
            row(&mut rows,
                format!("[threads={t}] SST-2 x{} {mode}", reqs.len()),
                format!(
                    "{:.2} examples/s, {:.1} s; {} prompt tok ({} reused), {} generated; parsed {ok}/{}, correct {correct}",
                    reqs.len() as f64 / secs,
                    secs,
                    usage.prompt_tokens,
                    r.min(p),
                    usage.completion_tokens,
                    reqs.len()
                ),
            );
            outputs.push(texts);
        }
        let same = outputs[0] == outputs[1];
        row(
            &mut rows,
            format!("[threads={t}] batched replies == one-at-a-time replies"),
            same.to_string(),
        );
    }
    row(
        &mut rows,
        "peak RSS (VmHWM)".into(),
        format!("{:.0} MB", vm_hwm_mb()),
    );
}

/// Print one result line as soon as it is measured (a full run takes
/// minutes on a busy machine) and keep it for the record.
fn row(rows: &mut Vec<(String, String)>, key: String, value: String) {
    println!("{key:<58}  {value}");
    rows.push((key, value));
}
