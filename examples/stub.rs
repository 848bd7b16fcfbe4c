//! A stand-alone stub LM server for whole-process benchmarks
//! (`scripts/bench-http.sh`): the test stub (`tests/support/stub.rs`) run
//! as its own process, so the figures measure `lmc` alone and not a stub
//! sharing its runtime.
//!
//! `cargo run --release --example stub -- [--latency-ms N] [--seconds S]`
//! prints its base URL (`http://127.0.0.1:PORT/v1`) on the first line of
//! stdout, answers every request with a sentiment reply after the latency,
//! and exits after `S` seconds (default 600) so a crashed script never
//! leaves it behind. It listens on 127.0.0.1 only. On exit it prints the
//! number of requests it served to stderr.

#[path = "../tests/support/stub.rs"]
mod stub;

use std::time::Duration;
use stub::{StubReply, StubServer};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let latency = Duration::from_millis(arg(&args, "--latency-ms", 0));
    let seconds = arg(&args, "--seconds", 600);
    let server = StubServer::builder()
        .latency(latency)
        .parse(false)
        .record(false)
        .start(|_| {
            StubReply::OkUsage(
                "[[ ## sentiment ## ]]\npositive\n\n[[ ## completed ## ]]".into(),
                60,
                10,
            )
        });
    stub::serve_as_process(&server, seconds);
}
