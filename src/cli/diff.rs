//! `lmc diff A.json B.json`: what changed between two evaluations of one
//! dataset. Reads two `lmc eval --json` reports, pairs their examples by
//! dataset row, and lists the examples that regressed and improved with
//! the paired test the `--baseline` gate uses (`crate::eval::diff`). The
//! terminal gets a summary and one line per changed example; `--markdown`
//! and `--html` write the same as files, `--json` prints the whole diff.
//! Exit 0 whatever changed (it is a report, not a gate: use
//! `lmc eval --baseline` to fail a build), 2 when the reports cannot be
//! read or compared.

use anyhow::Context as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::CliError;
use crate::eval::diff::{self, describe_change, describe_test, Change, ReportSide};
use crate::eval::markdown::{cell, unpaired_note};

/// Compare two `lmc eval --json` reports on the same dataset.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  lmc eval --json > before.json          # on main
  lmc eval --json > after.json           # on your branch
  lmc diff before.json after.json
  lmc diff before.json after.json --markdown diff.md --html diff.html")]
pub struct Args {
    /// The earlier report (the baseline).
    pub before: PathBuf,
    /// The later report.
    pub after: PathBuf,
    /// Print the whole comparison as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the comparison as Markdown (e.g. a pull-request comment).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write the comparison as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

fn read(path: &Path) -> anyhow::Result<ReportSide> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("cannot read report {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::Input(format!(
            "{}:{}:{}: not an `lmc eval --json` report: {e}\n   = help: make one with `lmc eval --json > {}`",
            path.display(),
            e.line(),
            e.column(),
            path.display()
        ))
        .into()
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let before = read(&args.before)?;
    let after = read(&args.after)?;
    let d = diff::diff(
        &before.dataset.hash,
        &before.results,
        &after.dataset.hash,
        &after.results,
    )
    .map_err(|e| CliError::Input(format!("{e}")))?;
    let (bn, an) = (
        crate::eval::report_path(&args.before).display().to_string(),
        crate::eval::report_path(&args.after).display().to_string(),
    );
    if let Some(p) = &args.markdown {
        write_file(p, &crate::eval::markdown::render_diff(&d, &bn, &an))?;
    }
    if let Some(p) = &args.html {
        write_file(p, &crate::eval::html::render_diff(&d, &bn, &an))?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let printed = if args.json {
        serde_json::to_writer_pretty(&mut out, &d)
            .map_err(std::io::Error::from)
            .and_then(|_| writeln!(out))
    } else {
        print_terminal(&mut out, &d, &bn, &an, &before, &after)
    };
    // `lmc diff | head` closes the pipe early: that is not an error.
    match printed {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn print_terminal(
    out: &mut impl Write,
    d: &diff::Diff,
    bn: &str,
    an: &str,
    before: &ReportSide,
    after: &ReportSide,
) -> std::io::Result<()> {
    let c = &d.comparison;
    writeln!(out, "before  {bn}{}", who(before))?;
    writeln!(out, " after  {an}{}", who(after))?;
    writeln!(
        out,
        "change  {} on {} paired examples{}",
        describe_change(c.baseline_mean, c.current_mean),
        d.paired,
        unpaired_note(d)
    )?;
    writeln!(out, "  test  {}", describe_test(c))?;
    for (title, list) in [("regressed", &d.regressed), ("improved", &d.improved)] {
        writeln!(out, "\n{title} ({}):", list.len())?;
        for ch in list.iter() {
            line(out, ch)?;
        }
    }
    Ok(())
}

/// ` (program, model)` when the report names them.
fn who(side: &ReportSide) -> String {
    let parts: Vec<&str> = [side.program.as_deref(), side.model.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("  ({})", parts.join(", "))
    }
}

/// One changed example on one line: row, scores, expected, before/after.
fn line(out: &mut impl Write, c: &Change) -> std::io::Result<()> {
    // `cell` keeps the line single and short; its Markdown escapes are
    // undone because a terminal shows text as is.
    let short = |s: &str, n: usize| {
        cell(s, n)
            .replace("\\|", "|")
            .replace("\\`", "`")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    writeln!(
        out,
        "  row {:>5}  {:.2} → {:.2}  expected {}  was {}  now {}   | {}",
        c.row,
        c.before,
        c.after,
        short(&diff::compact(&c.expected), 40),
        short(&c.before_got, 40),
        short(&c.after_got, 40),
        short(&diff::compact(&c.inputs), 60)
    )
}
