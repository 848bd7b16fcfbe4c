#!/usr/bin/env bash
# The main job on a fresh machine: set up (build tools + the embedded model),
# build lmc, compile the SST-2 sentiment program with a few-shot optimizer on
# the embedded model, and evaluate zero-shot and compiled programs on a dev
# sample. Everything runs offline after the set-up step; re-running is cheap
# because every LM reply is cached (~/.cache/lmc/cache).
#
# Bounded on purpose: the default 135M model's cost is the prompt it reads
# (~90 tokens per SST-2 example that no other example shares, at ~150-260
# prompt tokens/s on two cores), so the sizes below keep the LM work to a
# few minutes after the build (each step prints its wall time). Measured
# 2026-11-30 on 2 cores shared with another job (load average 3-4), fresh
# cache, dev build of lmc (llama.cpp optimised as always): eval of 100
# sentences 61 s, compile 8+8 76 s, compiled eval from the cache (its demos
# did not beat zero-shot). The compile is the README tour's, so after the
# tour it replays from the cache. Raise the sizes with DEV_LIMIT /
# TRAIN_LIMIT / VAL_LIMIT / CANDIDATES for a longer, steadier run (demos
# make every prompt longer). LMC_BIN=/path/to/lmc uses that binary and skips
# the build (to time the part after it).
# A failing step stops the script (set -e): nothing here hides an error.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
LMC="${LMC_BIN:-}"
if [ -z "$LMC" ]; then
  cargo build --release --quiet
  LMC="${CARGO_TARGET_DIR:-target}/release/lmc"
fi
DEV_LIMIT="${DEV_LIMIT:-100}"
TRAIN_LIMIT="${TRAIN_LIMIT:-8}"
VAL_LIMIT="${VAL_LIMIT:-8}"
CANDIDATES="${CANDIDATES:-2}"

step() {
  echo
  echo "== $1"
  STEP_STARTED=$SECONDS
}
took() { echo "   ($((SECONDS - STEP_STARTED)) s)"; }

step "check every shipped program (and the datasets they name)"
$LMC check programs/*.yaml lmc.yaml
took

step "zero-shot eval on the first $DEV_LIMIT SST-2 dev sentences"
$LMC eval programs/sentiment.yaml --limit "$DEV_LIMIT"
took

COMPILE=(compile programs/sentiment.yaml --optimizer bootstrap_random_search
  --train-limit "$TRAIN_LIMIT" --val-limit "$VAL_LIMIT"
  --opt num_candidate_programs="$CANDIDATES" --seed 0 -o sentiment.compiled.json)

step "what the compile will cost (no LM call)"
$LMC "${COMPILE[@]}" --dry-run
took

step "compile (bootstrap_random_search on $TRAIN_LIMIT train / $VAL_LIMIT val examples)"
$LMC "${COMPILE[@]}"
took

step "compiled eval on the same $DEV_LIMIT dev sentences"
$LMC eval sentiment.compiled.json --limit "$DEV_LIMIT"
took

echo
echo "done in $SECONDS s. The default model is tiny: it proves the pipeline offline;"
echo "point lmc at a capable model (README, LMs) to see what the optimizers achieve."
