//! Where a file asked for something: file:line:col of a YAML path.
//!
//! The lowered [`crate::program::Program`] keeps no positions, and a refusal
//! happens long after loading, so the files are re-parsed here, on demand,
//! with the same position-keeping YAML reader as the loader. JSON artifacts
//! go through it too (JSON is YAML's flow syntax). A file that no longer
//! parses still gets a message, only without line and column.

use std::fmt;
use std::path::Path;

use crate::diag::Pos;
use crate::settings::Target;
use crate::yaml::PosIndex;

/// A place in a user's file where a declaration was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// The file as shown to the user (an artifact's embedded program is
    /// shown as `prog.yaml (embedded in prog.compiled.json)`).
    pub file: String,
    pub pos: Option<Pos>,
    /// The YAML path, e.g. `metric.command` or `tools.shell.command`.
    pub path: String,
}

impl fmt::Display for Declared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}", self.file, p.line, p.col)?,
            None => write!(f, "{}", self.file)?,
        }
        if !self.path.is_empty() {
            write!(f, " ({})", self.path)?;
        }
        Ok(())
    }
}

/// One file's text, indexed by YAML path.
pub struct SourceMap {
    label: String,
    index: Option<PosIndex>,
}

impl SourceMap {
    pub fn new(label: impl Into<String>, text: &str) -> SourceMap {
        SourceMap {
            label: label.into(),
            index: crate::yaml::parse(text).ok().map(|d| d.root.index()),
        }
    }

    /// Read `path` (a missing or unreadable file gives positions-less
    /// declarations, never an error: the message matters more).
    pub fn read(path: &Path) -> SourceMap {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        SourceMap::new(path.display().to_string(), &text)
    }

    /// The declaration at `path` (its value, else the nearest enclosing
    /// node that was written).
    pub fn at(&self, path: &str) -> Declared {
        Declared {
            file: self.label.clone(),
            pos: self.index.as_ref().and_then(|i| i.locate(path)),
            path: path.to_string(),
        }
    }
}

/// The program's own source: the program file, or the program embedded in
/// an artifact (positions are in the embedded text).
pub fn program_source(target: &Target) -> SourceMap {
    let program = &target.program;
    match &target.artifact {
        Some(a) => {
            let name = a
                .program
                .path
                .clone()
                .unwrap_or_else(|| format!("{}.yaml", program.name));
            SourceMap::new(
                format!("{name} (embedded in {})", target.path.display()),
                &program.source,
            )
        }
        None => SourceMap::new(
            program
                .source_path
                .as_deref()
                .unwrap_or(&target.path)
                .display()
                .to_string(),
            &program.source,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_values_and_falls_back_to_the_enclosing_node() {
        let m = SourceMap::new("p.yaml", "name: x\nlm:\n  base_urls: [http://a/v1]\n");
        let d = m.at("lm.base_urls");
        assert_eq!(d.to_string(), "p.yaml:3:14 (lm.base_urls)");
        assert_eq!(m.at("lm.api_key_env").pos, Some(Pos::new(3, 3)));
        let broken = SourceMap::new("q.yaml", "a: [");
        assert_eq!(broken.at("a").to_string(), "q.yaml (a)");
    }
}
