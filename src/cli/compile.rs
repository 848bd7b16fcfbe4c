//! `lmc compile`: run an optimizer over a program and write the winning
//! overlay as an artifact.
//!
//! This file owns the command's flags, the resolution of its inputs
//! (program, trainset, valset, metric and LM default to the program or
//! project file), the dry-run projection, the progress bars (one per phase,
//! with the best score so far) and the summary. The search itself is
//! `crate::optimize`; the artifact format is `crate::artifact`. Exit codes:
//! 0 written (also when a budget stopped the search: the best candidate so
//! far is written and a warning says so), 2 bad input, 3 nothing could be
//! scored, 130 interrupted by SIGINT/SIGTERM (the best candidate fully
//! scored so far is written, marked `lineage.interrupted`, or nothing when
//! none was; a second signal aborts at once). Long searches are
//! checkpointed next to the artifact as they go and `--resume` continues
//! one (`super::checkpoint`).

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::common::input_err;
use super::progress::{bar, human_count};
use crate::artifact::{Artifact, DatasetRef, Lineage, MetricRef, RunStats};
use crate::data::{self, Dataset, LoadOptions};
use crate::metric::Metric;
use crate::optimize::{self, CompileReporter, Configured, Engine, Shape};
use crate::program::compile_section::DEFAULT_OPTIMIZER;
use crate::program::{CompileConfig, Program};

/// Optimize a program's demos (and instructions); write an artifact.
///
/// Trainset, valset, metric and LM default to the program file (`datasets:`,
/// `metric:`, `lm:`) or the project's `lmc.yaml`. Every LM reply is cached
/// as it arrives: an interrupted compile re-run with the same arguments
/// resumes without repeating calls.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program file (default: the project's program), or an artifact to
    /// compile further: what the optimizer does not search is kept.
    pub file: Option<PathBuf>,

    /// Training examples, CSV or JSONL (default: the program's `datasets.train`).
    #[arg(long, value_name = "PATH")]
    pub trainset: Option<PathBuf>,

    /// Examples candidates are scored on (default: the program's
    /// `datasets.dev`, else the trainset).
    #[arg(long, value_name = "PATH")]
    pub valset: Option<PathBuf>,

    /// Metric spec, overriding the program's `metric:`.
    #[arg(long, value_name = "SPEC")]
    pub metric: Option<String>,

    #[arg(long, value_name = "NAME", help = optimizer_help())]
    pub optimizer: Option<String>,

    /// Optimizer setting (repeatable), e.g. `--opt max_bootstrapped_demos=2`;
    /// overrides the same key of a `compile: {settings: …}` section;
    /// `--list` shows every optimizer's settings. In a pipeline,
    /// `--opt NAME.KEY=VALUE` sets a `--then NAME` stage's setting
    /// (unprefixed keys are the first optimizer's).
    #[arg(long = "opt", value_name = "KEY=VALUE")]
    pub opts: Vec<String>,

    /// Then run this optimizer from the previous stage's result
    /// (repeatable, in order): one budget, one cache, one artifact whose
    /// `lineage.stages` lists the earlier stages.
    #[arg(long = "then", value_name = "NAME")]
    pub then: Vec<String>,

    /// List the optimizers with their settings (type, default, help) and
    /// DSPy counterparts, and exit.
    #[arg(long)]
    pub list: bool,

    /// What to keep among the candidates scored on the whole valset:
    /// `score` (the best score), `cheapest-tied` (the fewest prompt tokens
    /// among those not significantly worse than the best, paired on the
    /// same valset rows) or `max-prompt-tokens=N` (the best averaging at
    /// most N prompt tokens per call) [default: `compile.objective` of
    /// lmc.yaml, else of the program, else score].
    #[arg(long, value_name = "OBJECTIVE",
          value_parser = |s: &str| s.parse::<optimize::Objective>())]
    pub objective: Option<optimize::Objective>,

    /// Seed for every random choice (samples, shuffles, demo counts).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Use the first N training examples.
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,

    /// Use the first N validation examples.
    #[arg(long, value_name = "N")]
    pub val_limit: Option<usize>,

    /// Map a dataset column to a program field (repeatable).
    #[arg(long = "map", value_name = "COLUMN=FIELD", value_parser = super::common::column_field)]
    pub map: Vec<super::common::KeyValue>,

    /// Artifact to write [default: <program-stem>.compiled.json in the
    /// current directory].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Print the projected number of LM calls (and cost where prices are
    /// known) and exit without calling the LM.
    #[arg(long)]
    pub dry_run: bool,

    /// Continue from the checkpoint an interrupted or killed compile left
    /// next to the artifact (`OUT.checkpoint.json`): finished stages and
    /// the search state (MIPROv2 trials, GEPA iterations) are restored, not
    /// replayed. Refused when the checkpoint was taken for another compile.
    #[arg(long)]
    pub resume: bool,

    /// Keep the checkpoint after the compile finishes (it is deleted by
    /// default).
    #[arg(long)]
    pub keep_checkpoint: bool,

    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,

    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,

    /// Proposer LM for instruction search (copro, mipro, gepa): a model
    /// name served at --prompt-base-url, or a GGUF file for the embedded
    /// engine [default: the task LM].
    #[arg(long, value_name = "MODEL")]
    pub prompt_lm: Option<String>,

    /// Base URL of the proposer's OpenAI-compatible server (repeatable).
    #[arg(long, value_name = "URL")]
    pub prompt_base_url: Vec<String>,

    /// Environment variable holding the proposer's API key.
    #[arg(long, value_name = "VAR")]
    pub prompt_api_key_env: Option<String>,

    #[command(flatten)]
    pub lm: super::lm_args::LmArgs,
}

/// `--optimizer`'s help, from the registry.
fn optimizer_help() -> String {
    format!(
        "Optimizer: {} (`--list` describes each) [default: `compile.optimizer` of lmc.yaml, \
         else of the program, else {DEFAULT_OPTIMIZER}]",
        optimize::names().join(", ")
    )
}

/// `--list`: every registered optimizer with its settings, from the registry.
fn list(json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let all: Vec<Value> = optimize::REGISTRY
            .iter()
            .map(|o| {
                json!({"name": o.name(), "dspy": o.dspy(), "about": o.about(),
                       "prompt_lm": o.uses_prompt_lm(), "settings": o.settings_docs()})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for o in optimize::REGISTRY {
        let _ = writeln!(out, "{}  (DSPy {}): {}", o.name(), o.dspy(), o.about());
        for d in o.settings_docs() {
            let _ = writeln!(
                out,
                "  --opt {}=…  {}; default {}\n      {}",
                d.key, d.expected, d.default, d.help
            );
        }
        let _ = writeln!(out);
    }
    Ok(ExitCode::SUCCESS)
}

/// The proposer's run context when `--prompt-lm`/`--prompt-base-url` name
/// one (cache, offline and budget settings are shared with the task LM).
fn prompt_context(
    args: &Args,
    stages: &[&dyn Configured],
) -> anyhow::Result<Option<crate::run::RunContext>> {
    if args.prompt_lm.is_none() && args.prompt_base_url.is_empty() {
        return Ok(None);
    }
    if !stages.iter().any(|o| o.uses_prompt_lm()) {
        let searches: Vec<&str> = optimize::REGISTRY
            .iter()
            .filter(|o| o.uses_prompt_lm())
            .map(|o| o.name())
            .collect();
        return Err(input_err(format!(
            "--prompt-lm applies to the instruction searches ({}), not `{}`",
            searches.join(", "),
            super::pipeline::names(stages)
        )));
    }
    // The proposer's URL and key variable are the runner's own flags (the
    // credential rule sees them as such).
    let cfg = crate::program::LmConfig {
        provider: (!args.prompt_base_url.is_empty()).then(|| "openai".to_string()),
        model: args.prompt_lm.clone(),
        base_urls: args.prompt_base_url.clone(),
        api_key_env: args.prompt_api_key_env.clone(),
        ..Default::default()
    };
    let lm = crate::lm::ResolvedLm::from_config(&cfg)
        .map_err(|e| input_err(format!("--prompt-lm: {e}")))?;
    let built = crate::lm::build::build_lm_full(&lm, &args.lm.options()?)
        .map_err(|e| input_err(format!("--prompt-lm: {e}")))?;
    Ok(Some(crate::run::RunContext::new(built.lm)))
}

/// The named LM a stage's proposer runs on, from `compile:`: GEPA's
/// `reflection_lm`, else `prompt_lm` (for every instruction search).
fn role_lm<'a>(roles: &'a BTreeMap<String, String>, opt: &dyn Configured) -> Option<&'a str> {
    if !opt.uses_prompt_lm() {
        return None;
    }
    let reflection = (opt.name() == "gepa")
        .then(|| roles.get("reflection_lm"))
        .flatten();
    reflection
        .or_else(|| roles.get("prompt_lm"))
        .map(String::as_str)
}

/// A role no stage has is a mistake worth saying (it would silently do
/// nothing): `reflection_lm` needs `gepa`, `prompt_lm` an instruction search.
fn check_roles(roles: &BTreeMap<String, String>, stages: &[&dyn Configured]) -> anyhow::Result<()> {
    for role in roles.keys() {
        let used = stages.iter().any(|o| match role.as_str() {
            "reflection_lm" => o.name() == "gepa",
            "teacher_lm" => o.searches().demos,
            _ => o.uses_prompt_lm(),
        });
        if !used {
            return Err(input_err(format!(
                "`compile.{role}` names an LM for {}, and this compile runs `{}`\n  = help: remove `{role}`, or choose an optimizer that uses it",
                match role.as_str() {
                    "reflection_lm" => "GEPA's reflection",
                    "teacher_lm" => "the bootstrapping teacher",
                    _ => "the instruction proposer",
                },
                super::pipeline::names(stages)
            )));
        }
    }
    Ok(())
}

/// The run's totals over every LM.
fn total_usage(per_lm: &[crate::lm::usage::LmUsage]) -> crate::lm::UsageSnapshot {
    let mut t = crate::lm::UsageSnapshot::default();
    for u in per_lm {
        let s = &u.usage;
        t.calls += s.calls;
        t.cache_hits += s.cache_hits;
        t.errors += s.errors;
        t.retries += s.retries;
        t.prompt_tokens += s.prompt_tokens;
        t.completion_tokens += s.completion_tokens;
        t.cost += s.cost;
    }
    t
}

/// Progress bars: one per phase, with the best score so far.
struct Bars {
    quiet: bool,
    /// The bar of the phase running now, with the phase's name.
    current: Mutex<Option<(String, indicatif::ProgressBar)>>,
    best: Mutex<Option<f64>>,
    /// Runs per phase as the dry run projects them (for the stage running).
    planned: Mutex<Vec<(String, u64)>>,
    /// Where each earlier phase's bar stood when another phase started.
    done: Mutex<std::collections::HashMap<String, u64>>,
    /// Candidates recorded so far (scored, or rejected on a minibatch).
    candidates: std::sync::atomic::AtomicUsize,
}

impl Bars {
    /// The bar of the phase running now.
    fn bar(&self) -> Option<indicatif::ProgressBar> {
        self.current
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|(_, pb)| pb.clone()))
    }

    /// The next stage of a pipeline: its own phases and best score.
    fn stage(&self, planned: Vec<(String, u64)>) {
        self.finish();
        if let Ok(mut p) = self.planned.lock() {
            *p = planned;
        }
        if let Ok(mut d) = self.done.lock() {
            d.clear();
        }
        if let Ok(mut b) = self.best.lock() {
            *b = None;
        }
        self.candidates
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The search is over: clear the bar.
    fn finish(&self) {
        if let Some((_, pb)) = self.current.lock().ok().and_then(|mut c| c.take()) {
            pb.finish_and_clear();
        }
    }

    fn message(&self) -> String {
        let k = self.candidates.load(std::sync::atomic::Ordering::Relaxed);
        match self.best.lock().ok().and_then(|b| *b) {
            Some(b) => format!(
                "{k} candidate{} · best {b:.3}",
                if k == 1 { "" } else { "s" }
            ),
            None => String::new(),
        }
    }
}

impl Bars {
    /// The first SIGINT/SIGTERM, said above the bar (even with --quiet: the
    /// user must see that lmc is winding down rather than hanging).
    fn interrupted(&self, signal: &str) {
        let line = format!(
            "{signal}: stopping; no new candidates or LM calls, keeping the best scored so far \
             (press Ctrl-C again to abort at once)"
        );
        match self.bar() {
            Some(pb) => pb.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl CompileReporter for Bars {
    /// A phase the search enters again (one evaluation per candidate)
    /// continues its bar instead of restarting it; the bar's length is the
    /// dry run's projection for the whole phase, so its ETA is the phase's
    /// (an upper bound when the search may stop early).
    fn phase(&self, name: &str, total: usize) {
        let Ok(mut c) = self.current.lock() else {
            return;
        };
        if let Some((current, pb)) = c.as_ref() {
            if current == name {
                let room = pb.length().unwrap_or(0).saturating_sub(pb.position());
                if (total as u64) > room {
                    pb.inc_length(total as u64 - room);
                }
                return;
            }
        }
        let Ok(mut done) = self.done.lock() else {
            return;
        };
        if let Some((old_name, old)) = c.take() {
            done.insert(old_name, old.position());
            old.finish_and_clear();
        }
        // A phase re-entered after another one (bootstrapping, evaluating,
        // bootstrapping...) resumes where its bar stood.
        let before = done.get(name).copied().unwrap_or(0);
        let planned = self.planned.lock().map_or(0, |p| {
            p.iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, runs)| *runs)
        });
        let pb = bar(planned.max(before + total as u64), name, self.quiet);
        pb.set_position(before);
        pb.reset_eta();
        pb.set_message(self.message());
        *c = Some((name.to_string(), pb));
    }
    fn tick(&self) {
        if let Some(pb) = self.bar() {
            pb.inc(1);
        }
    }
    fn candidate(&self, _r: &crate::artifact::CandidateRecord, best: f64) {
        self.candidates
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut b) = self.best.lock() {
            *b = Some(best);
        }
        if let Some(pb) = self.bar() {
            pb.set_message(self.message());
        }
    }
    // A phase ends once per candidate; its bar stays until another phase
    // starts or the search ends (`finish`), so it never restarts at zero.
    fn phase_done(&self) {}
    fn note(&self, message: &str) {
        let line = format!("note: {message}");
        match self.bar() {
            // A hidden bar (stderr not a terminal) drops what it prints.
            Some(pb) if !self.quiet && !pb.is_hidden() => pb.println(line),
            _ => {
                if !self.quiet {
                    eprintln!("{line}")
                }
            }
        }
    }
}

/// Inputs resolved before anything runs.
struct Setup {
    program: Program,
    program_path: PathBuf,
    train: Dataset,
    val: Option<Dataset>,
    metric: Metric,
    metric_spec: Value,
    optimizer: Box<dyn Configured>,
    /// The `--then` stages, run in order after `optimizer`.
    then: Vec<Box<dyn Configured>>,
    /// Where each setting given explicitly came from (`FILE:LINE:COL`, `--opt`).
    settings_from: BTreeMap<String, String>,
    output: PathBuf,
    /// Every LM, resolved once (built in `run`).
    lm_set: crate::lm::LmSet,
    /// Optimizer role (`prompt_lm`, `reflection_lm`) -> named LM, from the
    /// program's and the project's `compile:` (the project's wins).
    roles: BTreeMap<String, String>,
    /// Compiling from an artifact: its overlay and the stages so far.
    base: Option<(crate::overlay::Overlay, Vec<crate::artifact::Stage>)>,
    /// `--objective`, else the last `compile.objective`, else `score`.
    objective: optimize::Objective,
}

impl Setup {
    /// Every stage in order: the optimizer, then the `--then` ones.
    fn stages(&self) -> Vec<&dyn Configured> {
        std::iter::once(&*self.optimizer)
            .chain(self.then.iter().map(|o| &**o))
            .collect()
    }
}

/// The optimizer and its settings, in layers: the program's `compile:`
/// section, then the project file's, then `--optimizer`/`--opt`. The
/// optimizer is the last layer's that names one (else
/// [`DEFAULT_OPTIMIZER`]); a section's settings apply only when it is for
/// that optimizer (a note says when one is set aside), key by key, later
/// layers winning. Returns it configured, with each explicit key's origin.
fn choose_optimizer(
    args: &Args,
    sections: &[Option<&CompileConfig>],
    name: String,
    opts: &[String],
) -> anyhow::Result<(Box<dyn Configured>, BTreeMap<String, String>)> {
    let mut raw = serde_json::Map::new();
    let mut from = BTreeMap::new();
    for c in sections.iter().flatten() {
        if c.settings.is_empty() {
            continue;
        }
        if c.optimizer_name() != name {
            if !args.quiet {
                let at = c.origins.values().next().cloned().unwrap_or_default();
                eprintln!(
                    "note: {at}: these `compile.settings` are for `{}`, not `{name}`: set aside",
                    c.optimizer_name()
                );
            }
            continue;
        }
        for (k, v) in &c.settings {
            raw.insert(k.clone(), v.clone());
            if let Some(at) = c.origins.get(k) {
                from.insert(k.clone(), at.clone());
            }
        }
    }
    let pairs = crate::optimize::settings::parse_pairs(&name, opts)
        .map_err(|e| input_err(format!("{e}")))?;
    for (k, v) in pairs {
        from.insert(k.clone(), "--opt".to_string());
        raw.insert(k, v);
    }
    let optimizer = optimize::lookup(&name)
        .and_then(|o| o.configure(&raw))
        .map_err(|e| input_err(format!("{e}")))?;
    Ok((optimizer, from))
}

fn resolve(args: &Args) -> anyhow::Result<Setup> {
    let target = super::target::load(args.file.as_deref(), false)?;
    // An artifact is a starting point (composition): its overlay is the
    // base the new optimizer layers over, its lineage the earlier stages.
    let base = match &target.artifact {
        Some(a) => {
            let bytes = std::fs::read(&target.path)
                .map_err(|e| input_err(format!("{}: {e}", target.path.display())))?;
            Some((
                target.overlay.clone(),
                crate::artifact::Stage::chain(a, &bytes),
            ))
        }
        None => None,
    };
    // Nothing a file asks for runs before the runner's grants are checked.
    args.lm.trust.check_exec(&target, args.metric.as_deref())?;
    let program = target.program.clone();
    let base_dir = super::common::program_dir(&program, &target.path);
    // Unknown optimizers (with a did-you-mean) and settings fail here,
    // before any dataset is read or LM built.
    let sections = [
        program.compile.as_ref(),
        target.project.as_ref().and_then(|p| p.compile.as_ref()),
    ];
    let named = sections
        .iter()
        .rev()
        .flatten()
        .find(|c| c.optimizer.is_some());
    let first = args
        .optimizer
        .clone()
        .or_else(|| named.and_then(|c| c.optimizer.clone()))
        .unwrap_or_else(|| DEFAULT_OPTIMIZER.to_string());
    // A `compile:` list's later stages, unless the command line names the
    // pipeline (`--optimizer` or `--then`).
    let listed: &[CompileConfig] = match named {
        Some(c) if args.optimizer.is_none() && args.then.is_empty() => &c.then,
        _ => &[],
    };
    let then_names: Vec<String> = if listed.is_empty() {
        args.then.clone()
    } else {
        listed
            .iter()
            .map(|c| c.optimizer_name().to_string())
            .collect()
    };
    let names: Vec<&str> = std::iter::once(first.as_str())
        .chain(then_names.iter().map(String::as_str))
        .collect();
    let mut opts = super::pipeline::route_opts(&args.opts, &names)?;
    let first_opts = std::mem::take(&mut opts[0]);
    let (optimizer, settings_from) = choose_optimizer(args, &sections, first, &first_opts)?;
    let then = if listed.is_empty() {
        super::pipeline::configure_then(&args.then, &opts[1..])?
    } else {
        super::pipeline::configure_listed(listed, &opts[1..])?
    };
    let roles: BTreeMap<String, String> = sections
        .iter()
        .flatten()
        .flat_map(|c| c.lms.clone())
        .collect();
    let lm_set = args.lm.resolve(&target)?;
    let mut columns = program.datasets.columns.clone();
    columns.extend(super::common::column_map(&args.map));
    let load = |path: &Path, limit: Option<usize>| -> anyhow::Result<Dataset> {
        let opts = LoadOptions {
            columns: columns.clone(),
            limit,
            seed: args.seed,
            ..Default::default()
        };
        data::load(path, &program, &opts).map_err(|e| input_err(format!("{e}")))
    };
    let train_path = args
        .trainset
        .clone()
        .or_else(|| program.datasets.train.clone())
        .ok_or_else(|| {
            input_err(format!(
                "no trainset: pass --trainset PATH, or add `datasets: {{train: PATH}}` to {}",
                target.path.display()
            ))
        })?;
    let train = load(&train_path, args.train_limit)?;
    let val = match args.valset.clone().or_else(|| program.datasets.dev.clone()) {
        Some(p) => Some(load(&p, args.val_limit)?),
        None => None,
    };
    let (metric, metric_spec) =
        super::common::resolve_metric(args.metric.as_deref(), &program, &base_dir)?;
    // Expected values without a column fail now, not after every LM call;
    // datasets taken from the program are named on stderr.
    let train_role = args.trainset.is_none().then_some("train");
    super::preflight::ensure_expected(&program, &metric, &train, &columns, train_role)?;
    super::preflight::note_implicit(&train_path, train_role, "trainset");
    if let Some(v) = &val {
        let role = args.valset.is_none().then_some("dev");
        super::preflight::ensure_expected(&program, &metric, v, &columns, role)?;
        super::preflight::note_implicit(&v.path, role, "valset");
    }
    // Checked where the section was read, so it parses.
    let objective = args
        .objective
        .or_else(|| {
            sections
                .iter()
                .rev()
                .flatten()
                .find_map(|c| c.objective.as_deref()?.parse().ok())
        })
        .unwrap_or_default();
    let output = args.output.clone().unwrap_or_else(|| {
        let stem = target
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.name.clone());
        PathBuf::from(format!("{stem}.compiled.json"))
    });
    Ok(Setup {
        lm_set,
        roles,
        program,
        program_path: target.path,
        train,
        val,
        metric,
        metric_spec,
        optimizer,
        then,
        settings_from,
        output,
        base,
        objective,
    })
}

fn dataset_ref(d: &Dataset) -> DatasetRef {
    DatasetRef {
        path: d.path.display().to_string(),
        hash: d.hash.clone(),
        examples: d.examples.len(),
    }
}

/// `--dry-run`: projected calls (and an upper-bound cost when prices are
/// known); for a pipeline, each stage's and their sum.
fn dry_run(args: &Args, s: &Setup) -> anyhow::Result<ExitCode> {
    let n_val = s.val.as_ref().unwrap_or(&s.train).examples.len();
    let shape = Shape {
        program: &s.program,
        n_train: s.train.examples.len(),
        n_val,
    };
    let stages = s.stages();
    let mut projections = Vec::new();
    let mut cost: Option<f64> = None;
    for o in &stages {
        let p = optimize::project(*o, &shape);
        if let Some(c) = cost_bound(args, s, *o, &p)? {
            cost = Some(cost.unwrap_or(0.0) + c);
        }
        projections.push(p);
    }
    let p = &projections[0];
    let total: u64 = projections.iter().map(|p| p.lm_calls).sum();
    let exact = projections.iter().all(|p| p.exact);
    let effective = s.optimizer.settings();
    if args.json {
        let mut out = json!({
            "dry_run": true,
            "optimizer": s.optimizer.name(),
            "settings": effective,
            "settings_from": s.settings_from,
            "trainset": s.train.examples.len(),
            "valset": n_val,
            "calls_per_run": p.calls_per_run,
            "phases": p.phases.iter().map(|(n, r)| json!({"phase": n, "runs": r})).collect::<Vec<_>>(),
            "lm_calls": total,
            "exact": exact,
            "cost_upper_bound": cost,
        });
        if stages.len() > 1 {
            out["stages"] = stages
                .iter()
                .zip(&projections)
                .map(|(o, p)| json!(super::pipeline::dry_run_row(*o, p)))
                .collect();
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let bound = if exact { "" } else { "at most " };
        println!(
            "dry run: {} on {} ({} train, {} val examples)",
            super::pipeline::names(&stages),
            s.program.name,
            s.train.examples.len(),
            n_val
        );
        for (o, p) in stages.iter().zip(&projections) {
            if stages.len() > 1 {
                println!("  stage {}: {} LM calls", o.name(), p.lm_calls);
            }
            for (name, runs) in &p.phases {
                println!("  {name:<14} {bound}{runs} program runs");
            }
        }
        println!(
            "  LM calls       {bound}{total} ({} per run), on a cold cache",
            p.calls_per_run
        );
        if let Some(c) = cost {
            println!("  cost           at most ${c:.4}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Upper-bound cost of one stage when prices are known: prompt size of the
/// first example with the largest demo set the optimizer may use, and the
/// full completion allowance.
fn cost_bound(
    args: &Args,
    s: &Setup,
    optimizer: &dyn Configured,
    p: &optimize::Projection,
) -> anyhow::Result<Option<f64>> {
    let effective = optimizer.settings();
    let _ = args;
    let lm = &s.lm_set.default;
    let cfg = &lm.config;
    Ok(
        match (cfg.price_prompt_per_mtok, cfg.price_completion_per_mtok) {
            (None, None) => None,
            (pp, pc) => {
                let adapter = lm.adapter;
                let max_demos = effective
                    .get("max_labeled_demos")
                    .or_else(|| effective.get("k"))
                    .and_then(|v| v.as_u64())
                    .unwrap_or(16) as usize;
                let ex = s.train.examples.first();
                let mut prompt_tokens = 0u64;
                for pr in s.program.predictors() {
                    let demos: Vec<_> = s
                        .train
                        .examples
                        .iter()
                        .filter_map(|e| optimize::labeled::demo_for(&pr.signature, e))
                        .take(max_demos)
                        .collect();
                    let inputs = ex.map(|e| e.inputs.clone()).unwrap_or_default();
                    let msgs = adapter.render(&pr.signature, &demos, &inputs);
                    let chars: usize = msgs.iter().map(|m| m.content.len()).sum();
                    prompt_tokens += (chars / 4) as u64;
                }
                let per_run_prompt = prompt_tokens.max(1);
                let completion = lm.max_tokens() as u64 * p.calls_per_run;
                let runs = p.lm_calls / p.calls_per_run.max(1);
                Some(
                    runs as f64
                        * (per_run_prompt as f64 * pp.unwrap_or(0.0)
                            + completion as f64 * pc.unwrap_or(0.0))
                        / 1e6,
                )
            }
        },
    )
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.lm.concurrency == Some(0) {
        return Err(input_err("--concurrency must be at least 1"));
    }
    if args.list {
        return list(args.json);
    }
    let s = resolve(&args)?;
    if args.dry_run {
        return dry_run(&args, &s);
    }
    let started = Instant::now();
    let lms = args.lm.build_set(s.lm_set.clone())?;
    lms.check_names(
        s.metric
            .lm_name()
            .map(|n| (n, "the metric `llm_judge`".to_string()))
            .into_iter()
            .chain(
                s.roles
                    .iter()
                    .map(|(role, n)| (n.as_str(), format!("`compile.{role}`"))),
            ),
    )?;
    let ctx = lms.context(&s.program)?;
    let concurrency = lms.set.default.concurrency();
    let stages = s.stages();
    let shape = Shape {
        program: &s.program,
        n_train: s.train.examples.len(),
        n_val: s.val.as_ref().unwrap_or(&s.train).examples.len(),
    };
    let bars = Arc::new(Bars {
        quiet: args.quiet || args.json,
        current: Mutex::new(None),
        best: Mutex::new(None),
        planned: Mutex::new(optimize::project(stages[0], &shape).phases),
        done: Default::default(),
        candidates: Default::default(),
    });
    let rt = super::runtime()?;
    // From here a first SIGINT/SIGTERM stops the search gracefully and a
    // second one ends lmc at once (replies received are cached either way).
    let interrupt = {
        let bars = bars.clone();
        super::signals::install(&rt, move |name| bars.interrupted(name))
    };
    let valset = s.val.as_ref().unwrap_or(&s.train);
    let prompt = prompt_context(&args, &stages)?;
    check_roles(&s.roles, &stages)?;
    // The search state is checkpointed next to the artifact as it goes.
    let ck_inputs = super::checkpoint::inputs(
        &s.program.content_hash,
        s.base.as_ref().map(|(b, _)| b),
        &stages,
        &s.train.hash,
        &valset.hash,
        &s.metric.content_hash(),
        args.seed,
        &lms.set.default.config,
        args.prompt_lm.as_deref(),
    );
    let ck_path = super::checkpoint::path_for(&s.output);
    let restored = if args.resume {
        Some(super::checkpoint::load(&ck_path, &ck_inputs, &stages)?)
    } else {
        if ck_path.exists() {
            eprintln!(
                "note: {} holds the checkpoint of an earlier compile: pass --resume to continue from it (this run starts over and replaces it)",
                ck_path.display()
            );
        }
        None
    };
    let resumed = restored
        .as_ref()
        .map(|f| super::checkpoint::restored_message(f, &ck_path));
    if let Some(m) = &resumed {
        eprintln!("{m}");
    }
    let (mut done_stages, mut current) = match restored {
        Some(f) => (f.stages, f.current),
        None => (Vec::new(), None),
    };
    let writer = Arc::new(super::checkpoint::Writer::new(ck_path, ck_inputs));
    if resumed.is_some() {
        writer.restore(done_stages.clone());
    }
    // The stages run in order on one LM context (one budget, one cache),
    // each from the previous stage's overlay. A spent budget or an
    // interrupt ends the pipeline: the last stage that kept a result wins.
    let mut runs: Vec<(Engine<'_>, optimize::Outcome)> = Vec::new();
    let mut skipped: Vec<&str> = Vec::new();
    for (i, opt) in stages.iter().copied().enumerate() {
        if let Some((prev, _)) = runs.last() {
            if prev.exhausted() || prev.interrupted().is_some() {
                skipped = stages[i..].iter().map(|o| o.name()).collect();
                break;
            }
            bars.stage(optimize::project(opt, &shape).phases);
        }
        if stages.len() > 1 && !(args.quiet || args.json) {
            eprintln!("stage {}/{}: {}", i + 1, stages.len(), opt.name());
        }
        let engine = Engine::new(
            &s.program,
            &s.metric,
            &s.train.examples,
            &valset.examples,
            ctx.clone(),
            concurrency,
            args.seed,
            &*bars,
        );
        if i < done_stages.len() {
            // Finished before the checkpoint: its outcome, not a re-run.
            let d = std::mem::take(&mut done_stages[i]);
            let outcome = d.outcome();
            engine.restore_books(d.books);
            runs.push((engine, outcome));
            continue;
        }
        let resume = current.take().filter(|c| c.stage == i).map(|c| c.search);
        let mut engine = engine
            .with_interrupt(interrupt.clone())
            .with_checkpoints(writer.hook(i, opt.name()), resume);
        if let Some(p) = prompt.as_ref().filter(|_| opt.uses_prompt_lm()) {
            engine = engine.with_prompt_lm(p.clone());
        } else if let Some(name) = role_lm(&s.roles, opt) {
            // The file names this stage's proposer (or GEPA's reflection
            // model): it runs on that LM, the task on the default.
            engine = engine.with_prompt_lm(ctx.with_lm(Some(name)));
        }
        if let Some(name) = s.roles.get("teacher_lm") {
            engine = engine.with_teacher_lm(ctx.all_on(name));
        }
        engine = engine.with_objective(s.objective, prices(&lms.set.default.config));
        let start = match runs.last() {
            Some((_, o)) => Some(o.best.clone()),
            None => s.base.as_ref().map(|(b, _)| b.clone()),
        };
        if let Some(base) = start {
            engine = engine.with_base(base, opt.searches());
        }
        // Example runs honour the interrupt's grace themselves; this bound also
        // covers an instruction proposal in flight, after which the search is
        // abandoned and the engine's best fully scored candidate is kept.
        let outcome = rt.block_on(async {
            tokio::select! {
                o = optimize::compile(&engine, opt) => Some(o),
                _ = async {
                    interrupt.requested().await;
                    tokio::time::sleep(interrupt.grace() + Duration::from_secs(1)).await
                } => None,
            }
        });
        bars.finish();
        let interrupted = engine.interrupted();
        let later = !runs.is_empty();
        let outcome = match (outcome, &interrupted) {
            (Some(Ok(o)), None) => o,
            // The budget ran out at a later stage's start: the earlier
            // stages' result stands.
            (Some(Err(optimize::OptimizeError::Budget(_))), None) if later => {
                skipped = stages[i..].iter().map(|o| o.name()).collect();
                break;
            }
            (Some(Err(e)), None) => match e {
                optimize::OptimizeError::Budget(_) | optimize::OptimizeError::NoPredictors => {
                    anyhow::bail!("{e}")
                }
                e => return Err(input_err(format!("{e}"))),
            },
            // Unreachable: the timer arm only ends after an interrupt.
            (None, None) => anyhow::bail!("the search stopped without a result"),
            (o, Some(reason)) => match kept_on_interrupt(&engine, o) {
                Some(o) => o,
                None if later => {
                    skipped = stages[i..].iter().map(|o| o.name()).collect();
                    break;
                }
                None => return nothing_kept(&args, &engine, reason, writer.live()),
            },
        };
        if interrupted.is_none() && !engine.exhausted() {
            writer.stage_done(super::checkpoint::DoneStage::of(
                opt.name(),
                &outcome,
                &engine,
            ));
        }
        runs.push((engine, outcome));
    }
    let Some((engine, outcome)) = runs.pop() else {
        anyhow::bail!("the pipeline ran no stage");
    };
    let interrupted = engine.interrupted();
    let final_stage = stages[runs.len()];
    // Earlier stages of this command, after those of the artifact it
    // started from.
    let mut earlier = s
        .base
        .as_ref()
        .map(|(_, st)| st.clone())
        .unwrap_or_default();
    for ((e, o), opt) in runs.iter().zip(&stages) {
        earlier.push(super::pipeline::stage_record(*opt, o, e.usage().0));
    }
    let budget_message = runs
        .iter()
        .map(|(e, _)| e)
        .chain(std::iter::once(&engine))
        .find_map(|e| e.budget_message());
    if !skipped.is_empty() {
        eprintln!(
            "warning: stage{} {} did not run ({}): the artifact holds `{}`'s result",
            if skipped.len() == 1 { "" } else { "s" },
            skipped.join(", "),
            if interrupted.is_some() {
                "interrupted"
            } else {
                "the LM budget is spent"
            },
            final_stage.name()
        );
    }
    let (requests, _) = engine.usage();
    let per_lm = lms.usage();
    let meter = total_usage(&per_lm);
    let lineage = Lineage {
        optimizer: final_stage.name().to_string(),
        settings: final_stage.settings(),
        // Where the first optimizer's settings came from (a `--then`
        // stage's come from `--opt` only).
        settings_from: if runs.is_empty() {
            s.settings_from.clone()
        } else {
            BTreeMap::new()
        },
        plan: outcome.plan.clone(),
        seed: args.seed,
        trainset: Some(dataset_ref(&s.train)),
        valset: Some(dataset_ref(valset)),
        metric: Some(MetricRef {
            spec: s.metric_spec.clone(),
            hash: s.metric.content_hash(),
        }),
        baseline_score: outcome.baseline_score,
        train_score: outcome.train_score,
        dev_score: outcome.best_score.map(|b| b.mean),
        dev_ci95: outcome.best_score.map(|b| b.ci95),
        lm_calls: requests,
        run: RunStats {
            wall_time_s: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            backend_calls: meter.calls,
            cache_hits: meter.cache_hits,
            prompt_tokens: meter.prompt_tokens,
            completion_tokens: meter.completion_tokens,
            cost: meter.cost,
        },
        lmc_version: env!("CARGO_PKG_VERSION").to_string(),
        budget_exhausted: budget_message.is_some() || engine.exhausted(),
        interrupted: interrupted.clone(),
        history: outcome.history.clone(),
        stages: earlier,
        tradeoff: engine.tradeoff(),
    };
    let artifact = Artifact::new(
        &s.program,
        &outcome.best,
        Some(&lms.set.default.recorded()),
        lineage,
        &s.output,
    )
    .with_lms(lms.set.named.iter().map(|(n, r)| (n, r.recorded())));
    artifact
        .save(&s.output)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // A finished compile needs no checkpoint; an interrupted one, or one a
    // budget stopped, keeps it for `--resume`.
    if interrupted.is_none() && budget_message.is_none() && !args.keep_checkpoint {
        writer.remove();
    }
    if let Some(m) = budget_message {
        let how = match writer.live() {
            Some(ck) => format!(
                "re-run with a larger budget and --resume to continue from the checkpoint {}",
                ck.display()
            ),
            None => "re-run with a larger budget to resume from the cache".to_string(),
        };
        eprintln!(
            "warning: {m}: the search stopped early; {} holds the best candidate scored so far ({how})",
            s.output.display()
        );
    }
    let l = &artifact.lineage;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "artifact": s.output.display().to_string(),
                "program": s.program_path.display().to_string(),
                "optimizer": l.optimizer,
                "dev_score": l.dev_score,
                "dev_ci95": l.dev_ci95,
                "baseline_score": l.baseline_score,
                "train_score": l.train_score,
                "lm_requests": l.lm_calls,
                "lm_calls": l.run.backend_calls,
                "cache_hits": l.run.cache_hits,
                "prompt_tokens": l.run.prompt_tokens,
                "completion_tokens": l.run.completion_tokens,
                "cost": l.run.cost,
                "lms": if per_lm.len() > 1 { json!(per_lm) } else { Value::Null },
                "wall_time_s": l.run.wall_time_s,
                "budget_exhausted": l.budget_exhausted,
                "interrupted": l.interrupted,
                "tradeoff": l.tradeoff,
                "candidates": l.history,
                "stages": l.stages,
                "resumed": resumed,
                "demos": artifact.predictors.iter().map(|(p, st)| (p.clone(), st.demos.len())).collect::<BTreeMap<_, _>>(),
            }))?
        );
    } else {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let score = match (l.dev_score, l.dev_ci95) {
            (Some(m), Some([lo, hi])) => format!(
                "{m:.4}  (95% CI {lo:.4} – {hi:.4}, {} val examples)",
                valset.examples.len()
            ),
            _ => "not measured".into(),
        };
        let mut rows: Vec<(&str, String)> = vec![
            ("artifact", s.output.display().to_string()),
            ("optimizer", l.optimizer.clone()),
            ("dev score", score),
        ];
        if let Some(b) = l.baseline_score {
            rows.push(("zero-shot", format!("{b:.4}")));
        }
        if let Some(note) = super::compile_note::kept_zero_shot(&artifact, &s.program) {
            rows.push(("result", note));
        }
        if !l.history.is_empty() {
            rows.push(("candidates", l.history.len().to_string()));
        }
        if let Some(m) = &resumed {
            rows.push(("resumed", m.clone()));
        }
        if !runs.is_empty() {
            let calls: Vec<String> = l.stages[l.stages.len() - runs.len()..]
                .iter()
                .map(|st| st.lm_calls.to_string())
                .chain(std::iter::once(l.lm_calls.to_string()))
                .collect();
            rows.push((
                "pipeline",
                format!(
                    "{}  (LM requests per stage {})",
                    super::pipeline::names(&stages[..=runs.len()]),
                    calls.join(" + ")
                ),
            ));
        }
        for (p, st) in &artifact.predictors {
            let n = st
                .knn
                .as_ref()
                .map(|k| format!("kNN k={} over {} demos", k.k, k.pool.len()));
            let aug = st.demos.iter().filter(|d| d.augmented).count();
            rows.push((
                "demos",
                format!(
                    "{p}: {}",
                    n.unwrap_or_else(|| format!("{} ({aug} bootstrapped)", st.demos.len()))
                ),
            ));
        }
        // What instruction search changed, per predictor.
        for (p, st) in &artifact.predictors {
            let Some(new) = &st.instructions else {
                continue;
            };
            let old = s.program.predictor(p).map(|r| r.signature.objective());
            if old.as_deref() != Some(new.as_str()) {
                let short: String = new.chars().take(100).collect();
                let more = if new.chars().count() > 100 { "…" } else { "" };
                rows.push(("instruction", format!("{p}: {short}{more}")));
            }
        }
        if let Some(t) = &l.tradeoff {
            super::compile_note::tradeoff_rows(t, &mut rows);
        }
        rows.push((
            "LM calls",
            format!("{}  (cache hits {})", meter.calls, meter.cache_hits),
        ));
        rows.push((
            "tokens",
            format!(
                "{} prompt + {} completion",
                human_count(l.run.prompt_tokens),
                human_count(l.run.completion_tokens)
            ),
        ));
        if l.run.cost > 0.0 {
            rows.push(("cost", format!("${:.4}", l.run.cost)));
        }
        rows.push(("wall time", format!("{:.1} s", l.run.wall_time_s)));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            let _ = writeln!(out, "{k:>width$}  {v}");
        }
    }
    if !args.quiet {
        super::lm_args::print_usage(&per_lm);
    }
    if let Some(reason) = &l.interrupted {
        let score = l
            .dev_score
            .map(|m| format!("dev score {m:.4} on {} val examples", valset.examples.len()))
            .unwrap_or_else(|| "score not measured".into());
        eprintln!(
            "interrupted ({reason}): kept the best candidate fully scored so far ({score}) in {}, \
             marked `lineage.interrupted`\n  = help: {}",
            s.output.display(),
            resume_help(&args, writer.live())
        );
        return Ok(ExitCode::from(super::signals::EXIT_INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
}

/// USD per million prompt and completion tokens, when either is configured.
fn prices(cfg: &crate::program::LmConfig) -> Option<(f64, f64)> {
    match (cfg.price_prompt_per_mtok, cfg.price_completion_per_mtok) {
        (None, None) => None,
        (p, c) => Some((p.unwrap_or(0.0), c.unwrap_or(0.0))),
    }
}

/// How an interrupted compile resumes.
fn resume_help(args: &Args, checkpoint: Option<&Path>) -> String {
    if let Some(checkpoint) = checkpoint {
        return format!(
            "the search state is checkpointed in {}: re-run the same command with --resume to continue from it",
            checkpoint.display()
        );
    }
    if args.lm.no_cache {
        "--no-cache: no reply was kept, a re-run starts over".into()
    } else {
        "every LM reply received is cached: re-run the same command to resume; \
         it replays the recorded replies and pays only for new calls"
            .into()
    }
}

/// What an interrupted compile keeps: the search's own choice when it
/// handed one back scored on the whole valset, else the best candidate the
/// engine saw fully scored. `None` when no candidate was.
fn kept_on_interrupt(
    engine: &Engine<'_>,
    searched: Option<Result<optimize::Outcome, optimize::OptimizeError>>,
) -> Option<optimize::Outcome> {
    let searched = searched.and_then(Result::ok);
    if let Some(o) = searched.as_ref().filter(|o| o.best_score.is_some()) {
        return Some(o.clone());
    }
    let (best, score) = engine.best_scored()?;
    Some(optimize::Outcome {
        best,
        best_score: Some(score),
        baseline_score: searched.as_ref().and_then(|o| o.baseline_score),
        train_score: searched.as_ref().and_then(|o| o.train_score),
        plan: searched.map(|o| o.plan).unwrap_or_default(),
        history: engine.history(),
    })
}

/// An interrupt before any candidate was scored on the whole valset:
/// nothing is written (a partial score must never pose as a result).
fn nothing_kept(
    args: &Args,
    engine: &Engine<'_>,
    reason: &str,
    checkpoint: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "artifact": null,
                "interrupted": reason,
                "lm_requests": engine.usage().0,
                "candidates": engine.history(),
            }))?
        );
    }
    eprintln!(
        "interrupted ({reason}) before any candidate was scored on the whole valset: \
         no artifact written\n  = help: {}",
        resume_help(args, checkpoint)
    );
    Ok(ExitCode::from(super::signals::EXIT_INTERRUPTED))
}
