//! `lmc compare`: evaluate several targets (programs and artifacts) under
//! several LM variants on one dataset in one run, and say which cells are
//! significantly worse than a reference.
//!
//! This file owns the command's flags, the run of every cell and the
//! terminal output; the `--lm-variant` syntax is `lm_variant`.
//! Each target is resolved by `lmc eval`'s own code (`eval::prepare`), so
//! dataset, metric, column mapping and trust checks are the same; each cell
//! is an ordinary evaluation (`crate::eval::evaluate_until`). The cells run
//! at once, sharing the response cache (one directory) and one concurrency
//! budget: a semaphore over every LM call of every cell, so comparing four
//! cells does not send four times the load the runner allowed. The report
//! is `crate::eval::compare`. Exit codes: 0 ok, 1 `--fail-if-worse` found
//! a candidate significantly worse, 2 bad input, 3 a cell stopped or
//! failed every example, 130 interrupted.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::common::{column_map, input_err};
use super::eval::{prepare, Prepared, Selection};
use super::lm_args::LmArgs;
use super::lm_variant::{apply_variant, parse_variant, use_named, LmVariant};
use super::progress::{human_count, EvalProgress};
use super::CliError;
use crate::eval::compare::{self, fmt_p, CellInput, CompareReport, Prices};
use crate::eval::{DatasetInfo, EvalError, EvalOptions, EvalReport};
use crate::lm::{Lm, LmError, LmRequest, LmResponse, SharedLm};

/// Compare programs, artifacts and LMs on one dataset, with paired tests.
///
/// Every TARGET is evaluated under every `--lm-variant` (or under its own
/// LM when none is given); each (target, LM) pair is a cell. The table
/// shows each cell's score with its 95% interval, parse failures, tokens,
/// latency and cost, and each cell's paired difference from the reference
/// cell (the first, or `--reference N`) with its p-value and the examples
/// that flipped.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program files and/or compiled artifacts.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<PathBuf>,

    /// An LM to evaluate every target with: `NAME=KEY=VALUE[,KEY=VALUE...]`
    /// over the LM settings of the target and the LM flags (repeatable).
    /// Keys: lm (a named LM of the files' `lms:`, run as the default),
    /// provider, model, base_url (repeat to load-balance), api_key_env,
    /// temperature, max_tokens, adapter, timeout, max_retries,
    /// price_prompt_per_mtok, price_completion_per_mtok. Examples:
    /// `--lm-variant small=model=qwen2.5-7b,price_prompt_per_mtok=0.1`,
    /// `--lm-variant cheap=lm=small`.
    #[arg(long = "lm-variant", value_name = "NAME=KEY=VALUE,...")]
    pub variants: Vec<String>,

    #[command(flatten)]
    pub data: super::common::DataArgs,

    /// Stop a cell (exit 3 at the end) once more than N of its examples failed.
    #[arg(long, value_name = "N")]
    pub max_errors: Option<usize>,

    /// The reference cell, by its number in the table (1-based; default 1:
    /// the first target under the first variant).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub reference: usize,

    /// Significance level of the paired tests.
    #[arg(long, value_name = "A", default_value_t = 0.05)]
    pub alpha: f64,

    /// Gate: exit 1 when any cell is significantly worse than the reference
    /// (one-sided paired test at --alpha).
    #[arg(long)]
    pub fail_if_worse: bool,

    /// Print the full comparison (cells, tests, flips, per-example
    /// outcomes) as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Write a Markdown summary (e.g. for $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Write a self-contained HTML report with plots.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,

    /// Fail (exit 2) when a compiled artifact's program file changed since
    /// it was compiled.
    #[arg(long)]
    pub strict: bool,

    /// LM flags, applied to every cell under the variants' settings;
    /// `--concurrency` is the budget shared by all cells.
    #[command(flatten)]
    pub lm: LmArgs,
}

/// Holds one permit of the run's shared budget for the duration of each LM
/// call, so all cells together never have more calls in flight than it.
struct SharedBudget {
    inner: SharedLm,
    permits: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl Lm for SharedBudget {
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| LmError::Fatal("the run is shutting down".into()))?;
        self.inner.complete(req).await
    }
    fn model(&self) -> String {
        self.inner.model()
    }
    fn supports_grammar(&self) -> bool {
        self.inner.supports_grammar()
    }
    fn mark_unusable(&self, req: &LmRequest) {
        self.inner.mark_unusable(req)
    }
}

/// A cell's progress bar, minus the interrupt notice (said once per run).
struct CellProgress(EvalProgress);

impl crate::eval::EvalReporter for CellProgress {
    fn start(&self, total: usize) {
        self.0.start(total)
    }
    fn example_done(&self, r: &crate::eval::ExampleResult, running: &crate::eval::RunningStats) {
        self.0.example_done(r, running)
    }
    fn finish(&self) {
        self.0.finish()
    }
}

/// A cell ready to run.
struct Cell {
    name: String,
    target: usize,
    variant: Option<String>,
    prices: Option<Prices>,
    ctx: crate::run::RunContext,
    /// What the cache key sees of the LM, and the URLs it does not see.
    cache_identity: String,
    base_urls: Vec<String>,
}

/// Two cells of one target whose LMs differ only in their URL would read
/// each other's replies from the cache (the key leaves the URL out, so a
/// replica hits): the comparison would be silently void. Refuse it.
fn check_cache_collisions(cells: &[Cell], no_cache: bool) -> anyhow::Result<()> {
    if no_cache {
        return Ok(());
    }
    for (i, a) in cells.iter().enumerate() {
        for b in &cells[i + 1..] {
            if a.target == b.target
                && a.cache_identity == b.cache_identity
                && a.base_urls != b.base_urls
            {
                return Err(input_err(format!(
                    "cells `{}` and `{}` differ only in their base URL, and the response cache ignores the URL: they would share replies\n  = help: give each variant its own model name (model=...), or pass --no-cache",
                    a.name, b.name
                )));
            }
        }
    }
    Ok(())
}

fn check_args(args: &Args, cells: usize) -> anyhow::Result<()> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(input_err(format!(
            "--alpha must be between 0 and 1, got {}",
            args.alpha
        )));
    }
    if args.reference == 0 || args.reference > cells {
        return Err(input_err(format!(
            "--reference {} is not a cell: there are {cells} (numbered from 1, targets × variants in order)",
            args.reference
        )));
    }
    if args.lm.concurrency == Some(0) {
        return Err(input_err("--concurrency must be at least 1"));
    }
    Ok(())
}

/// Short unique labels for the targets: the file name, or the path as
/// given when two file names collide.
fn target_labels(targets: &[PathBuf]) -> Vec<String> {
    let names: Vec<String> = targets
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string())
        })
        .collect();
    names
        .iter()
        .zip(targets)
        .map(|(n, p)| {
            if names.iter().filter(|m| *m == n).count() > 1 {
                p.display().to_string()
            } else {
                n.clone()
            }
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let variants: Vec<LmVariant> = args
        .variants
        .iter()
        .map(|s| parse_variant(s).map_err(input_err))
        .collect::<anyhow::Result<_>>()?;
    let mut seen = std::collections::HashSet::new();
    for v in &variants {
        if !seen.insert(&v.name) {
            return Err(input_err(format!(
                "--lm-variant {} is given twice\n  = help: give each variant its own name",
                v.name
            )));
        }
    }
    let n_cells = args.targets.len() * variants.len().max(1);
    check_args(&args, n_cells)?;
    let columns = column_map(&args.data.map);

    // Resolve every target the way `lmc eval` does, before any LM call.
    let mut prepared: Vec<Prepared> = Vec::new();
    for t in &args.targets {
        prepared.push(prepare(&Selection::of(
            Some(t),
            &args.data,
            columns.clone(),
            args.strict,
            &args.lm,
        ))?);
    }
    let first = &prepared[0];
    for (p, t) in prepared.iter().zip(&args.targets).skip(1) {
        // Scores under different metrics cannot be paired.
        if p.metric.name() != first.metric.name() {
            return Err(input_err(format!(
                "{} is scored by {} but {} by {}: a comparison needs one metric\n  = help: pass --metric SPEC",
                t.display(),
                p.metric.name(),
                args.targets[0].display(),
                first.metric.name()
            )));
        }
        let same_rows = p.dataset.examples.len() == first.dataset.examples.len();
        if p.dataset.hash != first.dataset.hash || !same_rows {
            return Err(input_err(format!(
                "{} is evaluated on {} ({} examples) but {} on {} ({} examples): a comparison needs one dataset\n  = help: pass --dataset PATH",
                t.display(),
                p.dataset_path.display(),
                p.dataset.examples.len(),
                args.targets[0].display(),
                first.dataset_path.display(),
                first.dataset.examples.len()
            )));
        }
    }

    // Build every cell's LM stack; the budget is shared, the cache is one
    // directory (several stores on one SQLite file in WAL mode are safe).
    let budget = first.lm_set.default.concurrency();
    let permits = Arc::new(tokio::sync::Semaphore::new(budget));
    let labels = target_labels(&args.targets);
    let mut cells: Vec<Cell> = Vec::new();
    for (ti, p) in prepared.iter().enumerate() {
        let variant_list: Vec<Option<&LmVariant>> = if variants.is_empty() {
            vec![None]
        } else {
            variants.iter().map(Some).collect()
        };
        for v in variant_list {
            // Each cell's LMs go through the one resolution path, with the
            // variant's settings as flags; the shared budget wraps them all.
            let lms = match v {
                Some(v) => {
                    let flags = apply_variant(v, &args.lm).map_err(input_err)?;
                    let mut set = flags.resolve(&p.target)?;
                    use_named(v, &mut set).map_err(input_err)?;
                    flags.build_set(set)?
                }
                None => args.lm.build_set(p.lm_set.clone())?,
            };
            let cfg = lms.set.default.config.clone();
            let ctx = lms.context(&p.target.program)?.map_lms(|lm| -> SharedLm {
                Arc::new(SharedBudget {
                    inner: lm,
                    permits: permits.clone(),
                })
            });
            let prices = match (cfg.price_prompt_per_mtok, cfg.price_completion_per_mtok) {
                (None, None) => None,
                (pp, pc) => Some(Prices {
                    prompt_per_mtok: pp.unwrap_or(0.0),
                    completion_per_mtok: pc.unwrap_or(0.0),
                }),
            };
            let name = match v {
                Some(v) => format!("{} @ {}", labels[ti], v.name),
                None => labels[ti].clone(),
            };
            let cache_identity = format!(
                "{:?}/{:?}/{:?}/{:?}/{:?}",
                cfg.provider, cfg.model, cfg.temperature, cfg.max_tokens, cfg.adapter
            );
            cells.push(Cell {
                name,
                target: ti,
                variant: v.map(|v| v.name.clone()),
                prices,
                ctx,
                cache_identity,
                base_urls: cfg.base_urls.clone(),
            });
        }
    }
    check_cache_collisions(&cells, args.lm.no_cache)?;

    let rt = super::runtime()?;
    // Said once for the run here, not once per cell by each bar (printed
    // even with --quiet: the user must see lmc is winding down).
    let interrupt = super::signals::install(&rt, |name| {
        eprintln!(
            "{name}: stopping; no new examples in any cell, waiting for those in flight \
             (press Ctrl-C again to abort at once)"
        )
    });
    let multi = super::progress::multi(args.quiet);
    let bars: Vec<CellProgress> = (0..cells.len())
        .map(|i| CellProgress(EvalProgress::in_multi(&multi, &format!("#{}", i + 1))))
        .collect();
    let opts = EvalOptions {
        // Each cell may fill the whole budget; the semaphore shares it.
        concurrency: budget,
        max_errors: args.max_errors,
        keep_traces: false,
    };
    let outcomes = rt.block_on(futures::future::join_all(cells.iter().zip(&bars).map(
        |(c, bar)| {
            let p = &prepared[c.target];
            crate::eval::evaluate_until(
                &c.ctx,
                &p.target.program,
                &p.target.overlay,
                &p.dataset.examples,
                &p.metric,
                &opts,
                bar,
                &interrupt,
            )
        },
    )));
    drop(bars);
    let _ = multi.clear();

    let mut stopped: Vec<String> = Vec::new();
    let mut inputs: Vec<CellInput> = Vec::new();
    for (c, o) in cells.iter().zip(outcomes) {
        let report: EvalReport = match o {
            Ok(r) => r,
            Err(EvalError::Empty) => {
                return Err(input_err(format!(
                    "no examples to compare in {} (check --limit/--sample/--split)",
                    first.dataset_path.display()
                )))
            }
            Err(e) => {
                stopped.push(format!("{}: {e}", c.name));
                match e {
                    EvalError::TooManyErrors { partial, .. }
                    | EvalError::Budget { partial, .. } => *partial,
                    EvalError::Empty => unreachable!("handled above"),
                }
            }
        };
        inputs.push(CellInput {
            name: c.name.clone(),
            target: args.targets[c.target].display().to_string(),
            variant: c.variant.clone(),
            prices: c.prices,
            report,
        });
    }
    let dataset = DatasetInfo {
        path: Some(crate::eval::report_path(&first.dataset_path)),
        hash: first.dataset.hash.clone(),
        n: first.dataset.examples.len(),
        bad_rows: first.dataset.bad_rows.len(),
    };
    let all_failed: Vec<String> = inputs
        .iter()
        .filter(|i| super::failures::all_failed(&i.report))
        .map(|i| i.name.clone())
        .collect();
    for i in &inputs {
        if i.report.summary.errors > 0 && !args.quiet {
            eprintln!("{}:", i.name);
            super::failures::print_summary(&i.report);
        }
    }
    let report = compare::build(inputs, args.reference - 1, args.alpha, dataset);
    write_outputs(&args, &report)?;
    if args.json {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_table(&report, args.fail_if_worse);
    }
    if interrupt.is_requested() {
        eprintln!(
            "interrupted ({}): the comparison covers the examples each cell finished; every LM reply received is cached, so re-running the same command resumes without paying for them again",
            interrupt.reason().unwrap_or("stop requested")
        );
        return Ok(ExitCode::from(super::signals::EXIT_INTERRUPTED));
    }
    if !stopped.is_empty() {
        anyhow::bail!("{}", stopped.join("\n"));
    }
    if !all_failed.is_empty() {
        anyhow::bail!(
            "every example failed in {}, so there is nothing to compare (causes above)",
            all_failed.join(", ")
        );
    }
    if args.fail_if_worse {
        let worse = report.worse();
        if !worse.is_empty() {
            return Err(CliError::Gate(format!(
                "gate fail-if-worse failed:\n  {}",
                worse.join("\n  ")
            ))
            .into());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_outputs(args: &Args, report: &CompareReport) -> anyhow::Result<()> {
    let write = |path: &PathBuf, text: String| -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create directory {}: {e}", dir.display()))?;
        }
        std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    };
    if let Some(p) = &args.markdown {
        write(p, compare::markdown(report, args.fail_if_worse))?;
    }
    if let Some(p) = &args.html {
        write(
            p,
            crate::eval::compare_html::render(report, args.fail_if_worse),
        )?;
    }
    Ok(())
}

/// Rows listed per flip direction in the terminal (the reports list all).
const FLIPS_SHOWN: usize = 12;

fn rows_list(rows: &[usize]) -> String {
    let mut s: Vec<String> = rows
        .iter()
        .take(FLIPS_SHOWN)
        .map(|r| r.to_string())
        .collect();
    if rows.len() > FLIPS_SHOWN {
        s.push(format!("… {} more", rows.len() - FLIPS_SHOWN));
    }
    s.join(", ")
}

/// The terminal table: one line per cell, aligned, then the flips and the
/// gate verdict.
fn print_table(r: &CompareReport, gate: bool) {
    let head = [
        "#",
        "cell",
        "model",
        "score",
        "95% CI",
        "Δ vs ref",
        "p(worse)",
        "worse/better",
        "n",
        "parse fail",
        "tokens",
        "p50 s",
        "p95 s",
        "$/1k",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for (i, c) in r.cells.iter().enumerate() {
        let s = &c.summary;
        let (delta, p, flips) = match r.comparison(i) {
            None => ("reference".into(), String::new(), String::new()),
            Some(k) => (
                format!(
                    "{:+.4}{}",
                    k.test.mean_diff,
                    if k.significantly_worse { " WORSE" } else { "" }
                ),
                fmt_p(k.test.p_worse),
                format!("{}/{}", k.worse_rows.len(), k.better_rows.len()),
            ),
        };
        rows.push(vec![
            (i + 1).to_string(),
            c.name.clone(),
            c.model.clone(),
            format!("{:.4}", s.mean),
            format!("{:.4}–{:.4}", s.ci95_low, s.ci95_high),
            delta,
            p,
            flips,
            format!("{}{}", s.n, if c.complete { "" } else { "*" }),
            s.parse_failures.to_string(),
            human_count(s.prompt_tokens + s.completion_tokens),
            format!("{:.3}", c.latency_p50_s),
            format!("{:.3}", c.latency_p95_s),
            c.cost_per_1k
                .map(|x| format!("{x:.4}"))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|j| rows.iter().map(|r| r[j].chars().count()).max().unwrap_or(0))
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let dataset = r.dataset.label();
    let _ = writeln!(
        out,
        "{} examples of {dataset}, metric {}, reference #{} ({}), alpha {}",
        r.dataset.n,
        r.metric,
        r.reference + 1,
        r.cells[r.reference].name,
        r.alpha
    );
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(j, (v, w))| {
                let pad = w - v.chars().count();
                // Names left-aligned, numbers right-aligned.
                if (1..=2).contains(&j) {
                    format!("{v}{}", " ".repeat(pad))
                } else {
                    format!("{}{v}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    if !r.complete {
        let _ = writeln!(
            out,
            "* incomplete: compared on the examples the cell reached"
        );
    }
    for k in &r.comparisons {
        let name = &r.cells[k.cell].name;
        let _ = writeln!(
            out,
            "#{} vs #{}: {:+.4}, {} p(worse) = {}, p(differs) = {}",
            k.cell + 1,
            r.reference + 1,
            k.test.mean_diff,
            k.test.test.name(),
            fmt_p(k.test.p_worse),
            fmt_p(k.test.p_two_sided)
        );
        if !k.worse_rows.is_empty() {
            let _ = writeln!(out, "  {name} worse on rows {}", rows_list(&k.worse_rows));
        }
        if !k.better_rows.is_empty() {
            let _ = writeln!(out, "  {name} better on rows {}", rows_list(&k.better_rows));
        }
    }
    if gate && r.complete {
        let worse = r.worse();
        if worse.is_empty() {
            let _ = writeln!(
                out,
                "gate fail-if-worse passed: no cell is significantly worse than the reference"
            );
        } else {
            let _ = writeln!(out, "gate fail-if-worse FAILED");
        }
    }
}
