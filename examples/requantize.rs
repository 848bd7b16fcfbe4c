//! Writes a copy of a GGUF model with its weights in another type, for
//! measuring what the weight type does to the embedded engine's speed
//! (docs/embedded.md, "Weight types"):
//!
//! `cargo run --example requantize -- SRC.gguf DST.gguf Q8_0|Q4_0 [THREADS]`
//!
//! The copy is written next to DST and renamed into place; SRC is only
//! read. Then point the bench at it with `LMC_BENCH_MODEL=DST.gguf`.

use std::path::PathBuf;
use std::time::Instant;

use lmc::lm::embedded::quantize::{requantize, WeightType};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=4).contains(&args.len()) {
        eprintln!("usage: requantize SRC.gguf DST.gguf Q8_0|Q4_0 [THREADS]");
        std::process::exit(2);
    }
    let (src, dst) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]));
    let to: WeightType = args[2].parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(2);
    let started = Instant::now();
    if let Err(e) = requantize(&src, &dst, to, threads) {
        eprintln!("{e}");
        std::process::exit(3);
    }
    let size = |p: &PathBuf| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1e6;
    println!(
        "{} ({:.1} MB) -> {} ({:.1} MB, {to}) in {:.1} s",
        src.display(),
        size(&src),
        dst.display(),
        size(&dst),
        started.elapsed().as_secs_f64()
    );
}
