//! Shared test support: running the real `lmc` binary, the local stub LM
//! server, and paths to the embedded model and shipped data.
#![allow(dead_code)]

pub mod stub;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `Command` for the built `lmc` binary, with the response cache pointed
/// at a fresh directory unless the test sets `LMC_CACHE_DIR` itself.
pub fn lmc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lmc"));
    c.current_dir(root());
    c.env_remove("LMC_PROGRAM");
    c
}

/// Run and return (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("spawn lmc");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The default embedded model fetched by `scripts/setup.sh`.
pub fn model_path() -> PathBuf {
    if let Ok(p) = std::env::var("LMC_MODEL") {
        return PathBuf::from(p);
    }
    let home = std::env::var("LMC_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/lmc")
        });
    home.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}
