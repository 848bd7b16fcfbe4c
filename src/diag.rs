//! Diagnostics: located, explained errors about a user's files.
//!
//! The error path is the product (DESIGN.md): every problem found while
//! loading a program file carries the file, line and column, the YAML path
//! of the offending node, a message, and a hint (usually a did-you-mean).
//! This module owns the data type and its rustc/hurl-like rendering, so all
//! commands show config mistakes the same way, and the colouring of that
//! rendering on a terminal ([`paint`]).

use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub fn new(line: usize, col: usize) -> Self {
        Pos { line, col }
    }
}

/// How bad a diagnostic is. Only errors make a program invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One located problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// The file as the user named it (relative paths stay relative).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos: Option<Pos>,
    /// The YAML path of the offending node, e.g. `nodes.classify.inputs.sentence`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: None,
            pos: None,
            path: String::new(),
            hint: None,
        }
    }

    pub fn at(mut self, pos: Option<Pos>) -> Self {
        self.pos = pos;
        self
    }

    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    pub fn file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    /// rustc/hurl style:
    /// ```text
    /// error: unknown node kind `predcit`
    ///   --> programs/x.yaml:7:11
    ///    | nodes.classify.kind
    ///    = help: did you mean `predict`?
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.message)?;
        match (&self.file, self.pos) {
            (Some(file), Some(p)) => write!(f, "\n  --> {}:{}:{}", file.display(), p.line, p.col)?,
            (Some(file), None) => write!(f, "\n  --> {}", file.display())?,
            (None, Some(p)) => write!(f, "\n  --> {}:{}", p.line, p.col)?,
            (None, None) => {}
        }
        if !self.path.is_empty() {
            write!(f, "\n   | {}", self.path)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n   = help: {h}")?;
        }
        Ok(())
    }
}

/// All problems found in one load, in source order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Diagnostics(Vec::new())
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl std::ops::Deref for Diagnostics {
    type Target = Vec<Diagnostic>;
    fn deref(&self) -> &Vec<Diagnostic> {
        &self.0
    }
}

impl std::ops::DerefMut for Diagnostics {
    fn deref_mut(&mut self) -> &mut Vec<Diagnostic> {
        &mut self.0
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Diagnostics {
    /// Every diagnostic, a blank line between them, then a summary line
    /// when there is more than one error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        let n = self.error_count();
        if n > 1 {
            write!(f, "\n\nerror: {n} errors found")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Colour rendered diagnostics the way rustc does: `error:` red, `warning:`
/// yellow, the `-->` location and `|` path lines blue, `= help:` cyan.
///
/// Works on text already rendered (by [`Diagnostic`]'s `Display` or any
/// `error: ...` message), so every error path gets the same colours without
/// threading a flag through. The escapes are always added; print through
/// `anstream` (as the CLI does), which removes them when stderr is not a
/// terminal, when `NO_COLOR` is set or `CLICOLOR=0`, and keeps them with
/// `CLICOLOR_FORCE=1` — so pipes, files and CI logs stay plain.
pub fn paint(text: &str) -> String {
    use anstyle::{AnsiColor, Style};
    let bold = |c: AnsiColor| Style::new().bold().fg_color(Some(c.into()));
    let styles: [(&str, Style); 5] = [
        ("error:", bold(AnsiColor::Red)),
        ("warning:", bold(AnsiColor::Yellow)),
        ("  --> ", bold(AnsiColor::Blue)),
        ("   | ", bold(AnsiColor::Blue)),
        ("   = help:", bold(AnsiColor::Cyan)),
    ];
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match styles.iter().find(|(p, _)| line.starts_with(p)) {
            // Only the marker is coloured; the message stays default so it
            // reads on any background.
            Some((prefix, style)) => {
                let rest = &line[prefix.len()..];
                out.push_str(&format!("{style}{prefix}{style:#}{rest}"));
            }
            None => out.push_str(line),
        }
    }
    out
}

/// The closest of `candidates` to `word` (Jaro-Winkler, like cargo's
/// suggestions), if any is close enough to be a plausible misspelling.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    // Suggestions are for typos in names: a long word is no typo, and a
    // huge candidate list (a file with 500k keys) must not make every
    // error cost a pass over all of it.
    const MAX_WORD: usize = 64;
    const MAX_CANDIDATES: usize = 1000;
    if word.len() > MAX_WORD {
        return None;
    }
    let word = word.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates.into_iter().take(MAX_CANDIDATES) {
        if c.len() > MAX_WORD {
            continue;
        }
        let score = strsim::jaro_winkler(&word, &c.to_lowercase());
        if score >= 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let d = Diagnostic::error("unknown node kind `predcit`")
            .file("programs/x.yaml")
            .at(Some(Pos::new(7, 11)))
            .path("nodes.classify.kind")
            .hint("did you mean `predict`?");
        assert_eq!(
            d.to_string(),
            "error: unknown node kind `predcit`\n  --> programs/x.yaml:7:11\n   | nodes.classify.kind\n   = help: did you mean `predict`?"
        );
        let all = Diagnostics(vec![d.clone(), d]);
        assert!(all.to_string().ends_with("\n\nerror: 2 errors found"));
    }

    #[test]
    fn paint_colours_markers_and_strips_to_the_plain_text() {
        let plain = "error: unknown node kind `predcit`\n  --> x.yaml:7:11\n   | nodes.k\n   = help: did you mean `predict`?\nother";
        let painted = paint(plain);
        assert!(
            painted.contains("\x1b[1m\x1b[31merror:\x1b[0m"),
            "{painted:?}"
        );
        assert!(painted.contains("= help:\x1b[0m"), "{painted:?}");
        // Stripped (as anstream does off a terminal) it is the plain text.
        let mut stripped = Vec::new();
        {
            use std::io::Write;
            let mut w = anstream::StripStream::new(&mut stripped);
            w.write_all(painted.as_bytes()).unwrap();
        }
        assert_eq!(String::from_utf8(stripped).unwrap(), plain);
    }

    #[test]
    fn did_you_mean_needs_a_close_match() {
        let kinds = ["predict", "chain_of_thought", "react"];
        assert_eq!(
            did_you_mean("chain_of_thougth", kinds).as_deref(),
            Some("did you mean `chain_of_thought`?")
        );
        assert_eq!(did_you_mean("zzz", kinds), None);
    }
}
