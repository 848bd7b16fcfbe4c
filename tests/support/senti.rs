//! The sentiment fixture many integration tests share: a one-predictor
//! program, rows `review number N` whose label follows N's parity, the
//! ChatAdapter reply a stub gives for a label, and a temp-dir project that
//! runs `lmc <sub>` against a stub LM. It lives here so that eval, reports,
//! harden, interrupt and compile tests build the same project the same way;
//! a test keeps its own helper only where its project really differs.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::lmc;
use super::stub::StubRequest;

/// Classifies `sentence` into `sentiment`; scored by exact match on the
/// `label` column of `dev.csv`.
pub const PROGRAM: &str = r#"name: senti
signatures:
  classify:
    instructions: Classify the sentiment of a movie review sentence.
    inputs:
      sentence: {type: str}
    outputs:
      sentiment: {type: "enum[positive, negative]"}
inputs:
  sentence: str
nodes:
  classify:
    kind: predict
    signature: classify
outputs:
  sentiment: classify.sentiment
metric: {type: exact_match, field: sentiment}
datasets:
  dev: dev.csv
  columns: {label: sentiment}
"#;

/// [`PROGRAM`] with a `train.csv` trainset too, for `lmc compile`.
pub fn program_with_train() -> String {
    PROGRAM.replace("  dev: dev.csv\n", "  train: train.csv\n  dev: dev.csv\n")
}

/// The label of row `i` (1-based): even rows positive, odd negative.
pub fn label(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "positive"
    } else {
        "negative"
    }
}

/// The other label: a wrong answer.
pub fn other(l: &str) -> &'static str {
    if l == "positive" {
        "negative"
    } else {
        "positive"
    }
}

/// The ChatAdapter reply answering `label`.
pub fn reply(label: &str) -> String {
    format!("[[ ## sentiment ## ]]\n{label}\n\n[[ ## completed ## ]]")
}

/// The row number in a request's rendered input `review number N` (0 when
/// there is none).
pub fn row_of(req: &StubRequest) -> usize {
    let text = req.input("sentence").unwrap_or_default();
    let digits: String = text
        .split("review number ")
        .nth(1)
        .unwrap_or("")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or(0)
}

/// A `sentence,label` CSV with one `review number N` row per N in `rows`.
pub fn csv(rows: impl IntoIterator<Item = usize>) -> String {
    let mut s = String::from("sentence,label\n");
    for i in rows {
        s.push_str(&format!("review number {i},{}\n", label(i)));
    }
    s
}

/// A temp directory holding `prog.yaml` and an `n`-row `dev.csv`.
pub struct SentiProject {
    pub dir: tempfile::TempDir,
}

impl SentiProject {
    /// [`PROGRAM`] with rows 1..=n.
    pub fn new(n: usize) -> SentiProject {
        Self::with_program(n, PROGRAM)
    }

    /// `program` with rows 1..=n in `dev.csv`.
    pub fn with_program(n: usize, program: &str) -> SentiProject {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prog.yaml"), program).expect("write program");
        std::fs::write(dir.path().join("dev.csv"), csv(1..=n)).expect("write dataset");
        SentiProject { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `lmc <sub> <dir>/prog.yaml` against the OpenAI-style stub at
    /// `base_url`, with the response cache in `cache` and no provider, base
    /// URL or key from the developer's environment. The caller adds the
    /// flags its test needs.
    pub fn command(&self, sub: &str, base_url: &str, cache: &Path) -> Command {
        let mut c = lmc();
        c.arg(sub).arg(self.path("prog.yaml"));
        stub_lm(&mut c, base_url);
        c.env("LMC_CACHE_DIR", cache);
        c
    }
}

/// Point `c` at the stub LM at `base_url` (`--provider openai --model stub
/// --base-url URL`) and drop the environment that could override it.
pub fn stub_lm<'c>(c: &'c mut Command, base_url: &str) -> &'c mut Command {
    c.args(["--provider", "openai", "--model", "stub", "--base-url"])
        .arg(base_url)
        .env_remove("OPENAI_API_KEY")
        .env_remove("LMC_BASE_URL")
        .env_remove("LMC_PROVIDER")
}
