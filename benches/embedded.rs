//! Embedded engine benchmarks on the default model (`cargo bench --bench
//! embedded`), in three parts chosen with `LMC_BENCH_PARTS` (default
//! `jump,reference,engine`):
//!
//! - `jump`: SST-2 through the engine with jump-forward decoding and the
//!   greedy grammar fast path off ("before") and on ("after"), back to back
//!   on the same prompts: examples/s, forward passes per reply, tokens
//!   sampled / forced / appended without decoding, and whether the labels
//!   are identical (temperature 0).
//! - `reference`: a minimal greedy loop written directly over the same
//!   `llama-cpp-2` crate (one prompt, then 8 prompts batched; no grammar)
//!   next to lmc's engine doing the same work: prompt and decode tokens/s.
//! - `engine`: model load time, prompt tokens/s, generated tokens/s and
//!   SST-2 examples/s one at a time vs batched, for each thread count;
//!   peak RSS.
//!
//! `LMC_BENCH_THREADS=1,2` picks the thread counts (the first one for
//! `jump` and `reference`), `LMC_BENCH_N=64` the number of SST-2 examples,
//! `LMC_BENCH_BATCH=8` the sequences per batch, `LMC_BENCH_SERIAL=1` runs
//! the `jump` requests one at a time instead of all at once, and
//! `LMC_BENCH_MODEL=/path/to/model.gguf` runs it all on another GGUF than
//! the default model (e.g. a copy written by `lmc model requantize`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use lmc::adapter::{AdapterKind, Message, Role};
use lmc::lm::embedded::{llama_backend, EmbeddedConfig, EmbeddedLm, EngineStats, Tuning};
use lmc::lm::resolve::default_model_path;
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
        choice: None,
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
    let model_path = std::env::var_os("LMC_BENCH_MODEL")
        .filter(|p| !p.is_empty())
        .map_or_else(default_model_path, PathBuf::from);
    // The default model is derived from the fetched file on first load;
    // the reference loop opens the file itself, so derive it up front.
    if model_path == default_model_path() {
        if let Err(e) = lmc::lm::embedded::derive_default_model(&model_path) {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
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
    let parts = std::env::var("LMC_BENCH_PARTS").unwrap_or_else(|_| "jump,reference,engine".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let examples = sst2(n);
    println!("embedded engine, {}", model_path.display());
    let mut rows: Vec<(String, String)> = Vec::new();
    for part in parts.split(',').map(str::trim) {
        row(&mut rows, format!("--- {part}"), load_average());
        match part {
            "jump" => jump_part(&rt, &model_path, &examples, threads[0], batch, &mut rows),
            "reference" => {
                reference_part(&rt, &model_path, &examples, threads[0], batch, &mut rows)
            }
            "engine" => engine_part(&rt, &model_path, &examples, &threads, batch, &mut rows),
            other => eprintln!("unknown bench part {other:?} (jump, reference, engine)"),
        }
    }
    row(
        &mut rows,
        "peak RSS (VmHWM)".into(),
        format!("{:.0} MB", vm_hwm_mb()),
    );
}

/// The machine's load average, printed next to every part: on a shared
/// 2-core machine the rates move by 2-3x with it.
fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} logical CPUs, load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn sst2_requests(model: &str, examples: &[(String, String)]) -> Vec<LmRequest> {
    let sig = sentiment();
    let grammar = AdapterKind::Chat.grammar(&sig, 64);
    let grammar = (!grammar.is_empty()).then_some(grammar);
    examples
        .iter()
        .map(|(s, _)| {
            let mut inputs = Map::new();
            inputs.insert("sentence".into(), Value::String(s.clone()));
            req(
                model,
                AdapterKind::Chat.render(&sig, &[], &inputs),
                grammar.clone(),
                64,
            )
        })
        .collect()
}

fn label(text: &str) -> Option<String> {
    AdapterKind::Chat
        .parse(&sentiment(), text)
        .ok()
        .and_then(|m| m.get("sentiment")?.as_str().map(str::to_string))
}

/// SST-2 with jump-forward and the grammar fast path off, then on.
fn jump_part(
    rt: &tokio::runtime::Runtime,
    model_path: &Path,
    examples: &[(String, String)],
    threads: usize,
    batch: usize,
    rows: &mut Vec<(String, String)>,
) {
    let serial = std::env::var("LMC_BENCH_SERIAL").is_ok_and(|v| v == "1");
    let mode = if serial {
        "one at a time"
    } else {
        "all at once"
    };
    let mut labels: Vec<Vec<Option<String>>> = Vec::new();
    let mut rates = Vec::new();
    let modes = [
        (
            "before",
            Tuning {
                jump_forward: false,
                jump_free_text: false,
                greedy_fast_path: false,
            },
        ),
        ("after", Tuning::default()),
    ];
    for (name, tuning) in modes {
        let lm = EmbeddedLm::load_tuned(
            EmbeddedConfig {
                model_path: model_path.to_path_buf(),
                threads: Some(threads),
                context: Some(4096),
                max_batch: Some(batch),
            },
            tuning,
        )
        .expect("load model");
        let reqs = sst2_requests(&lm.model(), examples);
        let s0 = rt.block_on(lm.stats()).expect("stats");
        let (secs, _, texts) = run(rt, &lm, &reqs, !serial);
        let s1 = rt.block_on(lm.stats()).expect("stats");
        let replies = (s1.replies - s0.replies).max(1) as f64;
        let per = |a: u64, b: u64| (b - a) as f64 / replies;
        let parsed: Vec<Option<String>> = texts.iter().map(|t| label(t)).collect();
        let ok = parsed.iter().filter(|p| p.is_some()).count();
        let positive = parsed
            .iter()
            .filter(|p| p.as_deref() == Some("positive"))
            .count();
        let correct = parsed
            .iter()
            .zip(examples)
            .filter(|(p, (_, gold))| p.as_deref() == Some(gold.as_str()))
            .count();
        let rate = reqs.len() as f64 / secs;
        row(
            rows,
            format!("[{name}] SST-2 x{} {mode}, {threads} threads", reqs.len()),
            format!(
                "{rate:.2} examples/s ({secs:.1} s); parsed {ok}, positive {positive}, correct {correct}"
            ),
        );
        row(
            rows,
            format!("[{name}]   forward passes per reply / decode calls per reply"),
            format!(
                "{:.2} / {:.2}",
                per(s0.sequence_steps, s1.sequence_steps),
                per(s0.decode_calls, s1.decode_calls)
            ),
        );
        let decode_secs = (s1.decode_time - s0.decode_time).as_secs_f64();
        let decoded = s1.decoded_tokens - s0.decoded_tokens;
        row(
            rows,
            format!("[{name}]   tokens decoded per reply / decode rate"),
            format!(
                "{:.1} / {:.0} tokens/s (so at most {:.2} examples/s at this rate)",
                per(s0.decoded_tokens, s1.decoded_tokens),
                decoded as f64 / decode_secs,
                decoded as f64 / decode_secs / per(s0.decoded_tokens, s1.decoded_tokens)
            ),
        );
        row(
            rows,
            format!("[{name}]   reply tokens sampled / forced / appended undecoded"),
            format!(
                "{:.2} / {:.2} / {:.2} per reply",
                per(s0.generated_tokens, s1.generated_tokens),
                per(s0.forced_tokens, s1.forced_tokens),
                per(s0.skipped_tokens, s1.skipped_tokens)
            ),
        );
        row(
            rows,
            format!("[{name}]   time in decode / sampling+grammar"),
            format!(
                "{:.1} s / {:.2} s; {} prompt tokens ({} reused)",
                (s1.decode_time - s0.decode_time).as_secs_f64(),
                (s1.sample_time - s0.sample_time).as_secs_f64(),
                s1.prompt_tokens - s0.prompt_tokens,
                s1.reused_tokens - s0.reused_tokens
            ),
        );
        // One letter per sentence, so runs on different models or builds
        // can be compared label by label from their output alone.
        row(
            rows,
            format!("[{name}]   labels (p/n, ? unparsed)"),
            parsed
                .iter()
                .map(|p| match p.as_deref() {
                    Some("positive") => 'p',
                    Some("negative") => 'n',
                    _ => '?',
                })
                .collect(),
        );
        labels.push(parsed);
        rates.push(rate);
    }
    let same = labels[0] == labels[1];
    let differing = labels[0]
        .iter()
        .zip(&labels[1])
        .filter(|(a, b)| a != b)
        .count();
    row(
        rows,
        "labels identical before/after (temperature 0)".into(),
        format!(
            "{} ({differing} of {} differ)",
            if same { "yes" } else { "NO" },
            labels[0].len()
        ),
    );
    row(
        rows,
        "speed-up after/before".into(),
        format!("{:.2}x", rates[1] / rates[0]),
    );
}

/// The describe-the-film prompts of `engine_part`, distinct from the first
/// token on so nothing is shared between sequences.
fn describe_requests(model: &str, examples: &[(String, String)], n: usize) -> Vec<LmRequest> {
    let sig = sentiment();
    examples
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, (s, _))| {
            let mut inputs = Map::new();
            inputs.insert("sentence".into(), Value::String(s.clone()));
            let mut msgs = AdapterKind::Chat.render(&sig, &[], &inputs);
            msgs[0].content = format!("Request {i}.\n{}", msgs[0].content);
            msgs.push(Message::new(
                Role::User,
                "Now describe the film in a few sentences.",
            ));
            req(model, msgs, None, 64)
        })
        .collect()
}

/// A minimal greedy loop over llama-cpp-2 (what a user of the crate would
/// write: default context parameters but the same context size, batch size
/// and threads) next to lmc's engine on the same prompts: one prompt, then
/// `batch` prompts decoded together; 64 tokens each at most, stopping at
/// end-of-generation. Prompt tokens/s is the prefill, decode tokens/s the
/// generation that follows.
fn reference_part(
    rt: &tokio::runtime::Runtime,
    model_path: &Path,
    examples: &[(String, String)],
    threads: usize,
    batch: usize,
    rows: &mut Vec<(String, String)>,
) {
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
    use llama_cpp_2::sampling::LlamaSampler;

    let backend = llama_backend().expect("llama.cpp backend");
    let model = LlamaModel::load_from_file(backend, model_path, &LlamaModelParams::default())
        .expect("load model");
    let template = model
        .chat_template(None)
        .or_else(|_| LlamaChatTemplate::new("chatml"))
        .expect("chat template");
    let model_name = model_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reqs = describe_requests(&model_name, examples, batch);
    let prompts: Vec<Vec<_>> = reqs
        .iter()
        .map(|r| {
            let chat: Vec<LlamaChatMessage> = r
                .messages
                .iter()
                .map(|m| {
                    let role = match m.role {
                        Role::System => "system",
                        Role::User => "user",
                        Role::Assistant => "assistant",
                    };
                    LlamaChatMessage::new(role.into(), m.content.clone()).expect("message")
                })
                .collect();
            let text = model
                .apply_chat_template(&template, &chat, true)
                .expect("template");
            model.vocab().tokenize(text.as_bytes(), true, true)
        })
        .collect();

    // The engine's KV cache is unified (one cell pool, so prompt prefixes
    // can be shared between sequences); the plain loop's default is one
    // stream per sequence. The third run shows what unification costs.
    for (n, unified) in [(1, false), (batch, false), (batch, true)] {
        // Reference: prefill all prompts in one batch, then one token per
        // live sequence per decode.
        let params = LlamaContextParams::default()
            .with_n_ctx(std::num::NonZeroU32::new(4096))
            .with_n_batch(2048)
            .with_n_seq_max(n as u32)
            .with_n_threads(threads as i32)
            .with_n_threads_batch(threads as i32)
            .with_kv_unified(unified);
        let mut ctx = model.new_context(backend, params).expect("context");
        let mut b = LlamaBatch::new(2048, n as i32);
        let mut logits_at = Vec::new();
        let mut prompt_tokens = 0;
        for (seq, p) in prompts.iter().take(n).enumerate() {
            for (i, t) in p.iter().enumerate() {
                b.add(*t, i as i32, &[seq as i32], i + 1 == p.len())
                    .expect("batch add");
            }
            logits_at.push(Some(b.n_tokens() - 1));
            prompt_tokens += p.len();
        }
        let t = Instant::now();
        ctx.decode(&mut b).expect("decode prompt");
        let prompt_secs = t.elapsed().as_secs_f64();
        let mut samplers: Vec<LlamaSampler> = (0..n).map(|_| LlamaSampler::greedy()).collect();
        let mut pos: Vec<usize> = prompts.iter().take(n).map(Vec::len).collect();
        let mut live: Vec<bool> = vec![true; n];
        let mut generated = 0;
        let mut calls = 0;
        let mut decode_secs_in = 0.0;
        let t = Instant::now();
        for _ in 0..64 {
            b.clear();
            let mut next_at = vec![None; n];
            for seq in 0..n {
                if !live[seq] {
                    continue;
                }
                let Some(idx) = logits_at[seq] else { continue };
                let tok = samplers[seq].sample(&ctx, idx);
                if model.vocab().is_eog(tok) {
                    live[seq] = false;
                    continue;
                }
                generated += 1;
                next_at[seq] = Some(b.n_tokens());
                b.add(tok, pos[seq] as i32, &[seq as i32], true)
                    .expect("batch add");
                pos[seq] += 1;
            }
            if b.n_tokens() == 0 {
                break;
            }
            calls += 1;
            let d = Instant::now();
            ctx.decode(&mut b).expect("decode");
            decode_secs_in += d.elapsed().as_secs_f64();
            logits_at = next_at;
        }
        let decode_secs = t.elapsed().as_secs_f64();
        row(
            rows,
            format!(
                "[llama-cpp-2 loop{}] {n} prompt(s): prompt / decode tok/s",
                if unified { ", unified KV" } else { "" }
            ),
            format!(
                "{:.0} / {:.1}  ({prompt_tokens} prompt tokens in {prompt_secs:.2} s, {generated} generated in {decode_secs:.2} s; {calls} decode calls, {:.1} tokens each, {decode_secs_in:.2} s in llama_decode)",
                prompt_tokens as f64 / prompt_secs,
                generated as f64 / decode_secs,
                generated as f64 / f64::from(calls.max(1))
            ),
        );
        drop(ctx);
        if unified {
            continue;
        }

        // lmc's engine, fresh (nothing cached): the prompts with one reply
        // token, then again (prompts now cached) with up to 64.
        let lm = EmbeddedLm::load(EmbeddedConfig {
            model_path: model_path.to_path_buf(),
            threads: Some(threads),
            context: Some(4096),
            max_batch: Some(n),
        })
        .expect("load engine");
        let first: Vec<LmRequest> = reqs
            .iter()
            .take(n)
            .map(|r| LmRequest {
                max_tokens: 1,
                ..r.clone()
            })
            .collect();
        let (prompt_secs, usage, _) = run(rt, &lm, &first, true);
        let s0 = rt.block_on(lm.stats()).expect("stats");
        let (decode_secs, decoded, _) = run(rt, &lm, &reqs[..n], true);
        let s1 = rt.block_on(lm.stats()).expect("stats");
        row(
            rows,
            format!("[lmc engine]       {n} prompt(s): prompt / decode tok/s"),
            format!(
                "{:.0} / {:.1}  ({} prompt tokens in {prompt_secs:.2} s, {} generated in {decode_secs:.2} s; {} decode calls, {:.1} sequences each, {:.2} s in llama_decode)",
                usage.prompt_tokens as f64 / prompt_secs,
                decoded.completion_tokens as f64 / decode_secs,
                usage.prompt_tokens,
                decoded.completion_tokens,
                s1.decode_calls - s0.decode_calls,
                (s1.sequence_steps - s0.sequence_steps) as f64
                    / (s1.decode_calls - s0.decode_calls).max(1) as f64,
                (s1.decode_time - s0.decode_time).as_secs_f64()
            ),
        );
    }
}

fn engine_part(
    rt: &tokio::runtime::Runtime,
    model_path: &Path,
    examples: &[(String, String)],
    threads: &[usize],
    batch: usize,
    rows: &mut Vec<(String, String)>,
) {
    let sig = sentiment();
    let grammar = AdapterKind::Chat.grammar(&sig, 64);
    let grammar = (!grammar.is_empty()).then_some(grammar);
    for &t in threads {
        let started = Instant::now();
        let lm = EmbeddedLm::load(EmbeddedConfig {
            model_path: model_path.to_path_buf(),
            threads: Some(t),
            context: Some(4096),
            max_batch: Some(batch),
        })
        .expect("load model");
        let load = started.elapsed().as_secs_f64();
        let model = lm.model();
        row(
            rows,
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
        let (secs, _, _) = run(rt, &lm, &cold, true);
        let s1 = rt.block_on(lm.stats()).expect("stats");
        let (p, r) = delta(s0, s1);
        row(
            rows,
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
        let (secs, usage, _) = run(rt, &lm, &long[..1], false);
        row(
            rows,
            format!("[threads={t}] generated tokens/s (1 sequence)"),
            format!("{:.1}", usage.completion_tokens as f64 / secs),
        );
        let (secs, usage, _) = run(rt, &lm, &long, true);
        row(
            rows,
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
            let (secs, usage, texts) = run(rt, &lm, &reqs, batched);
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
                rows,
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
                .zip(examples)
                .filter(|(p, (_, gold))| p.as_deref() == Some(gold.as_str()))
                .count();
            let mode = if batched { "batched" } else { "one at a time" };
            row(rows,
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
            rows,
            format!("[threads={t}] batched replies == one-at-a-time replies"),
            same.to_string(),
        );
    }
}

/// Print one result line as soon as it is measured (a full run takes
/// minutes on a busy machine) and keep it for the record.
fn row(rows: &mut Vec<(String, String)>, key: String, value: String) {
    println!("{key:<58}  {value}");
    rows.push((key, value));
}
