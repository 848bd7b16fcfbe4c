#!/usr/bin/env bash
# The long fuzz run over the program loader, artifact loader, DSPy import
# and dataset reader (tests/fuzz.rs; see docs/fuzzing.md).
#   scripts/fuzz.sh [SECONDS] [SEED]     default: 600 seconds, seed 1000
# Runs at the lowest CPU priority; prints how many inputs each target ran.
# A failing input is printed (shrunk) by proptest; rerun with the same SEED
# to reproduce it.
set -euo pipefail
secs=${1:-600}
seed=${2:-1000}
cd "$(dirname "$0")/.."
export LMC_FUZZ_SECS="$secs" LMC_FUZZ_SEED="$seed"
exec nice -n 19 cargo test --no-default-features --test fuzz -- --ignored --nocapture fuzz_long
