//! `lmc check`: validate program files, compiled artifacts, the datasets
//! they name, and `lmc.yaml` project files.
//!
//! A program passes when it lowers and every dataset it names exists, loads
//! and feeds its metric (`super::preflight`): a program that cannot run is
//! not "ok". One line per valid file (name, predictors, content hash) on
//! stdout; the located diagnostics of invalid files on stderr. Exit 0 when every file is
//! valid, 2 otherwise, so CI can run `lmc check programs/*.yaml`.

use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
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
        vec![super::common::default_program()?]
    } else {
        expand(&args.files)
    };
    for (i, file) in files.iter().enumerate() {
        if is_project_file(file) {
            let ok = check_project(file, args.json, &mut reports, i)?;
            all_ok &= ok;
            continue;
        }
        // A program that loads but names datasets it cannot run on fails too.
        let loaded = load(file).and_then(|p| {
            let problems = super::preflight::check_program(&p);
            if problems.is_empty() {
                Ok(p)
            } else {
                Err(crate::diag::Diagnostics(problems))
            }
        });
        match loaded {
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

/// `lmc.yaml` (or `lmc.yml`) is a project file, not a program.
fn is_project_file(file: &Path) -> bool {
    file.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == crate::settings::PROJECT_FILE || n == "lmc.yml")
}

/// Validate a project file: its keys, and that its `program:` exists and
/// is a valid program. Returns whether it passed.
fn check_project(
    file: &Path,
    json: bool,
    reports: &mut Vec<serde_json::Value>,
    i: usize,
) -> anyhow::Result<bool> {
    let problem = match crate::settings::read_project(file) {
        Err(e) => Some(e.to_string()),
        Ok(project) => match &project.program {
            None => None,
            Some(p) if !p.is_file() => Some(format!(
                "error: `program: {}` does not exist\n  --> {}\n   | program\n   = help: the path is relative to the directory of {}",
                p.display(),
                file.display(),
                file.display()
            )),
            Some(p) => program::load(p).err().map(|d| d.to_string()),
        },
    };
    if json {
        reports.push(match &problem {
            None => json!({"file": file, "ok": true, "kind": "project"}),
            Some(m) => json!({"file": file, "ok": false, "kind": "project", "message": m}),
        });
    } else {
        match &problem {
            None => {
                let program = crate::settings::read_project(file)
                    .ok()
                    .and_then(|p| p.program)
                    .map(|p| format!("  program {}", p.display()))
                    .unwrap_or_default();
                out(&format!("ok  {}  project file{program}", file.display()))?;
            }
            Some(m) => {
                if i > 0 {
                    eprintln!();
                }
                eprintln!("{}", super::with_severity(m));
            }
        }
    }
    Ok(problem.is_none())
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
