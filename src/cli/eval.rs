//! `lmc eval`: score a program or compiled artifact on a dataset and gate CI.
//!
//! This file owns the command's flags, the resolution of what to evaluate
//! (program, metric, LM and dataset default to the program or project file,
//! so `lmc eval` works bare in a project), and every output: the progress
//! bar, the terminal summary, `--json` on stdout and the report files. The
//! evaluation itself is `crate::eval::evaluate`; gates are
//! `crate::eval::gate`. Exit codes: 0 ok, 1 a gate failed, 2 bad input,
//! 3 the run stopped (too many errors, budget spent), 130 interrupted by
//! SIGINT/SIGTERM (reports written, marked incomplete; gates not run).

use anyhow::Context as _;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::common::input_err;
use super::progress::{human_count, EvalProgress};
use super::CliError;
use crate::data::{self, Dataset, LoadOptions};
use crate::eval::gate::{self, Baseline, GateOutcome};
use crate::eval::{EvalError, EvalOptions, EvalReport};
use crate::metric::Metric;
use crate::overlay::Overlay;
use crate::program::Program;
use crate::run::RunContext;

/// Score a program or artifact on a dataset; gate CI on the score.
///
/// Program, metric, LM and dataset default to the program file (its
/// `metric:`, `lm:` and `datasets.dev`) or the project's `lmc.yaml`, so
/// `lmc eval --dataset dev.csv` or even bare `lmc eval` works.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program file or compiled artifact (default: the project's program).
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub data: super::common::DataArgs,

    /// Stop (exit 3, partial results written) once more than N examples failed.
    #[arg(long, value_name = "N")]
    pub max_errors: Option<usize>,

    /// Print the full report (summary + per-example results) as JSON on
    /// stdout; this is the file `--baseline` reads.
    #[arg(long)]
    pub json: bool,

    /// Write per-example results as JSON Lines.
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,

    /// Write a JUnit XML report (one testcase per example, or per gate
    /// with `--junit-mode gates`).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// What a JUnit testcase is: `examples` (default; a wrong example is a
    /// failed test) or `gates` (one testcase per gate, so a dashboard is
    /// red only when a gate failed).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = crate::eval::junit::JunitMode::Examples, requires = "junit")]
    pub junit_mode: crate::eval::junit::JunitMode,

    /// Write a Markdown summary (for CI step summaries).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Write a self-contained HTML report.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Gate: exit 1 when the mean score is under X.
    #[arg(long, value_name = "X")]
    pub min_score: Option<f64>,

    /// Gate: compare with a previous `lmc eval --json` report on the same dataset.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// With --baseline: exit 1 when the mean drops by more than D and the
    /// drop is significant at 0.05 (paired test).
    #[arg(long, value_name = "D", requires = "baseline")]
    pub max_drop: Option<f64>,

    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Fail (exit 2) instead of warning when a compiled artifact's program
    /// file changed since it was compiled.
    #[arg(long)]
    pub strict: bool,
    /// LM flags; `--concurrency` also sets how many examples run at once.
    #[command(flatten)]
    pub lm: super::lm_args::LmArgs,
}

fn check_args(args: &Args) -> anyhow::Result<()> {
    if let Some(x) = args.min_score {
        if !x.is_finite() {
            return Err(input_err("--min-score must be a number"));
        }
    }
    if let Some(d) = args.max_drop {
        if !d.is_finite() || d < 0.0 {
            return Err(input_err("--max-drop must be a number >= 0"));
        }
    }
    if args.lm.concurrency == Some(0) {
        return Err(input_err("--concurrency must be at least 1"));
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    check_args(&args)?;
    let columns = super::common::column_map(&args.data.map);
    // Read the baseline first: a wrong path should fail before any LM call.
    let baseline = match &args.baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| input_err(format!("cannot read baseline {}: {e}", p.display())))?;
            Some(
                Baseline::from_json(&text)
                    .map_err(|e| input_err(format!("baseline {}: {e}", p.display())))?,
            )
        }
        None => None,
    };
    let setup = resolve(&args, columns)?;
    // A baseline from another dataset is refused before spending LM calls.
    if let Some(b) = &baseline {
        if b.dataset.hash != setup.dataset.hash {
            let e = gate::GateError::DatasetMismatch {
                baseline: b.dataset.hash.clone(),
                current: setup.dataset.hash.clone(),
            };
            return Err(input_err(format!("{e}")));
        }
    }
    let rt = super::runtime()?;
    // The progress reporter announces the interrupt; nothing to add here.
    let interrupt = super::signals::install(&rt, |_| {});
    let progress = EvalProgress::new("eval", args.quiet);
    let opts = EvalOptions {
        concurrency: setup.concurrency,
        max_errors: args.max_errors,
        keep_traces: args.html.is_some(),
    };
    let outcome = rt.block_on(crate::eval::evaluate_until(
        &setup.ctx,
        &setup.program,
        &setup.overlay,
        &setup.dataset.examples,
        &setup.metric,
        &opts,
        &progress,
        &interrupt,
    ));
    let (mut report, stopped) = match outcome {
        Ok(r) => (r, None),
        Err(e) => {
            let msg = e.to_string();
            match e {
                EvalError::TooManyErrors { partial, .. } | EvalError::Budget { partial, .. } => {
                    (*partial, Some(msg))
                }
                EvalError::Empty => {
                    return Err(input_err(format!(
                        "no examples to evaluate in {} (check --limit/--sample/--split)",
                        setup.dataset_path.display()
                    )))
                }
            }
        }
    };
    report.dataset.path = Some(crate::eval::report_path(&setup.dataset_path));
    report.dataset.hash = setup.dataset.hash.clone();
    report.dataset.bad_rows = setup.dataset.bad_rows.len();
    let per_lm = setup.lms.usage();
    if per_lm.len() > 1 {
        report.lms = per_lm;
    }

    // Gates run only on a complete evaluation: a partial one proves nothing
    // (an interrupted run exits 130 whatever its partial score).
    let mut gates: Option<GateOutcome> = None;
    let complete = stopped.is_none() && report.status.complete && !interrupt.is_requested();
    if complete && (args.min_score.is_some() || baseline.is_some()) {
        let mut g = GateOutcome::default();
        if let Some(min) = args.min_score {
            g.checks.push(gate::min_score(&report, min));
        }
        if let Some(b) = &baseline {
            let (check, cmp) = gate::baseline(&report, b, args.max_drop.unwrap_or(0.0))
                .map_err(|e| input_err(format!("{e}")))?;
            g.checks.push(check);
            g.comparison = Some(cmp);
            g.regressed = gate::regressed(&report, b);
        }
        gates = Some(g);
    }
    report.gates = gates.clone();
    write_outputs(&args, &report, gates.as_ref())?;
    // Per-endpoint counts when the run was spread over several servers.
    let endpoints = setup
        .http
        .as_ref()
        .map(|h| h.endpoint_stats())
        .filter(|e| e.len() > 1);
    if let (Some(eps), false) = (&endpoints, args.quiet) {
        for e in eps {
            eprintln!(
                "endpoint {}: {} requests, {} errors, ejected {} times",
                e.url, e.requests, e.errors, e.ejections
            );
        }
    }
    if args.json {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match &endpoints {
            Some(eps) => {
                let mut v = serde_json::to_value(&report)?;
                v["endpoints"] = serde_json::to_value(eps)?;
                serde_json::to_writer_pretty(&mut out, &v)?;
            }
            None => serde_json::to_writer_pretty(&mut out, &report)?,
        }
        writeln!(out)?;
    } else {
        print_table(&report, gates.as_ref());
    }
    if !args.quiet {
        super::lm_args::print_usage(&report.lms);
    }
    // Failures are summarised by cause on stderr; a run where every
    // example failed is broken (exit 3), whatever the gates say.
    super::failures::print_summary(&report);
    if interrupt.is_requested() {
        let reason = interrupt.reason().unwrap_or("stop requested");
        eprintln!("{}", kept_summary(&args, &report, reason));
        return Ok(ExitCode::from(super::signals::EXIT_INTERRUPTED));
    }
    if let Some(msg) = stopped {
        anyhow::bail!("{msg}");
    }
    if super::failures::all_failed(&report) {
        anyhow::bail!(
            "every one of the {} examples failed, so there is no score (causes above)",
            report.results.len()
        );
    }
    if let Some(g) = &gates {
        if !g.passed() {
            let failed: Vec<String> = g
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("gate {} failed: {}", c.name, c.detail))
                .collect();
            return Err(CliError::Gate(failed.join("\n")).into());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What an interrupted run kept, for stderr: how far it got, which reports
/// hold the partial results, and that a re-run resumes from the cache.
fn kept_summary(args: &Args, report: &EvalReport, reason: &str) -> String {
    let st = &report.status;
    let mut kept: Vec<String> = Vec::new();
    if args.json {
        kept.push("the JSON report on stdout".into());
    }
    for p in [&args.results, &args.junit, &args.markdown, &args.html]
        .into_iter()
        .flatten()
    {
        kept.push(p.display().to_string());
    }
    let head = if st.complete {
        format!(
            "interrupted ({reason}) after all {} examples finished",
            st.examples_total
        )
    } else {
        st.describe()
    };
    let files = if kept.is_empty() {
        String::new()
    } else {
        format!(
            "\n  kept: {} (marked incomplete: gates were not run)",
            kept.join(", ")
        )
    };
    let help = if args.lm.no_cache {
        "--no-cache: no reply was kept, a re-run starts over"
    } else {
        "every LM reply received is cached: re-run the same command to resume \
         without paying for them again"
    };
    format!(
        "{head}; score {:.4} over the {} finished{files}\n  = help: {help}",
        report.summary.mean, st.examples_done
    )
}

fn create(path: &Path) -> anyhow::Result<BufWriter<File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let f = File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(BufWriter::new(f))
}

fn write_outputs(
    args: &Args,
    report: &EvalReport,
    gates: Option<&GateOutcome>,
) -> anyhow::Result<()> {
    if let Some(p) = &args.results {
        crate::eval::results::write_jsonl(report, create(p)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.junit {
        crate::eval::junit::write(report, gates, args.junit_mode, create(p)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.markdown {
        let mut w = create(p)?;
        w.write_all(crate::eval::markdown::render(report, gates).as_bytes())
            .and_then(|_| w.flush())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.html {
        crate::eval::html::write(report, gates, create(p)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// The default terminal output: a two-column summary and gate verdicts.
fn print_table(report: &EvalReport, gates: Option<&GateOutcome>) {
    let s = &report.summary;
    let dataset = report.dataset.label();
    let short_hash: String = report
        .dataset
        .hash
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect();
    let mut rows: Vec<(&str, String)> = vec![
        ("program", report.program.clone()),
        ("metric", report.metric.clone()),
        ("model", report.model.clone()),
        ("dataset", format!("{dataset} (sha256 {short_hash})")),
        (
            "score",
            format!(
                "{:.4}  (95% CI {:.4} – {:.4})",
                s.mean, s.ci95_low, s.ci95_high
            ),
        ),
        (
            "examples",
            format!(
                "{}  (errors {}, parse failures {}{})",
                s.n,
                s.errors,
                s.parse_failures,
                if report.dataset.bad_rows > 0 {
                    format!(", bad rows skipped {}", report.dataset.bad_rows)
                } else {
                    String::new()
                }
            ),
        ),
        (
            "LM calls",
            format!("{}  (cache hits {})", s.lm_calls, s.cache_hits),
        ),
        (
            "tokens",
            format!(
                "{} prompt + {} completion",
                human_count(s.prompt_tokens),
                human_count(s.completion_tokens)
            ),
        ),
        (
            "wall time",
            format!("{:.1} s  ({:.2} examples/s)", s.wall_s, s.examples_per_s),
        ),
    ];
    if s.cost > 0.0 {
        rows.push(("cost", format!("${:.4}", s.cost)));
    }
    if !report.status.complete {
        rows.push((
            "status",
            format!("INCOMPLETE: {}", report.status.describe()),
        ));
    }
    if let Some(g) = gates {
        for c in &g.checks {
            let verdict = if c.passed { "passed" } else { "FAILED" };
            rows.push(("gate", format!("{} {verdict}: {}", c.name, c.detail)));
        }
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:>width$}  {v}");
    }
}

/// Everything resolved before the run starts.
struct Setup {
    program: Program,
    overlay: Overlay,
    dataset: Dataset,
    dataset_path: PathBuf,
    metric: Metric,
    ctx: RunContext,
    /// Examples in flight: `--concurrency`, else the LM config's, else 8.
    concurrency: usize,
    /// The HTTP backend, for its per-endpoint counts.
    http: Option<std::sync::Arc<crate::lm::http::HttpLm>>,
    /// Every LM of the run, for usage per LM.
    lms: super::lm_args::BuiltLms,
}

fn resolve(args: &Args, columns: BTreeMap<String, String>) -> anyhow::Result<Setup> {
    let p = prepare(&Selection::of(
        args.file.as_deref(),
        &args.data,
        columns,
        args.strict,
        &args.lm,
    ))?;
    let lms = args.lm.build_set(p.lm_set)?;
    // The program's tools (sqlite, retrieve, command) are opened once here.
    let ctx = lms.context(&p.target.program)?;
    let concurrency = lms.set.default.concurrency();
    Ok(Setup {
        program: p.target.program,
        overlay: p.target.overlay,
        dataset: p.dataset,
        dataset_path: p.dataset_path,
        metric: p.metric,
        ctx,
        concurrency,
        http: lms.default.http.clone(),
        lms,
    })
}

/// What to evaluate, as the flags of `lmc eval` (and `lmc compare`, which
/// resolves each of its targets through here) state it.
pub(super) struct Selection<'a> {
    pub file: Option<&'a Path>,
    pub dataset: Option<&'a Path>,
    pub metric: Option<&'a str>,
    pub columns: BTreeMap<String, String>,
    pub limit: Option<usize>,
    pub sample: Option<usize>,
    pub seed: u64,
    pub split: Option<&'a str>,
    pub skip_bad_rows: bool,
    pub strict: bool,
    pub trust: &'a super::trust_args::TrustArgs,
    /// The LM flags the set is resolved with (a compare cell may resolve
    /// again with a variant's).
    pub lm: &'a super::lm_args::LmArgs,
}

impl<'a> Selection<'a> {
    /// The selection the shared data flags state for `file`.
    pub fn of(
        file: Option<&'a Path>,
        data: &'a super::common::DataArgs,
        columns: BTreeMap<String, String>,
        strict: bool,
        lm: &'a super::lm_args::LmArgs,
    ) -> Self {
        Selection {
            file,
            dataset: data.dataset.as_deref(),
            metric: data.metric.as_deref(),
            columns,
            limit: data.limit,
            sample: data.sample,
            seed: data.seed,
            split: data.split.as_deref(),
            skip_bad_rows: data.skip_bad_rows,
            strict,
            trust: &lm.trust,
            lm,
        }
    }
}

/// A target resolved up to its LM: the target as loaded (program,
/// overlay, and the files its LMs resolve from, so `lmc compare` can
/// resolve them again under a variant's flags), dataset, metric, and the
/// LM set the command's flags resolve (not built yet).
pub(super) struct Prepared {
    pub target: crate::settings::Target,
    pub dataset: Dataset,
    pub dataset_path: PathBuf,
    pub metric: Metric,
    /// The LMs as the command's flags resolve them.
    pub lm_set: crate::lm::resolve::LmSet,
}

pub(super) fn prepare(args: &Selection) -> anyhow::Result<Prepared> {
    let target = super::target::load(args.file, args.strict)?;
    // Nothing a file asks for runs before the runner's grants are checked.
    args.trust.check_exec(&target, args.metric)?;
    // Every LM resolved once, before the dataset is read: a wrong LM name
    // or setting fails first.
    let lm_set = args.lm.resolve(&target)?;
    let (program, target_path) = (&target.program, &target.path);
    // Relative paths in a metric spec (a command script, a database
    // directory) are relative to the program file that wrote them.
    let base_dir = super::common::program_dir(program, target_path);

    let (dataset_path, role) = match (args.dataset, &program.datasets.dev) {
        (Some(p), _) => (p.to_path_buf(), None),
        (None, Some(p)) => (p.clone(), Some("dev")),
        (None, None) => {
            return Err(input_err(format!(
                "no dataset: pass --dataset PATH, or add `datasets: {{dev: PATH}}` to {}",
                target_path.display()
            )))
        }
    };
    super::preflight::note_implicit(&dataset_path, role, "dataset");
    // A wrong path or a missing column fails here, before any LM call,
    // located at the program's `datasets:` entry when it came from there.
    if let Some(d) = super::preflight::missing_path(program, &dataset_path, role) {
        return Err(input_err(d.to_string()));
    }
    let mut all_columns = program.datasets.columns.clone();
    all_columns.extend(args.columns.clone());
    let split = match args.split {
        Some(s) => Some(data::parse_split(s).map_err(|e| input_err(format!("{e}")))?),
        None => None,
    };
    let load_opts = LoadOptions {
        columns: all_columns,
        skip_bad_rows: args.skip_bad_rows,
        limit: args.limit,
        sample: args.sample,
        seed: args.seed,
        split,
    };
    let dataset = data::load(&dataset_path, program, &load_opts).map_err(|e| match role {
        Some(_) => input_err(super::preflight::load_failed(program, &e, role).to_string()),
        None => input_err(format!("{e}")),
    })?;
    // Name the first few skipped rows; the count goes into every report.
    for bad in dataset.bad_rows.iter().take(10) {
        eprintln!(
            "warning: {}: row {}: skipped: {}",
            dataset_path.display(),
            bad.row,
            bad.message
        );
    }
    if dataset.bad_rows.len() > 10 {
        eprintln!(
            "warning: {}: {} more bad rows skipped",
            dataset_path.display(),
            dataset.bad_rows.len() - 10
        );
    }

    let (metric, _) = super::common::resolve_metric(args.metric, program, &base_dir)?;
    super::preflight::ensure_expected(program, &metric, &dataset, &load_opts.columns, role)?;
    if let Some(n) = metric.lm_name() {
        lm_set
            .check_name(n, "the metric `llm_judge`")
            .map_err(input_err)?;
    }
    Ok(Prepared {
        target,
        dataset,
        dataset_path,
        metric,
        lm_set,
    })
}
