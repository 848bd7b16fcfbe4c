//! Settings: which program runs, with which overlay, under which LM config.
//!
//! Resolved in one place from the command line, the project file and the
//! environment, so every command (`run`, `eval`, `compile`, `inspect`) finds
//! a program the same way: an explicit path (a program file or a compiled
//! artifact), else `LMC_PROGRAM`, else the `program:` of the nearest
//! `lmc.yaml` project file in the current directory or its ancestors, up to
//! the repository root (a directory holding `.git`): a project file above
//! the checkout belongs to someone else's project, and silently running its
//! program from an unrelated subfolder is the surprise this rule prevents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::artifact::Artifact;
use crate::lm::resolve::FileLms;
use crate::lm::SharedLm;
use crate::overlay::Overlay;
use crate::program::{LmConfig, Program};
use crate::run::RunContext;
use crate::tools::Toolbox;
use crate::trust::SourceMap;

/// The project file's name.
pub const PROJECT_FILE: &str = "lmc.yaml";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Program diagnostics, already rendered with file:line:col.
    #[error("{0}")]
    Program(String),
    #[error("{0}")]
    Artifact(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{path}: {message}")]
    Project { path: PathBuf, message: String },
    #[error("{0}")]
    Tools(String),
}

/// A discovered `lmc.yaml`.
#[derive(Debug, Clone, Default)]
pub struct Project {
    pub path: PathBuf,
    /// The default program, resolved against the project file's directory.
    pub program: Option<PathBuf>,
    /// LM settings that override the program's.
    pub lm: Option<LmConfig>,
    /// Named LMs that override (key by key) or add to the program's `lms:`.
    pub lms: std::collections::BTreeMap<String, LmConfig>,
    /// `lmc compile`'s optimizer and settings, over the program's `compile:`.
    pub compile: Option<crate::program::CompileConfig>,
}

/// What a command operates on.
#[derive(Debug, Clone)]
pub struct Target {
    /// The file given or discovered (program or artifact).
    pub path: PathBuf,
    pub program: Program,
    /// The compiled state (empty for a plain program).
    pub overlay: Overlay,
    pub artifact: Option<Artifact>,
    pub project: Option<Project>,
    /// How the file was chosen when the command line named none (`LMC_PROGRAM`
    /// or a project file), so the CLI can say so; `None` when it was given.
    pub chosen_by: Option<String>,
}

impl Target {
    /// The files' LM sections, lowest precedence first: the artifact's
    /// (when it recorded any) or else the program's, then the project's.
    /// `lm::resolve` layers the environment and the command line on top.
    pub fn lm_files(&self) -> Vec<FileLms<'_>> {
        let mut files = Vec::new();
        match self.artifact.as_ref().filter(|a| a.lm.is_some()) {
            Some(a) => files.push(FileLms {
                lm: a.lm.as_ref(),
                lms: &a.lms,
                map: SourceMap::read(&self.path),
            }),
            None => files.push(FileLms {
                lm: self.program.lm.as_ref(),
                lms: &self.program.lms,
                map: crate::trust::locate::program_source(self),
            }),
        }
        if let Some(p) = &self.project {
            // Shown relative to the working directory, as in `using …` notes.
            let cwd = std::env::current_dir().unwrap_or_default();
            let text = std::fs::read_to_string(&p.path).unwrap_or_default();
            files.push(FileLms {
                lm: p.lm.as_ref(),
                lms: &p.lms,
                map: SourceMap::new(shown(&p.path, &cwd), &text),
            });
        }
        files
    }
}

/// Find `lmc.yaml` in `start` or its ancestors, stopping at the repository
/// root: the first directory holding `.git` (a directory in a clone, a file
/// in a worktree) is the last one searched.
pub fn discover_project(start: &Path) -> Result<Option<Project>, SettingsError> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(PROJECT_FILE);
        if candidate.is_file() {
            return read_project(&candidate).map(Some);
        }
        if d.join(".git").exists() {
            break;
        }
        dir = d.parent();
    }
    Ok(None)
}

/// Read and validate a project file (`lmc check lmc.yaml` uses this too).
pub fn read_project(path: &Path) -> Result<Project, SettingsError> {
    let err = |message: String| SettingsError::Project {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let doc = crate::yaml::parse(&text).map_err(|mut d| {
        d.file = Some(path.to_path_buf());
        SettingsError::Project {
            path: path.to_path_buf(),
            message: crate::diag::Diagnostics(vec![d]).to_string(),
        }
    })?;
    let value = doc.root.to_json();
    let obj = value
        .as_object()
        .ok_or_else(|| err("expected a mapping with `program:` and optional `lm:`".into()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut project = Project {
        path: path.to_path_buf(),
        ..Default::default()
    };
    for (k, v) in obj {
        match k.as_str() {
            "program" => {
                let p = v
                    .as_str()
                    .ok_or_else(|| err("`program` must be a path string".into()))?;
                project.program = Some(base.join(p));
            }
            "lm" => {
                let lm: LmConfig =
                    serde_json::from_value(v.clone()).map_err(|e| err(format!("`lm`: {e}")))?;
                let problems = crate::program::lower::lm_limit_problems(&lm);
                if !problems.is_empty() {
                    // Same located diagnostics as a program's `lm:` section.
                    let idx = doc.root.index();
                    let diags = problems
                        .into_iter()
                        .map(|(p, message, hint)| {
                            crate::diag::Diagnostic::error(message)
                                .at(idx.locate(p))
                                .path(p)
                                .hint(hint)
                                .file(path)
                        })
                        .collect();
                    return Err(SettingsError::Project {
                        path: path.to_path_buf(),
                        message: crate::diag::Diagnostics(diags).to_string(),
                    });
                }
                project.lm = Some(lm);
            }
            "lms" => {
                let lms: std::collections::BTreeMap<String, LmConfig> =
                    serde_json::from_value(v.clone()).map_err(|e| err(format!("`lms`: {e}")))?;
                let idx = doc.root.index();
                let mut diags = Vec::new();
                for (name, lm) in &lms {
                    for (p, message, hint) in crate::program::lower::lm_limit_problems(lm) {
                        let p = format!("lms.{name}{}", p.trim_start_matches("lm"));
                        diags.push(
                            crate::diag::Diagnostic::error(message)
                                .at(idx.locate(&p))
                                .path(&p)
                                .hint(hint)
                                .file(path),
                        );
                    }
                }
                if !diags.is_empty() {
                    return Err(SettingsError::Project {
                        path: path.to_path_buf(),
                        message: crate::diag::Diagnostics(diags).to_string(),
                    });
                }
                project.lms = lms;
            }
            "compile" => {
                let idx = doc.root.index();
                let (c, diags) = crate::program::compile_section::check(v, &idx, "compile", path);
                if !diags.is_empty() {
                    return Err(SettingsError::Project {
                        path: path.to_path_buf(),
                        message: crate::diag::Diagnostics(
                            diags.into_iter().map(|d| d.file(path)).collect(),
                        )
                        .to_string(),
                    });
                }
                project.compile = c;
            }
            other => {
                return Err(err(format!(
                    "unknown key `{other}` (expected `program`, `lm`, `lms` or `compile`)"
                )));
            }
        }
    }
    Ok(project)
}

/// Which file a command operates on, found but not yet read.
#[derive(Debug, Clone)]
pub struct Located {
    pub path: PathBuf,
    pub project: Option<Project>,
    /// `LMC_PROGRAM` or the project file, when the command line named none.
    pub chosen_by: Option<String>,
}

/// Find the file a command operates on: `path` if given, else
/// `LMC_PROGRAM`, else the project's program. The one project lookup every
/// command shares (`lmc check` too, which reads the file its own way).
pub fn locate_program(path: Option<&Path>) -> Result<Located, SettingsError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let project = discover_project(&cwd)?;
    let mut chosen_by = None;
    let path: PathBuf = match path {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("LMC_PROGRAM") {
            Some(p) => {
                chosen_by = Some("LMC_PROGRAM".to_string());
                PathBuf::from(p)
            }
            None => {
                let found = project
                    .as_ref()
                    .and_then(|p| Some((p.program.clone()?, &p.path)));
                let (program, from) = found.ok_or_else(|| {
                    SettingsError::NotFound(format!(
                        "no program given and no `{PROJECT_FILE}` with a `program:` key in {} or its parents (up to the repository root)\n  = help: pass a program file (e.g. `programs/sentiment.yaml`) or create {PROJECT_FILE} with `program: <path>`",
                        cwd.display()
                    ))
                })?;
                chosen_by = Some(shown(from, &cwd));
                program
            }
        },
    };
    // Paths discovered from a project file are shown relative to the
    // working directory when they are below it.
    let path = if chosen_by.is_some() {
        PathBuf::from(shown(&path, &cwd))
    } else {
        path
    };
    Ok(Located {
        path,
        project,
        chosen_by,
    })
}

/// Load what a command should operate on: `path` if given, else
/// `LMC_PROGRAM`, else the project's program.
pub fn load_target(path: Option<&Path>) -> Result<Target, SettingsError> {
    let Located {
        path,
        project,
        chosen_by,
    } = locate_program(path)?;
    if !path.exists() {
        return Err(SettingsError::NotFound(format!(
            "{}: no such file",
            path.display()
        )));
    }
    if crate::artifact::is_artifact(&path) {
        let artifact = Artifact::load(&path).map_err(|e| SettingsError::Artifact(e.to_string()))?;
        let program = artifact
            .program()
            .map_err(|e| SettingsError::Artifact(e.to_string()))?;
        let overlay = artifact.overlay();
        return Ok(Target {
            path,
            program,
            overlay,
            artifact: Some(artifact),
            project,
            chosen_by,
        });
    }
    let program = crate::program::load(&path).map_err(|d| SettingsError::Program(d.to_string()))?;
    Ok(Target {
        path,
        program,
        overlay: Overlay::default(),
        artifact: None,
        project,
        chosen_by,
    })
}

/// `path` relative to `cwd` when it lies below it, else as it is.
fn shown(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd).unwrap_or(path).display().to_string()
}

/// The run context for `program` with `lm` and the program's tools opened
/// (the LM set and its sampling settings are added by
/// `cli::lm_args::BuiltLms::context`).
pub fn run_context(program: &Program, lm: SharedLm) -> Result<RunContext, SettingsError> {
    let tools = Toolbox::open(program).map_err(|e| SettingsError::Tools(e.to_string()))?;
    Ok(RunContext {
        tools: Arc::new(tools),
        ..RunContext::new(lm)
    })
}
