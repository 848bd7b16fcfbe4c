#!/usr/bin/env bash
# Profile whole `lmc eval` processes at high concurrency against the
# stand-alone 50 ms stub (examples/stub.rs, 127.0.0.1 only): one
# `perf record -g` per concurrency, then the CPU split by thread and the
# top symbols. Needs `perf`; never run in CI (no timed checks).
#
#   scripts/profile-http.sh            # 20,000 examples at 256 and 1,024
#
# Environment: LMC_BENCH_N (default 20000), LMC_BENCH_CONC (default
# "256 1024"), LMC_PROFILE_DIR (keep perf.data files there; default: a
# temporary directory removed at exit), plus bench-common.sh's LMC_BIN and
# LMC_BENCH_SKIP_BUILD.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${LMC_BENCH_N:-20000}
CONCS=${LMC_BENCH_CONC:-"256 1024"}
source scripts/bench-common.sh
OUT=${LMC_PROFILE_DIR:-$WORK}
mkdir -p "$OUT"

start_stub 50
dataset prof.csv "$N"
for c in $CONCS; do
  data=$OUT/perf-$c.data
  echo "== concurrency $c, $N examples, 50 ms stub, no cache   load $(load)"
  t0=$(date +%s.%N)
  perf record -q -F 999 -g -o "$data" -- "$LMC" eval "$WORK/prog.yaml" --dataset "$WORK/prof.csv" \
    --map label=sentiment --provider openai --model stub --base-url "$URL" --concurrency "$c" \
    --quiet --no-cache > /dev/null 2> "$WORK/err" || { tail -n5 "$WORK/err" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v n="$N" -v c="$c" 'BEGIN { w = b - a; printf "%.2fs  %.0f examples/s  %.1f%% of ideal %.0f (under perf)\n", w, n / w, 100 * n / w / (c / 0.05), c / 0.05 }'
  echo "-- CPU by thread and object"
  perf report -i "$data" --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep '%' | head -8
  echo "-- top symbols"
  perf report -i "$data" --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep '%' | head -20
  echo
done
