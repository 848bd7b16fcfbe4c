//! `lmc check`: validate program files and compiled artifacts.
//!
//! One line per valid file (name, predictors, content hash) on stdout; the
//! located diagnostics of invalid files on stderr. Exit 0 when every file is
//! valid, 2 otherwise, so CI can run `lmc check programs/*.yaml`.

use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::artifact::{Artifact, ArtifactError};
use crate::diag::{Diagnostic, Diagnostics};
use crate::program::{self, Program};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program files or artifacts to validate (a directory means its
    /// `*.yaml` files).
    /// None: `LMC_PROGRAM`, else the `program:` of the nearest `lmc.yaml`.
    pub files: Vec<PathBuf>,
    /// Print results as JSON (an array, one object per file) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut all_ok = true;
    let mut reports = Vec::new();
    let files = if args.files.is_empty() {
        vec![default_program()?]
    } else {
        expand(&args.files)
    };
    for (i, file) in files.iter().enumerate() {
        match load(file) {
            Ok(p) => {
                if args.json {
                    reports.push(json!({
                        "file": file,
                        "ok": true,
                        "name": p.name,
                        "predictors": p.predictors().iter().map(|r| r.path.clone()).collect::<Vec<_>>(),
                        "content_hash": format!("sha256:{}", p.content_hash),
                    }));
                } else {
                    out(&ok_line(file, &p))?;
                }
            }
            Err(diags) => {
                all_ok = false;
                if args.json {
                    reports.push(json!({"file": file, "ok": false, "diagnostics": diags}));
                } else {
                    if i > 0 {
                        eprintln!();
                    }
                    anstream::eprintln!("{}", crate::diag::paint(&diags.to_string()));
                }
            }
        }
    }
    if args.json {
        out(&serde_json::to_string_pretty(&reports)?)?;
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// A program file, or an artifact (validated, then its embedded program).
fn load(file: &std::path::Path) -> Result<Program, Diagnostics> {
    if !crate::artifact::is_artifact(file) {
        return program::load(file);
    }
    let other =
        |e: ArtifactError| -> Diagnostics { Diagnostic::error(e.to_string()).file(file).into() };
    let artifact = Artifact::load(file).map_err(|e| match e {
        ArtifactError::Diagnostics(ds) => ds,
        e => other(e),
    })?;
    artifact.program().map_err(other)
}

/// The program a command given no file uses (as `lmc eval` finds it).
fn default_program() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("LMC_PROGRAM") {
        return Ok(PathBuf::from(p));
    }
    let cwd = std::env::current_dir()?;
    let project = crate::settings::discover_project(&cwd)
        .map_err(|e| crate::cli::CliError::Input(format!("error: {e}")))?;
    match project.and_then(|p| p.program) {
        // Show it relative to the current directory when it is below it.
        Some(p) => Ok(p.strip_prefix(&cwd).map(PathBuf::from).unwrap_or(p)),
        None => Err(crate::cli::CliError::Input(format!(
            "error: no program file given and no `{}` with `program:` in {} or its parents\n   = help: run `lmc check programs/my_program.yaml`",
            crate::settings::PROJECT_FILE,
            cwd.display()
        ))
        .into()),
    }
}

/// Directories stand for the YAML files directly inside them, sorted.
fn expand(args: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for a in args {
        let entries = if a.is_dir() {
            std::fs::read_dir(a).ok()
        } else {
            None
        };
        match entries {
            Some(rd) => {
                let mut files: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml")
                    })
                    .collect();
                files.sort();
                out.extend(files);
            }
            None => out.push(a.clone()),
        }
    }
    out
}

/// Print a line on stdout; a closed pipe (`lmc check ... | head`) is fine.
fn out(line: &str) -> anyhow::Result<()> {
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `ok  programs/sentiment.yaml  sentiment  1 predictor (classify)  sha256:0f3c9a1e…`
fn ok_line(file: &std::path::Path, p: &Program) -> String {
    let preds: Vec<String> = p.predictors().into_iter().map(|r| r.path).collect();
    let noun = if preds.len() == 1 {
        "predictor"
    } else {
        "predictors"
    };
    let list = if preds.is_empty() {
        String::new()
    } else {
        format!(" ({})", preds.join(", "))
    };
    let short: String = p.content_hash.chars().take(8).collect();
    format!(
        "ok  {}  {}  {} {noun}{list}  sha256:{short}…",
        file.display(),
        p.name,
        preds.len()
    )
}
