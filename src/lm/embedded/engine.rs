//! The engine thread: owns the llama.cpp model and context and schedules
//! every request onto them.
//!
//! Scheduling is continuous batching over a fixed set of slots, one llama.cpp
//! sequence id each. Every step builds one `llama_batch` holding each
//! sequence's queued tokens — the last sampled token plus any the grammar
//! forces after it (jump-forward, see `skeleton`), or a chunk of a newly
//! admitted prompt — decodes it once, and samples each sequence with its
//! own grammar and pick (greedy or seeded). The KV cache is
//! unified (all sequences share one cell pool) so that a prompt prefix can be
//! shared: on admission the engine finds the slot whose cached tokens share
//! the longest prefix with the new prompt and copies those cells into the new
//! sequence (`seq_cp` only tags cells, it copies no data), so a system
//! message and demos common to a whole dataset are computed once. Finished
//! sequences keep their cells until the space is needed. When the cache is
//! full, idle sequences are evicted first, then the youngest running one is
//! preempted and restarted later (its output does not change: decoding is
//! greedy or seeded).

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{mpsc, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;
use tokio::sync::oneshot;

use super::skeleton::{Next, Skeleton, Tracker};
use super::{EngineStats, Tuning};
use crate::adapter::{Message, Role};
use crate::lm::choice::{self, ChoiceMode, ChoiceScores};
use crate::lm::{LmError, LmRequest, Usage};

/// Upper bound on sequences decoded together (llama.cpp allows 256; beyond
/// this the per-step sampling cost dominates on a CPU anyway).
pub(super) const MAX_SEQUENCES: usize = 64;

/// Most tokens handed to one `llama_decode` call; llama.cpp splits it into
/// micro-batches itself.
const MAX_BATCH_TOKENS: u32 = 2048;

/// Sequence ids past the slots' kept for scoring enum values (one value
/// each, per batched evaluation), plus one for a content-free prompt.
const SCRATCH_SEQS: usize = 16;

/// Content-free value scores kept (one per prompt template and demo set,
/// so few); past this the memo starts afresh.
const MAX_CALIBRATIONS: usize = 4096;

/// Shared prefix length (tokens) for which delaying a request by one
/// decode step pays off.
const MIN_PREFIX_WORTH_WAITING: usize = 32;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub model_path: PathBuf,
    pub threads: usize,
    pub context: u32,
    pub max_batch: usize,
    pub tuning: Tuning,
}

pub(super) type Reply = Result<(String, Usage, Vec<ChoiceScores>), LmError>;

pub(super) struct Job {
    pub request: LmRequest,
    pub reply: oneshot::Sender<Reply>,
}

pub(super) enum Command {
    Complete(Box<Job>),
    Stats(oneshot::Sender<EngineStats>),
}

/// llama.cpp's backend may be initialised once per process, and several
/// engines (tests, benches) may be loaded in one process.
pub(super) fn backend() -> Result<&'static LlamaBackend, LmError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // Library code never prints: silence llama.cpp's stderr logging.
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(false),
            );
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LmError::Fatal(format!("could not initialise llama.cpp: {e}")))
}

/// Start the engine thread and wait until the model is loaded.
pub(super) fn spawn(settings: Settings) -> Result<mpsc::Sender<Command>, LmError> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("lmc-embedded".into())
        .spawn(move || run(settings, rx, ready_tx))
        .map_err(|e| LmError::Fatal(format!("could not start the embedded engine: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(tx),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(LmError::Fatal(
            "the embedded engine stopped while loading the model".into(),
        )),
    }
}

fn run(
    settings: Settings,
    commands: mpsc::Receiver<Command>,
    ready: mpsc::SyncSender<Result<(), LmError>>,
) {
    let loaded = backend().and_then(|backend| {
        let model =
            LlamaModel::load_from_file(backend, &settings.model_path, &LlamaModelParams::default())
                .map_err(|e| {
                    LmError::Fatal(format!(
                        "could not load the GGUF model {}: {e}",
                        settings.model_path.display()
                    ))
                })?;
        Ok((backend, model))
    });
    let (backend, model) = match loaded {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let threads = i32::try_from(settings.threads).unwrap_or(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(settings.context))
        .with_n_batch(settings.context.min(MAX_BATCH_TOKENS))
        .with_n_seq_max((settings.max_batch + 1 + SCRATCH_SEQS) as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_kv_unified(true);
    let ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(LmError::Fatal(format!(
                "could not create a llama.cpp context of {} tokens: {e}",
                settings.context
            ))));
            return;
        }
    };
    // The model's own template (ChatML for SmolLM2); ChatML when the GGUF
    // has none, as llama.cpp's server does.
    let template = model
        .chat_template(None)
        .or_else(|_| LlamaChatTemplate::new("chatml"))
        .ok();
    let Some(template) = template else {
        let _ = ready.send(Err(LmError::Fatal(
            "the model has no usable chat template".into(),
        )));
        return;
    };
    let _ = ready.send(Ok(()));
    let n_batch = ctx.n_batch();
    let mut engine = Engine {
        // Recurrent and hybrid models cannot drop part of a sequence, which
        // prefix reuse relies on.
        prefix_reuse: !model.is_recurrent() && !model.is_hybrid(),
        model: &model,
        template,
        ctx,
        batch: LlamaBatch::new(n_batch as usize, 1),
        n_batch: n_batch as usize,
        context: settings.context as usize,
        slots: (0..settings.max_batch)
            .map(|i| Slot {
                seq: i as i32,
                cached: Vec::new(),
                active: None,
            })
            .collect(),
        pending: VecDeque::new(),
        stats: EngineStats::default(),
        admitted: 0,
        hold_admission: false,
        tuning: settings.tuning,
        calibrations: HashMap::new(),
    };
    engine.serve(commands);
}

/// A request whose prompt has been rendered and tokenized.
struct Pending {
    job: Box<Job>,
    prompt: Vec<LlamaToken>,
}

struct Slot {
    seq: i32,
    /// Tokens whose KV is stored under this sequence id, positions 0..len.
    cached: Vec<LlamaToken>,
    active: Option<Active>,
}

struct Active {
    pending: Pending,
    sampler: Sampler,
    /// Tokens to decode next, in order, after `Slot::cached`: the rest of
    /// the prompt, then the last sampled token and any forced ones. Logits
    /// are read after the last of them.
    queue: Vec<LlamaToken>,
    /// Tokens sampled from the model.
    generated: usize,
    /// Tokens forced by the grammar's skeleton (decoded in batches).
    forced: usize,
    text: Vec<u8>,
    max_tokens: usize,
    /// Where the reply is in its grammar's skeleton (jump-forward).
    tracker: Tracker,
    /// Admission order, to preempt the youngest first.
    order: u64,
    /// Enum values decided by likelihood so far, in reply order.
    choices: Vec<ChoiceScores>,
}

/// A sequence's token choice: the grammar (when given) and the pick
/// (greedy, or temperature and a seeded draw), kept apart so that forced
/// tokens can be checked against and accepted into the grammar alone, and
/// so that greedy decoding can try the best raw token before masking the
/// whole vocabulary.
struct Sampler {
    grammar: Option<LlamaSampler>,
    pick: LlamaSampler,
    greedy: bool,
}

struct Engine<'m> {
    model: &'m LlamaModel,
    template: LlamaChatTemplate,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    context: usize,
    slots: Vec<Slot>,
    pending: VecDeque<Pending>,
    stats: EngineStats,
    admitted: u64,
    prefix_reuse: bool,
    /// Set after a preemption so the preempted job does not immediately
    /// displace another; cleared when a sequence finishes.
    hold_admission: bool,
    tuning: Tuning,
    /// Content-free log-probabilities of enum values, keyed by a hash of
    /// the content-free context and the values: computed once per prompt
    /// template and demo set, not once per example.
    calibrations: HashMap<u64, Vec<f64>>,
}

impl Engine<'_> {
    fn serve(&mut self, commands: mpsc::Receiver<Command>) {
        let mut open = true;
        loop {
            let busy = self.slots.iter().any(|s| s.active.is_some());
            if !busy && self.pending.is_empty() {
                if !open {
                    return;
                }
                match commands.recv() {
                    Ok(cmd) => self.accept(cmd),
                    Err(_) => return,
                }
            }
            loop {
                match commands.try_recv() {
                    Ok(cmd) => self.accept(cmd),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.admit();
            self.step();
        }
    }

    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Stats(tx) => {
                let _ = tx.send(self.stats);
            }
            Command::Complete(job) => match self.tokenize(&job.request) {
                Ok(prompt) => self.pending.push_back(Pending { job, prompt }),
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            },
        }
    }

    /// Apply the model's chat template and tokenize.
    fn tokenize(&self, req: &LmRequest) -> Result<Vec<LlamaToken>, LmError> {
        let chat = req
            .messages
            .iter()
            .map(|m: &Message| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                LlamaChatMessage::new(role.into(), m.content.clone())
                    .map_err(|e| LmError::Fatal(format!("message not representable: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let text = self
            .model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| LmError::Fatal(format!("could not apply the chat template: {e}")))?;
        let tokens = self.model.vocab().tokenize(text.as_bytes(), true, true);
        if tokens.is_empty() {
            return Err(LmError::Fatal("empty prompt".into()));
        }
        if tokens.len() + 1 >= self.context {
            return Err(LmError::Fatal(format!(
                "prompt of {} tokens does not fit the embedded context of {} tokens; raise the LM `context`",
                tokens.len(),
                self.context
            )));
        }
        Ok(tokens)
    }

    /// Move pending requests into free slots, reusing cached prefixes.
    fn admit(&mut self) {
        while !self.hold_admission {
            let Some(free) = self.pick_free_slot() else {
                return;
            };
            let Some(next) = self.pending.front() else {
                return;
            };
            if self.prefix_reuse && self.should_wait_for_prefix(&next.prompt) {
                return;
            }
            let Some(p) = self.pending.pop_front() else {
                return;
            };
            let sampler = match build_sampler(self.model, &p.job.request, &p.prompt) {
                Ok(s) => s,
                Err(e) => {
                    let _ = p.job.reply.send(Err(e));
                    continue;
                }
            };
            // A likelihood choice needs the skeleton to find its enum
            // values, and asked for it explicitly, so it follows the
            // skeleton whatever the jump-forward tuning says.
            let choosing = choice_mode(&p.job.request) != ChoiceMode::Sample;
            let skeleton = match p.job.request.grammar.as_deref() {
                Some(g) if self.tuning.jump_forward || choosing => Skeleton::from_gbnf(g),
                _ => Skeleton::default(),
            };
            // Forced text is split the tokenizer's way, not always the
            // model's, so what the model writes after it can change; free
            // text is sensitive to that (see `Tuning::jump_free_text`).
            let skeleton = if skeleton.has_free_text() && !self.tuning.jump_free_text && !choosing {
                Skeleton::default()
            } else {
                skeleton
            };
            let (tracker, first) = Tracker::start(&skeleton);
            if let Next::Force { text, end: true } = &first {
                // The grammar fixes the whole reply: nothing to decode.
                self.stats.prompt_tokens += p.prompt.len() as u64;
                self.stats.replies += 1;
                let usage = Usage {
                    prompt_tokens: p.prompt.len() as u64,
                    completion_tokens: self.count_skipped(text),
                };
                let _ = p.job.reply.send(Ok((text.clone(), usage, Vec::new())));
                continue;
            }
            let target = self.reuse_prefix(free, &p.prompt);
            self.admitted += 1;
            self.stats.prompt_tokens += p.prompt.len() as u64;
            let reused = self.slots[target].cached.len();
            self.stats.reused_tokens += reused as u64;
            let max_tokens = (p.job.request.max_tokens as usize).max(1);
            let queue = p.prompt[reused..].to_vec();
            let mut active = Active {
                pending: p,
                sampler,
                queue,
                generated: 0,
                forced: 0,
                text: Vec::new(),
                max_tokens,
                tracker,
                order: self.admitted,
                choices: Vec::new(),
            };
            if let Next::Force { text, .. } = first {
                // The reply's leading literal is prefilled with the prompt.
                self.stats.forced_tokens += force(self.model, &mut active, &text) as u64;
            }
            self.slots[target].active = Some(active);
        }
    }

    /// Tokens of fixed reply text that is appended without decoding, for
    /// usage and the counters.
    fn count_skipped(&mut self, text: &str) -> u64 {
        let n = self
            .model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .len() as u64;
        self.stats.skipped_tokens += n;
        n
    }

    /// Requests that arrive together share their prefix with each other
    /// but not yet with the cache: admitting them all at once would compute
    /// that prefix once per sequence. Wait one step instead when a sequence
    /// being prefilled will hold a much longer prefix of this prompt than
    /// the cache holds now, then copy it.
    fn should_wait_for_prefix(&self, prompt: &[LlamaToken]) -> bool {
        let limit = prompt.len() - 1;
        let cached = self
            .slots
            .iter()
            .map(|s| common_prefix(&s.cached, prompt).min(limit))
            .max()
            .unwrap_or(0);
        let coming = self
            .slots
            .iter()
            .filter_map(|s| {
                let a = s.active.as_ref()?;
                prefilling(s, a).then(|| common_prefix(&a.pending.prompt, prompt).min(limit))
            })
            .max()
            .unwrap_or(0);
        coming >= cached + MIN_PREFIX_WORTH_WAITING
    }

    /// A free slot, preferring one whose cache holds the next prompt's
    /// longest prefix (so nothing is copied), else the least useful cache.
    fn pick_free_slot(&self) -> Option<usize> {
        let next = self.pending.front()?;
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .max_by_key(|(_, s)| {
                (
                    common_prefix(&s.cached, &next.prompt),
                    std::cmp::Reverse(s.cached.len()),
                )
            })
            .map(|(i, _)| i)
    }

    /// Prepare slot `target` for `prompt`: keep or copy the longest cached
    /// prefix of it found in any sequence, drop the rest. At least the last
    /// prompt token is always decoded, because its logits start generation.
    fn reuse_prefix(&mut self, target: usize, prompt: &[LlamaToken]) -> usize {
        let limit = prompt.len() - 1;
        let (source, len) = if self.prefix_reuse {
            self.slots
                .iter()
                .enumerate()
                .map(|(i, s)| (i, common_prefix(&s.cached, prompt).min(limit)))
                // Prefer the target itself on ties: no copy needed.
                .max_by_key(|&(i, n)| (n, i == target))
                .unwrap_or((target, 0))
        } else {
            (target, 0)
        };
        let seq = self.slots[target].seq;
        if source == target && len > 0 {
            let ok = self
                .ctx
                .clear_kv_cache_seq(Some(seq as u32), Some(len as u32), None)
                .unwrap_or(false);
            if ok {
                self.slots[target].cached.truncate(len);
                return target;
            }
        }
        self.clear_seq(target);
        if len > 0 && source != target {
            let src = self.slots[source].seq;
            if self
                .ctx
                .copy_kv_cache_seq(src, seq, Some(0), Some(len as u32))
                .is_ok()
            {
                self.slots[target].cached = prompt[..len].to_vec();
            }
        }
        target
    }

    fn clear_seq(&mut self, slot: usize) {
        let seq = self.slots[slot].seq as u32;
        let _ = self.ctx.clear_kv_cache_seq(Some(seq), None, None);
        self.slots[slot].cached.clear();
    }

    /// One decode of every active sequence.
    fn step(&mut self) {
        if self.slots.iter().all(|s| s.active.is_none()) {
            return;
        }
        // (slot, tokens added from its queue, batch index of its logits)
        let mut plan: Vec<(usize, usize, Option<i32>)> = Vec::new();
        self.batch.clear();
        let mut room = self.n_batch;
        // Generating sequences first (a sampled token, perhaps with forced
        // ones after it) keeps them moving while long prompts are
        // prefilled in chunks.
        for generating in [true, false] {
            for (i, slot) in self.slots.iter().enumerate() {
                let Some(a) = &slot.active else { continue };
                if prefilling(slot, a) == generating || a.queue.is_empty() || room == 0 {
                    continue;
                }
                let done = slot.cached.len();
                let take = a.queue.len().min(room);
                let mut logits_at = None;
                let mut added = 0;
                for (k, tok) in a.queue[..take].iter().enumerate() {
                    let last = k + 1 == a.queue.len();
                    let idx = self.batch.n_tokens();
                    if self
                        .batch
                        .add(*tok, (done + k) as i32, &[slot.seq], last)
                        .is_err()
                    {
                        break;
                    }
                    if last {
                        logits_at = Some(idx);
                    }
                    added += 1;
                }
                room = room.saturating_sub(added);
                if added > 0 {
                    plan.push((i, added, logits_at));
                }
            }
        }
        if plan.is_empty() {
            return;
        }
        self.stats.decode_calls += 1;
        self.stats.sequence_steps += plan.len() as u64;
        self.stats.decoded_tokens += self.batch.n_tokens() as u64;
        let started = Instant::now();
        let decoded = self.ctx.decode(&mut self.batch);
        self.stats.decode_time += started.elapsed();
        match decoded {
            Ok(()) => {}
            Err(DecodeError::NoKvCacheSlot) => {
                self.make_room();
                return;
            }
            Err(e) => {
                self.fail_all(&format!("llama.cpp decode failed: {e}"));
                return;
            }
        }
        let vocab = self.model.vocab();
        // Sequences at an enum value to decide by likelihood: (slot, each
        // value's tokens, each value's first-token log-probability). They
        // are scored after this loop, because scoring decodes again and
        // that overwrites the logits the other sequences still need.
        let mut choosing: Vec<(usize, Vec<Vec<LlamaToken>>, Vec<f64>)> = Vec::new();
        for (i, added, logits_at) in plan {
            let slot = &mut self.slots[i];
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            slot.cached.extend(a.queue.drain(..added));
            let Some(idx) = logits_at else { continue };
            if choice_mode(&a.pending.job.request) != ChoiceMode::Sample {
                if let Some(values) = a.tracker.choice_values() {
                    let toks: Vec<Vec<LlamaToken>> = values
                        .iter()
                        .map(|v| vocab.tokenize(v.as_bytes(), false, false))
                        .collect();
                    let first = first_logprobs(self.ctx.get_logits_ith(idx), &toks);
                    choosing.push((i, toks, first));
                    continue;
                }
            }
            let started = Instant::now();
            let tok = a
                .sampler
                .sample(&self.ctx, idx, self.tuning.greedy_fast_path);
            self.stats.sample_time += started.elapsed();
            let Some(tok) = tok.filter(|t| !vocab.is_eog(*t)) else {
                self.finish(i, None);
                continue;
            };
            let piece = vocab.token_to_piece(tok, false, None);
            a.text.extend_from_slice(&piece);
            a.generated += 1;
            self.stats.generated_tokens += 1;
            a.queue.push(tok);
            let mut tail = None;
            match a.tracker.push(&String::from_utf8_lossy(&piece)) {
                Next::Sample => {}
                // Only fixed text is left: append it, decode nothing more.
                Next::Force { text, end: true } => tail = Some(text),
                Next::Force { text, end: false } => {
                    self.stats.forced_tokens += force(self.model, a, &text) as u64;
                }
            }
            // Also complete at max_tokens, or when the context has no room
            // for the queued tokens and one more.
            let complete = tail.is_some()
                || a.generated + a.forced >= a.max_tokens
                || slot.cached.len() + a.queue.len() + 1 >= self.context;
            if complete {
                self.finish(i, tail);
            }
        }
        for (i, toks, first) in choosing {
            self.choose(i, &toks, first);
        }
    }

    /// Decide the enum value sequence `slot` has reached by the likelihood
    /// of each whole value (and, calibrated, of the content-free prompt's),
    /// then append it and the literals after it as forced text.
    fn choose(&mut self, slot: usize, toks: &[Vec<LlamaToken>], first: Vec<f64>) {
        let seq = self.slots[slot].seq;
        let base = self.slots[slot].cached.len();
        let Some(a) = self.slots[slot].active.as_ref() else {
            return;
        };
        let mode = choice_mode(&a.pending.job.request);
        let Some(values) = a.tracker.choice_values().map(<[String]>::to_vec) else {
            return;
        };
        let scored = self.value_logprobs(seq, base, toks, first).and_then(|raw| {
            let cf = if mode == ChoiceMode::Calibrated {
                Some(self.content_free_logprobs(slot, &values, toks)?)
            } else {
                None
            };
            Ok((raw, cf))
        });
        let (raw, cf) = match scored {
            Ok(v) => v,
            Err(e) => {
                self.fail(slot, e);
                return;
            }
        };
        let scores = choice::decide(mode, &values, &raw, cf.as_deref());
        let Some(a) = self.slots[slot].active.as_mut() else {
            return;
        };
        let next = a.tracker.choose(&scores.chosen);
        a.choices.push(scores);
        match next {
            Next::Force { text, end: true } => self.finish(slot, Some(text)),
            Next::Force { text, end: false } => {
                self.stats.forced_tokens += force(self.model, a, &text) as u64;
                if a.queue.is_empty() {
                    // The grammar refused the value's tokens: nothing left
                    // to decode from, so say so instead of stalling.
                    self.fail(
                        slot,
                        LmError::Fatal("the grammar refused the chosen enum value's tokens".into()),
                    );
                }
            }
            Next::Sample => {}
        }
    }

    /// Log-probability of each value's whole tokenization after the
    /// `base` tokens of sequence `seq`, given each value's first-token
    /// log-probability. Values of several tokens are scored together in
    /// one decode: each gets a scratch sequence that shares `seq`'s cells
    /// (`seq_cp` only tags them) and holds its own tokens after them.
    fn value_logprobs(
        &mut self,
        seq: i32,
        base: usize,
        toks: &[Vec<LlamaToken>],
        mut logprobs: Vec<f64>,
    ) -> Result<Vec<f64>, LmError> {
        let long: Vec<usize> = (0..toks.len()).filter(|&k| toks[k].len() > 1).collect();
        let mut rest = &long[..];
        while !rest.is_empty() {
            // As many values as there are scratch sequences and batch room.
            let mut take = 0;
            let mut room = self.n_batch;
            while take < rest.len() && take < SCRATCH_SEQS && toks[rest[take]].len() - 1 <= room {
                room -= toks[rest[take]].len() - 1;
                take += 1;
            }
            if take == 0 {
                return Err(LmError::Fatal(format!(
                    "an enum value of {} tokens does not fit one batch of {}",
                    toks[rest[0]].len(),
                    self.n_batch
                )));
            }
            let chunk = &rest[..take];
            rest = &rest[take..];
            self.batch.clear();
            let mut at: Vec<Vec<i32>> = Vec::new();
            for (j, &k) in chunk.iter().enumerate() {
                let s = self.scratch_seq(1 + j);
                let _ = self.ctx.clear_kv_cache_seq(Some(s as u32), None, None);
                self.ctx
                    .copy_kv_cache_seq(seq, s, Some(0), Some(base as u32))
                    .map_err(|e| {
                        LmError::Fatal(format!("llama.cpp could not copy a sequence: {e}"))
                    })?;
                let mut idx = Vec::new();
                for (m, tok) in toks[k][..toks[k].len() - 1].iter().enumerate() {
                    idx.push(self.batch.n_tokens());
                    self.batch
                        .add(*tok, (base + m) as i32, &[s], true)
                        .map_err(|e| LmError::Fatal(format!("scoring batch: {e}")))?;
                }
                at.push(idx);
            }
            let decoded = self.decode_counted(chunk.len());
            if decoded.is_ok() {
                for (j, &k) in chunk.iter().enumerate() {
                    for (m, &idx) in at[j].iter().enumerate() {
                        let logits = self.ctx.get_logits_ith(idx);
                        logprobs[k] += log_softmax_at(logits, toks[k][m + 1]);
                    }
                }
            }
            for j in 0..chunk.len() {
                let s = self.scratch_seq(1 + j) as u32;
                let _ = self.ctx.clear_kv_cache_seq(Some(s), None, None);
            }
            decoded?;
        }
        Ok(logprobs)
    }

    /// The values' log-probabilities after the request's content-free
    /// prompt and the same reply so far, from the memo or computed on a
    /// scratch sequence that starts from whatever prefix (system message,
    /// demos) it shares with the slot's own cells.
    fn content_free_logprobs(
        &mut self,
        slot: usize,
        values: &[String],
        toks: &[Vec<LlamaToken>],
    ) -> Result<Vec<f64>, LmError> {
        let Some(a) = self.slots[slot].active.as_ref() else {
            return Err(LmError::Fatal("no active sequence".into()));
        };
        let Some(messages) = a
            .pending
            .job
            .request
            .choice
            .as_ref()
            .and_then(|c| c.content_free.clone())
        else {
            return Err(LmError::Fatal(
                "calibrated choice needs the content-free prompt in the request".into(),
            ));
        };
        let prompt_len = a.pending.prompt.len();
        let mut req = a.pending.job.request.clone();
        req.messages = messages;
        let mut context = self.tokenize(&req)?;
        // The reply so far, as the sequence itself holds it.
        context.extend_from_slice(&self.slots[slot].cached[prompt_len..]);
        let key = calibration_key(&context, values);
        if let Some(cf) = self.calibrations.get(&key) {
            return Ok(cf.clone());
        }
        let seq = self.slots[slot].seq;
        let cf_seq = self.scratch_seq(0);
        let shared = common_prefix(&self.slots[slot].cached, &context).min(context.len() - 1);
        let _ = self.ctx.clear_kv_cache_seq(Some(cf_seq as u32), None, None);
        let result = self.content_free_pass(seq, cf_seq, shared, &context, toks);
        let _ = self.ctx.clear_kv_cache_seq(Some(cf_seq as u32), None, None);
        let cf = result?;
        if self.calibrations.len() >= MAX_CALIBRATIONS {
            self.calibrations.clear();
        }
        self.calibrations.insert(key, cf.clone());
        Ok(cf)
    }

    /// Decode `context` on scratch sequence `cf_seq`, its first `shared`
    /// tokens copied from `seq`, and score the values after it.
    fn content_free_pass(
        &mut self,
        seq: i32,
        cf_seq: i32,
        shared: usize,
        context: &[LlamaToken],
        toks: &[Vec<LlamaToken>],
    ) -> Result<Vec<f64>, LmError> {
        if shared > 0 {
            self.ctx
                .copy_kv_cache_seq(seq, cf_seq, Some(0), Some(shared as u32))
                .map_err(|e| LmError::Fatal(format!("llama.cpp could not copy a sequence: {e}")))?;
        }
        let mut done = shared;
        let mut last = 0;
        while done < context.len() {
            let end = (done + self.n_batch).min(context.len());
            self.batch.clear();
            for (p, tok) in context[done..end].iter().enumerate() {
                let pos = done + p;
                last = self.batch.n_tokens();
                self.batch
                    .add(*tok, pos as i32, &[cf_seq], pos + 1 == context.len())
                    .map_err(|e| LmError::Fatal(format!("scoring batch: {e}")))?;
            }
            self.decode_counted(1)?;
            done = end;
        }
        let first = first_logprobs(self.ctx.get_logits_ith(last), toks);
        self.value_logprobs(cf_seq, context.len(), toks, first)
    }

    /// Scratch sequence `j` (0: content-free prompt; 1..: values).
    fn scratch_seq(&self, j: usize) -> i32 {
        (self.slots.len() + j) as i32
    }

    /// Decode `self.batch` as scoring work, counted in the stats.
    fn decode_counted(&mut self, sequences: usize) -> Result<(), LmError> {
        self.stats.decode_calls += 1;
        self.stats.sequence_steps += sequences as u64;
        self.stats.decoded_tokens += self.batch.n_tokens() as u64;
        let started = Instant::now();
        let decoded = self.ctx.decode(&mut self.batch);
        self.stats.decode_time += started.elapsed();
        decoded.map_err(|e| {
            LmError::Fatal(format!(
                "llama.cpp could not score the enum values ({e}); raise the LM `context` or lower `concurrency`"
            ))
        })
    }

    /// End an active sequence with an error.
    fn fail(&mut self, slot: usize, e: LmError) {
        if let Some(a) = self.slots[slot].active.take() {
            self.hold_admission = false;
            self.trim_finished(slot, a.pending.prompt.len());
            let _ = a.pending.job.reply.send(Err(e));
        }
    }

    /// Reply to a finished sequence; `tail` is fixed text that ends the
    /// reply without being decoded.
    fn finish(&mut self, slot: usize, tail: Option<String>) {
        let Some(a) = self.slots[slot].active.take() else {
            return;
        };
        self.hold_admission = false;
        self.stats.replies += 1;
        self.trim_finished(slot, a.pending.prompt.len());
        let mut text = String::from_utf8_lossy(&a.text).into_owned();
        let mut completion = (a.generated + a.forced) as u64;
        if let Some(tail) = tail {
            completion += self.count_skipped(&tail);
            text.push_str(&tail);
        }
        let usage = Usage {
            prompt_tokens: a.pending.prompt.len() as u64,
            completion_tokens: completion,
        };
        let _ = a.pending.job.reply.send(Ok((text, usage, a.choices)));
    }

    /// Drop a finished sequence's reply from the cache but keep its
    /// prompt: the next request most likely shares its system message and
    /// demos (and, repeated, all of it), while the reply is never reused.
    /// Every cached cell widens the attention window of all sequences in a
    /// unified cache, so stale replies would cost decode time.
    fn trim_finished(&mut self, slot: usize, prompt_len: usize) {
        if self.slots[slot].cached.len() <= prompt_len {
            return;
        }
        let seq = self.slots[slot].seq as u32;
        let ok = self
            .ctx
            .clear_kv_cache_seq(Some(seq), Some(prompt_len as u32), None)
            .unwrap_or(false);
        if ok {
            self.slots[slot].cached.truncate(prompt_len);
        } else {
            self.clear_seq(slot);
        }
    }

    /// The KV cache is full: evict idle sequences, else preempt the
    /// youngest running one (it restarts from its prompt later), else the
    /// single remaining sequence cannot fit and fails.
    fn make_room(&mut self) {
        let idle: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].active.is_none() && !self.slots[i].cached.is_empty())
            .collect();
        if !idle.is_empty() {
            for i in idle {
                self.clear_seq(i);
            }
            return;
        }
        let running: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].active.is_some())
            .collect();
        let youngest = running
            .iter()
            .copied()
            .max_by_key(|&i| self.slots[i].active.as_ref().map_or(0, |a| a.order));
        let Some(youngest) = youngest else { return };
        self.clear_seq(youngest);
        let Some(a) = self.slots[youngest].active.take() else {
            return;
        };
        if running.len() > 1 {
            self.stats.preemptions += 1;
            self.hold_admission = true;
            self.pending.push_front(a.pending);
        } else {
            let _ = a.pending.job.reply.send(Err(LmError::Fatal(format!(
                "prompt ({} tokens) and reply do not fit the embedded context of {} tokens; raise the LM `context` or lower max_tokens",
                a.pending.prompt.len(),
                self.context
            ))));
        }
    }

    fn fail_all(&mut self, message: &str) {
        for i in 0..self.slots.len() {
            if let Some(a) = self.slots[i].active.take() {
                let _ = a
                    .pending
                    .job
                    .reply
                    .send(Err(LmError::Fatal(message.into())));
            }
            self.slots[i].cached.clear();
        }
        self.ctx.clear_kv_cache();
        self.hold_admission = false;
    }
}

/// The request's choice mode (`sample` when it asks for none).
fn choice_mode(req: &LmRequest) -> ChoiceMode {
    req.choice.as_ref().map_or(ChoiceMode::Sample, |c| c.mode)
}

/// `log softmax(logits)[tok]`.
fn log_softmax_at(logits: &[f32], tok: LlamaToken) -> f64 {
    let Some(&l) = logits.get(tok.0 as usize) else {
        return f64::NEG_INFINITY;
    };
    f64::from(l) - log_sum_exp(logits)
}

fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|l| f64::from(l - max).exp()).sum();
    f64::from(max) + sum.ln()
}

/// Each value's first-token log-probability from one position's logits.
fn first_logprobs(logits: &[f32], toks: &[Vec<LlamaToken>]) -> Vec<f64> {
    let norm = log_sum_exp(logits);
    toks.iter()
        .map(|t| {
            t.first()
                .and_then(|tok| logits.get(tok.0 as usize))
                .map_or(f64::NEG_INFINITY, |&l| f64::from(l) - norm)
        })
        .collect()
}

/// FNV-1a over a content-free context and the values scored after it.
fn calibration_key(context: &[LlamaToken], values: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for t in context {
        feed(&t.0.to_le_bytes());
    }
    for v in values {
        feed(v.as_bytes());
        feed(&[0]);
    }
    h
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Whether a sequence is still computing its prompt.
fn prefilling(slot: &Slot, a: &Active) -> bool {
    slot.cached.len() < a.pending.prompt.len()
}

/// Append fixed reply text: its tokens are checked against and accepted
/// into the grammar, then queued to be decoded together in the next batch
/// (one forward pass, like prompt tokens). Returns how many were forced. A
/// token the grammar refuses (a tokenization it cannot follow) stops
/// jumping: the model goes on from the last accepted token, so the reply is
/// what plain decoding allows.
fn force(model: &LlamaModel, a: &mut Active, text: &str) -> usize {
    let vocab = model.vocab();
    let mut n = 0;
    for tok in vocab.tokenize(text.as_bytes(), false, false) {
        if !a.sampler.allows(tok) {
            a.tracker.give_up();
            break;
        }
        a.sampler.accept(tok);
        a.queue.push(tok);
        a.text
            .extend_from_slice(&vocab.token_to_piece(tok, false, None));
        n += 1;
    }
    a.forced += n;
    n
}

impl Sampler {
    /// Whether the grammar allows `tok` next (it always does without one).
    fn allows(&mut self, tok: LlamaToken) -> bool {
        let Some(g) = self.grammar.as_mut() else {
            return true;
        };
        let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(tok, 0.0, 0.0)], false);
        g.apply(&mut one);
        one.data.first().is_some_and(|d| d.logit().is_finite())
    }

    fn accept(&mut self, tok: LlamaToken) {
        if let Some(g) = self.grammar.as_mut() {
            g.accept(tok);
        }
        self.pick.accept(tok);
    }

    /// Choose and accept the next token from the logits at batch index
    /// `idx`. Greedy with `fast`: the best raw token, if the grammar allows
    /// it, is the best allowed token, so the grammar is checked on that one
    /// token instead of masking the whole vocabulary (llama.cpp's server
    /// does the same); only when it is refused is the full mask applied.
    /// The result is the same token either way.
    fn sample(&mut self, ctx: &LlamaContext<'_>, idx: i32, fast: bool) -> Option<LlamaToken> {
        if self.greedy && fast {
            let logits = ctx.get_logits_ith(idx);
            let mut best = 0;
            for (i, l) in logits.iter().enumerate() {
                // Strictly greater: the first maximum, as llama.cpp's greedy.
                if *l > logits[best] {
                    best = i;
                }
            }
            let best = LlamaToken(best as i32);
            if self.allows(best) {
                self.accept(best);
                return Some(best);
            }
        }
        let mut candidates = ctx.token_data_array_ith(idx);
        if let Some(g) = self.grammar.as_mut() {
            g.apply(&mut candidates);
        }
        self.pick.apply(&mut candidates);
        let tok = candidates.selected_token()?;
        self.accept(tok);
        Some(tok)
    }
}

/// Grammar (when given) then greedy at temperature 0, else temperature and
/// a seeded draw whose seed derives from the rollout id and the prompt (the
/// draw is fixed; logits may differ in the last bits when a prefix comes from
/// the KV cache, so exact replay of sampled replies is the response cache's job).
fn build_sampler(
    model: &LlamaModel,
    req: &LmRequest,
    prompt: &[LlamaToken],
) -> Result<Sampler, LmError> {
    let grammar = match req.grammar.as_deref().filter(|g| !g.trim().is_empty()) {
        Some(g) => Some(LlamaSampler::grammar(model, g, "root").map_err(|e| {
            LmError::Fatal(format!(
                "llama.cpp rejected the output grammar ({e}); grammar:\n{g}"
            ))
        })?),
        None => None,
    };
    let greedy = req.temperature <= 0.0;
    let pick = if greedy {
        LlamaSampler::greedy()
    } else {
        LlamaSampler::chain_simple([
            LlamaSampler::temp(req.temperature),
            LlamaSampler::dist(seed(req.rollout_id, prompt)),
        ])
    };
    Ok(Sampler {
        grammar,
        pick,
        greedy,
    })
}

/// FNV-1a over the rollout id and prompt tokens: stable across runs,
/// platforms and Rust versions (unlike `DefaultHasher`).
fn seed(rollout_id: Option<u64>, prompt: &[LlamaToken]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&rollout_id.unwrap_or(0).to_le_bytes());
    for t in prompt {
        feed(&t.0.to_le_bytes());
    }
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_depends_on_rollout_and_prompt() {
        let p = [LlamaToken(1), LlamaToken(2)];
        assert_eq!(seed(Some(1), &p), seed(Some(1), &p));
        assert_ne!(seed(Some(1), &p), seed(Some(2), &p));
        assert_ne!(seed(Some(1), &p), seed(Some(1), &p[..1]));
    }

    #[test]
    fn value_scores_are_log_softmax_of_their_tokens() {
        // Probabilities 1/4, 2/4, 1/4.
        let logits = [0.0f32, 2f32.ln(), 0.0];
        let lp = first_logprobs(
            &logits,
            &[
                vec![LlamaToken(1), LlamaToken(0)],
                vec![LlamaToken(2)],
                vec![],
            ],
        );
        assert!((lp[0] - 0.5f64.ln()).abs() < 1e-6, "{lp:?}");
        assert!((lp[1] - 0.25f64.ln()).abs() < 1e-6, "{lp:?}");
        assert_eq!(lp[2], f64::NEG_INFINITY);
        assert!((log_softmax_at(&logits, LlamaToken(1)) - 0.5f64.ln()).abs() < 1e-6);
        assert_eq!(log_softmax_at(&logits, LlamaToken(9)), f64::NEG_INFINITY);
    }

    #[test]
    fn calibration_memo_key_covers_context_and_values() {
        let ctx = [LlamaToken(1), LlamaToken(2)];
        let v = ["a".to_string(), "b".to_string()];
        let k = calibration_key(&ctx, &v);
        assert_eq!(k, calibration_key(&ctx, &v));
        assert_ne!(k, calibration_key(&ctx[..1], &v));
        assert_ne!(k, calibration_key(&ctx, &["ab".to_string()]));
    }

    #[test]
    fn common_prefix_counts_equal_leading_tokens() {
        let a = [LlamaToken(1), LlamaToken(2), LlamaToken(3)];
        let b = [LlamaToken(1), LlamaToken(2), LlamaToken(4)];
        assert_eq!(common_prefix(&a, &b), 2);
        assert_eq!(common_prefix(&a, &[]), 0);
    }
}
