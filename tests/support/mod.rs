//! Shared test support: running the real `lmc` binary, the local stub LM
//! server, and paths to the embedded model and shipped data.
#![allow(dead_code)]

pub mod browser;
pub mod known_optimum;
pub mod senti;
pub mod stub;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `Command` for the built `lmc` binary, with the response cache pointed
/// at a fresh directory unless the test sets `LMC_CACHE_DIR` (or passes
/// `--cache-dir`) itself: a test never reads or writes the developer's
/// cache, and never gets hits from an earlier test run.
pub fn lmc() -> Command {
    static N: AtomicUsize = AtomicUsize::new(0);
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "lmc-cache-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut c = Command::new(env!("CARGO_BIN_EXE_lmc"));
    c.current_dir(root());
    c.env_remove("LMC_PROGRAM");
    // The runner's grants (docs/security.md) come from the test, never from
    // the developer's environment or user config.
    for v in [
        "LMC_ALLOW_EXEC",
        "LMC_ALLOW_HOSTS",
        "LMC_ALLOW_KEY_ENVS",
        "LMC_API_KEY_ENV",
    ] {
        c.env_remove(v);
    }
    c.env("LMC_CONFIG", "");
    c.env("LMC_CACHE_DIR", cache);
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

/// Run with `input` on stdin; return (exit code, stdout, stderr).
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lmc");
    // Dropping the handle closes stdin, so lmc sees end of input.
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for lmc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The embedded model the tests load: `LMC_MODEL`, else the default one
/// (which the engine derives from the file `scripts/setup.sh` fetched the
/// first time it is loaded).
pub fn model_path() -> PathBuf {
    match std::env::var("LMC_MODEL") {
        Ok(p) => PathBuf::from(p),
        Err(_) => lmc::lm::resolve::default_model_path(),
    }
}
