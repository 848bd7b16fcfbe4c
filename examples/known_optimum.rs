//! The known-optimum task's scripted LM as its own process, for
//! `scripts/bench-optimizers.sh`: the handler of
//! `tests/support/known_optimum.rs` (right only when the instruction names
//! every queue and a demo matches the ticket's topic) behind the test stub
//! server.
//!
//! `cargo run --example known_optimum -- [--seconds S]` prints its base URL
//! (`http://127.0.0.1:PORT/v1`) on the first line of stdout and serves
//! until stdin closes or `S` seconds pass (default 3600), so a crashed
//! script never leaves it behind. It listens on 127.0.0.1 only; on exit it
//! prints the number of requests it served to stderr.

#[path = "../tests/support/stub.rs"]
mod stub;

#[path = "../tests/support/known_optimum.rs"]
mod known_optimum;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    let server = stub::StubServer::builder()
        .record(false)
        .start(known_optimum::handler);
    stub::serve_as_process(&server, seconds);
}
