//! lmc's integration tests: one test binary, one module per area. Most run
//! the real `lmc` binary (exit code, stdout and stderr together); the LM is
//! a local stub HTTP server for fault injection and scripted answers, or the
//! real embedded model for a handful of smoke examples.

#[path = "../support/mod.rs"]
mod support;

mod adapter;
mod bounds;
mod checkpoint;
mod cli_errors;
mod compare;
mod compile;
mod compile_interrupt;
mod compile_list;
mod compile_settings;
mod compose;
mod data;
mod eval;
mod firsthour;
mod foundation;
mod harden;
mod instruction;
mod interrupt;
mod known_optimum;
// The embedded engine is a default feature; `--no-default-features` builds
// an HTTP-only binary whose tests skip it.
#[cfg(feature = "embedded")]
mod lm_choice;
#[cfg(feature = "embedded")]
mod lm_embedded;
mod lm_http;
mod lms;
mod lmspeed;
mod metric;
mod multichain;
mod objective;
mod optimizer_registry;
mod optimizer_snapshots;
mod parse_cases;
mod pipeline;
mod plumbing;

mod reports;
mod run_cmd;
mod serve;
mod simba;
mod tools;
mod trust;
