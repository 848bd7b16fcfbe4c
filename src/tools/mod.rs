//! Tools a program can call: `sqlite` (read-only), `retrieve` (BM25 over a
//! local corpus) and `command` (an external program, opt-in).

/// The tools of one program, opened once per run context.
#[derive(Debug, Default)]
pub struct Toolbox {}
