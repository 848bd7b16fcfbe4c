#!/usr/bin/env bash
# Whole-process HTTP benchmarks of `lmc eval` against a local stub LM
# (examples/stub.rs, 127.0.0.1 only, bounded in time). Each figure is one
# real `lmc` process from start to exit, so start-up, dataset loading, the
# cache, reports and shutdown are all in it. Prints examples/s, % of the
# ideal rate (concurrency / latency) and the load average beside each line:
# on a shared machine read them together. Never run in CI (no timed checks).
#
#   scripts/bench-http.sh [quick]
#
# Environment: LMC_BENCH_N (examples for the latency sweep, default 20000),
# LMC_BENCH_CONC (default "16 64 256 1024"), LMC_BIN (an lmc binary to
# measure instead of building one), LMC_BENCH_SKIP_BUILD=1.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${LMC_BENCH_N:-20000}
CONCS=${LMC_BENCH_CONC:-"16 64 256 1024"}
if [[ "${1:-}" == quick ]]; then N=4000; CONCS="16 64 256"; fi
source scripts/bench-common.sh

# run_eval DATA CONC ARGS... -> prints "wall_s written_kb" of one lmc
# process (written: the kernel's block-output count, 512-byte units).
run_eval() {
  local data=$1 conc=$2; shift 2
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -o "$WORK/time" -f '%O' "$LMC" eval "$WORK/prog.yaml" --dataset "$WORK/$data" \
    --map label=sentiment --provider openai --model stub --base-url "$URL" --concurrency "$conc" \
    --quiet "$@" > /dev/null 2> "$WORK/err" || {
      # A failed run has no rate worth printing: stop the whole bench
      # (this runs in a subshell, so end the script itself; EXIT cleans up).
      echo "lmc failed:" >&2; tail -n5 "$WORK/err" >&2; kill -TERM $$; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v o="$(tail -n1 "$WORK/time")" 'BEGIN { printf "%.3f %d\n", b - a, o / 2 }'
}

echo "lmc: $LMC"
echo "cores: $(nproc)"

# 1. Instant stub: no cache vs cold cache vs warm cache at concurrency 64.
start_stub 0
M=${LMC_BENCH_CACHE_N:-10000}
dataset cache.csv "$M"
echo
echo "== instant stub, $M examples, concurrency 64 =="
read -r w _ < <(run_eval cache.csv 64 --no-cache)
nocache=$(awk -v n="$M" -v w="$w" 'BEGIN { printf "%.0f", n / w }')
echo "no cache:   ${w}s  ${nocache} examples/s   load $(load)"
read -r w kb < <(LMC_CACHE_DIR=$WORK/cache-cold run_eval cache.csv 64)
cold=$(awk -v n="$M" -v w="$w" 'BEGIN { printf "%.0f", n / w }')
size=$(du -sk "$WORK/cache-cold" | cut -f1)
echo "cold cache: ${w}s  ${cold} examples/s ($(awk -v c="$cold" -v n="$nocache" 'BEGIN { printf "%.0f", 100 * c / n }')% of no cache)   written $((kb / 1024)) MB for a $((size / 1024)) MB cache, $(awk -v k="$kb" -v n="$M" 'BEGIN { printf "%.1f", k * 1024 / n / 1024 }') KB per reply   load $(load)"
read -r w _ < <(LMC_CACHE_DIR=$WORK/cache-cold run_eval cache.csv 64)
echo "warm cache: ${w}s  $(awk -v n="$M" -v w="$w" 'BEGIN { printf "%.0f", n / w }') examples/s   load $(load)"

# 2. Warm re-run of 2,000 examples as a whole process.
dataset warm.csv 2000
LMC_CACHE_DIR=$WORK/cache-warm run_eval warm.csv 64 > /dev/null
best=
for _ in 1 2 3; do
  read -r w _ < <(LMC_CACHE_DIR=$WORK/cache-warm run_eval warm.csv 64)
  best=$(awk -v a="${best:-1e9}" -v b="$w" 'BEGIN { print (b < a ? b : a) }')
done
echo
echo "== warm re-run, 2000 examples: best of 3 ${best}s   load $(load)"

# 3. 50 ms stub, latency sweep (no cache: every example is a request).
start_stub 50
dataset sweep.csv "$N"
echo
echo "== 50 ms stub, $N examples, no cache =="
for c in $CONCS; do
  read -r w _ < <(run_eval sweep.csv "$c" --no-cache)
  awk -v n="$N" -v w="$w" -v c="$c" -v l="$(load)" 'BEGIN {
    rate = n / w; ideal = c / 0.05; if (ideal * w > n && n / 0.05 < ideal) ideal = n / 0.05;
    printf "concurrency %5d: %6.2fs %8.0f examples/s  %5.1f%% of ideal %.0f   load %s\n", c, w, rate, 100 * rate / ideal, ideal, l }'
done
