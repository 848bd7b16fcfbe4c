//! Loading what a command operates on, with the notices a user needs to
//! trust it: which program (or artifact) was picked when the command line
//! named none, and whether a compiled artifact still matches the program
//! file it was compiled from.
//!
//! Discovery itself is `crate::settings::load_target`; this file owns what
//! is said about it on stderr, because a command that silently picks a
//! file (or silently runs a stale artifact) costs users time and trust.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::CliError;
use crate::settings::Target;

/// Load the target named by `file` (or discovered), say on stderr how it
/// was chosen when implicit, and check an artifact's staleness: a warning,
/// or an input error (exit 2) when `strict`.
pub fn load(file: Option<&Path>, strict: bool) -> anyhow::Result<Target> {
    let target = crate::settings::load_target(file).map_err(|e| CliError::Input(format!("{e}")))?;
    if let Some(by) = &target.chosen_by {
        note(&format!("using {} (from {by})", target.path.display()));
    }
    if let Some(msg) = stale_artifact(&target) {
        if strict {
            return Err(CliError::Input(format!(
                "{msg}\n  = help: re-run `lmc compile`, or drop --strict to run the artifact as compiled"
            ))
            .into());
        }
        eprintln!("warning: {msg}\n  = help: re-run `lmc compile` (or pass --strict to make this an error)");
    }
    Ok(target)
}

/// One implicit choice, said on stderr (stdout stays machine-readable).
pub fn note(msg: &str) {
    eprintln!("note: {msg}");
}

/// Why an artifact no longer matches its program file, if it does not: the
/// artifact runs the copy of the source it carries, so an edit to the file
/// at its recorded path changes nothing until the next compile. A recorded
/// file that is gone is not an error (artifacts travel without sources).
pub fn stale_artifact(target: &Target) -> Option<String> {
    let artifact = target.artifact.as_ref()?;
    let recorded = artifact.program.path.as_ref()?;
    let bytes = std::fs::read(recorded).ok()?;
    let now = hex::encode(Sha256::digest(&bytes));
    (now != artifact.program.content_hash).then(|| {
        format!(
            "{} was compiled from a different version of {} (the file changed since: sha256 {} then, {} now); the artifact runs the program as it was compiled",
            target.path.display(),
            recorded,
            short(&artifact.program.content_hash),
            short(&now)
        )
    })
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}
