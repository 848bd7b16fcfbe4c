//! Limits on what lmc reads, and located diagnostics for JSON inputs.
//!
//! Programs, artifacts and DSPy imports arrive in pull requests like programs do, so
//! they are validated as strictly: a number that sizes an allocation (a kNN
//! `k`, a demo count) is checked against a bound before anything uses it,
//! and every problem is reported at once with file:line:col, the JSON path
//! and a hint, in the same rendering as program diagnostics. serde_json
//! gives a position only for syntax errors; for a problem found after
//! parsing, the position comes from reading the JSON again with the YAML
//! reader (JSON is YAML 1.2 flow syntax), which happens only on the error
//! path.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Diagnostics};
use crate::overlay::PredictorState;
use crate::yaml::{self, PosIndex};

/// Demos one predictor may carry (fixed demos, or a kNN pool). DSPy's
/// optimizers use a handful; every demo is rendered into every prompt.
pub const MAX_DEMOS: usize = 10_000;
/// Largest kNN `k`: demos chosen per call, each rendered into the prompt.
pub const MAX_KNN_K: usize = 1_000;

/// Largest checkpoint file `lmc compile --resume` reads. A checkpoint
/// holds the search's candidates and history; a long search's is a few
/// megabytes.
pub const MAX_CHECKPOINT_BYTES: u64 = 256 * 1024 * 1024;

/// Largest `n` (refine, best_of_n, multi_chain_comparison) or `max_iters`
/// (react) a program may set: each is a number of LM calls per example,
/// and multi_chain_comparison adds one input field per attempt.
pub const MAX_REPEAT: usize = 1_000;

/// A problem found in a JSON document, before it is located.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// JSON path in the YAML-path spelling (`predictors.a.demos[0]`).
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Append a path below `base` (serde_path_to_error's `.` is the root).
pub fn sub_path(base: &str, inner: &str) -> String {
    match inner {
        "" | "." => base.to_string(),
        _ if inner.starts_with('[') => format!("{base}{inner}"),
        _ => yaml::join(base, inner),
    }
}

/// Problems in one predictor's state at `path` (bounds on what drives
/// allocation and prompt size). `knn_key` is where the file keeps the kNN
/// state (`knn` in artifacts, `lmc_knn` in DSPy exports).
pub fn check_state(path: &str, st: &PredictorState, knn_key: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    if st.demos.len() > MAX_DEMOS {
        out.push(
            Problem::new(
                sub_path(path, "demos"),
                format!("{} demos; at most {MAX_DEMOS} are allowed", st.demos.len()),
            )
            .hint("every demo is rendered into every prompt; keep the best few"),
        );
    }
    if let Some(knn) = &st.knn {
        let at = sub_path(path, knn_key);
        if knn.k > MAX_KNN_K {
            out.push(
                Problem::new(
                    sub_path(&at, "k"),
                    format!("kNN `k` is {}; at most {MAX_KNN_K} is allowed", knn.k),
                )
                .hint(
                    "`k` is how many demos each call gets; compile writes a small number such as 3",
                ),
            );
        }
        if knn.pool.len() > MAX_DEMOS {
            out.push(
                Problem::new(
                    sub_path(&at, "pool"),
                    format!(
                        "kNN pool of {} demos; at most {MAX_DEMOS} are allowed",
                        knn.pool.len()
                    ),
                )
                .hint("use a smaller training set for the kNN pool"),
            );
        }
    }
    out
}

/// A JSON file being read: locates problems in it on demand.
pub struct JsonDoc<'a> {
    text: &'a str,
    file: PathBuf,
    index: OnceCell<Option<PosIndex>>,
}

impl<'a> JsonDoc<'a> {
    pub fn new(text: &'a str, file: &Path) -> Self {
        JsonDoc {
            text,
            file: file.to_path_buf(),
            index: OnceCell::new(),
        }
    }

    /// A located diagnostic for a syntax error (serde_json knows where).
    pub fn syntax(&self, e: &serde_json::Error) -> Diagnostic {
        let pos = (e.line() > 0).then(|| crate::diag::Pos::new(e.line(), e.column().max(1)));
        let hint = if e.is_eof() {
            "the file ends early: check for a truncated write or an unclosed bracket"
        } else if e.to_string().contains("recursion limit") {
            "the JSON is nested too deeply to be an lmc or DSPy file"
        } else {
            "the file must be valid JSON"
        };
        Diagnostic::error(format!("not valid JSON: {e}"))
            .at(pos)
            .file(self.file.clone())
            .hint(hint)
    }

    /// A diagnostic for `p`, at the position its path was written when known.
    pub fn locate(&self, p: Problem) -> Diagnostic {
        let index = self
            .index
            .get_or_init(|| yaml::parse(self.text).ok().map(|d| d.root.index()));
        let pos = index.as_ref().and_then(|i| i.locate(&p.path));
        Diagnostic::error(p.message)
            .at(pos)
            .path(p.path)
            .file(self.file.clone())
            .maybe_hint(p.hint)
    }

    /// Every problem, located, in file order.
    pub fn diagnostics(&self, problems: Vec<Problem>) -> Diagnostics {
        let mut ds: Vec<Diagnostic> = problems.into_iter().map(|p| self.locate(p)).collect();
        ds.sort_by_key(|d| d.pos.map_or((usize::MAX, usize::MAX), |p| (p.line, p.col)));
        Diagnostics(ds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::KnnDemos;

    #[test]
    fn problems_are_located_by_json_path() {
        let text = "{\n  \"predictors\": {\n    \"a.predict\": {\"knn\": {\"k\": 5}}\n  }\n}\n";
        let doc = JsonDoc::new(text, Path::new("x.json"));
        let d = doc.locate(Problem::new("predictors.a.predict.knn.k", "bad"));
        assert_eq!(d.pos, Some(crate::diag::Pos::new(3, 32)));
        assert_eq!(d.to_string().lines().nth(1), Some("  --> x.json:3:32"));
    }

    #[test]
    fn huge_k_and_pools_are_refused() {
        let st = PredictorState {
            knn: Some(KnnDemos {
                k: 1_000_000_000_000_000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let ps = check_state("predictors.a", &st, "knn");
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].path, "predictors.a.knn.k");
        let ok = PredictorState {
            knn: Some(KnnDemos {
                k: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check_state("p", &ok, "knn").is_empty());
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let text = "{\n  \"a\": [1,\n";
        let e = serde_json::from_str::<serde_json::Value>(text).unwrap_err();
        let d = JsonDoc::new(text, Path::new("x.json")).syntax(&e);
        assert!(d.pos.is_some());
        assert!(d.hint.unwrap().contains("ends early"));
    }
}
