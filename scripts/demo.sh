#!/usr/bin/env bash
# The main job on a fresh machine: set up (build tools + the embedded model),
# build lmc, compile the SST-2 sentiment program with a few-shot optimizer on
# the embedded model, and evaluate zero-shot and compiled programs on a dev
# sample. Everything runs offline after the set-up step; re-running is cheap
# because every LM reply is cached (~/.cache/lmc/cache).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --quiet
LMC=./target/release/lmc
DEV_LIMIT="${DEV_LIMIT:-100}"

echo "== check"
$LMC check programs/*.yaml

echo "== zero-shot eval on the first $DEV_LIMIT SST-2 dev sentences"
$LMC eval programs/sentiment.yaml --dataset datasets/sst2/dev.csv --limit "$DEV_LIMIT" || true

echo "== compile (bootstrap_random_search on 40 train / 40 val examples)"
$LMC compile programs/sentiment.yaml --optimizer bootstrap_random_search \
  --train-limit 40 --val-limit 40 --opt num_candidate_programs=4 \
  --seed 0 -o sentiment.compiled.json

echo "== compiled eval on the same dev sentences"
$LMC eval sentiment.compiled.json --dataset datasets/sst2/dev.csv --limit "$DEV_LIMIT" || true
