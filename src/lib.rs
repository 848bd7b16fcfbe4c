//! lmc: compile and evaluate LM programs.
//!
//! Modules follow the data flow: `yaml`/`spec` (the file as written) →
//! `program` (the validated graph) → `adapter` (messages in, typed values
//! out) → `lm` (backends, cache) → `run` (the graph interpreter) → `trace` →
//! `data` → `metric` → `eval` → `optimize` → `artifact`; `cli` is the
//! command line, `diag` renders diagnostics and `trust` decides what files
//! may make lmc do (processes, keys). Library code never prints.

pub mod adapter;
pub mod artifact;
pub mod cli;
pub mod data;
pub mod diag;
pub mod eval;
pub mod interrupt;
pub mod limits;
pub mod lm;
pub mod metric;
pub mod nodes;
pub mod optimize;
pub mod overlay;
pub mod predict;
pub mod program;
pub mod run;
pub mod serve;
pub mod settings;
pub mod signature;
pub mod spec;
pub mod tools;
pub mod trace;
pub mod trust;
pub mod yaml;
