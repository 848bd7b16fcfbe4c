//! Checking an HTML report in headless Chromium through
//! `scripts/check-html.mjs` (node drives the browser): one place for "is a
//! browser here" and for invoking the checker, shared by the eval and
//! compare report tests.

use std::path::Path;
use std::process::Command;

use super::{root, run};

/// Whether node and chromium (or `$CHROMIUM`) are installed; a test that
/// needs them skips with a note when they are not.
pub fn available() -> bool {
    let have = |cmd: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let ok = have("node") && have(&chromium);
    if !ok {
        eprintln!("skipped: node and chromium are needed (apt-get install chromium)");
    }
    ok
}

/// Run the checker on `page` (`--compare` mode when `compare`), typing
/// `query` into the filter, keeping a screenshot at `screenshot` if given.
/// Returns (exit code, stdout, stderr).
pub fn check(
    page: &Path,
    compare: bool,
    query: &str,
    screenshot: Option<&str>,
) -> (i32, String, String) {
    let mut node = Command::new("node");
    node.arg("--experimental-websocket")
        .arg(root().join("scripts/check-html.mjs"));
    if compare {
        node.arg("--compare");
    }
    node.arg(page).arg(query);
    if let Some(p) = screenshot {
        node.arg(p);
    }
    run(&mut node)
}
