//! Loading a program file: read the bytes, parse the YAML with positions,
//! lower to a validated [`Program`]. The single entry point every command
//! uses, so every command reports config mistakes the same way.

use std::path::Path;

use crate::diag::{Diagnostic, Diagnostics};
use crate::program::Program;

/// Read and lower the program file at `path`.
pub fn load(path: &Path) -> Result<Program, Diagnostics> {
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostics::from(Diagnostic::error(format!("cannot read program file: {e}")).file(path))
    })?;
    let source = String::from_utf8(bytes).map_err(|_| {
        Diagnostics::from(Diagnostic::error("program file is not valid UTF-8").file(path))
    })?;
    load_str(&source, path)
}

/// Lower program source text; `path` names the file in diagnostics and
/// anchors relative dataset and tool paths.
pub fn load_str(source: &str, path: &Path) -> Result<Program, Diagnostics> {
    crate::program::lower::lower_source(source, path)
}
