#!/usr/bin/env bash
# Load test of `lmc serve` on loopback: the SST-2 program served against an
# instant stub LM (examples/stub.rs), driven by a closed-loop load
# generator (examples/serve_load.rs) at a few concurrencies. Prints
# requests/s and p50/p99 latency per line, with the load average beside it:
# on a shared machine read them together. Bounded: every run stops after
# LMC_BENCH_N requests or LMC_BENCH_SECONDS seconds, whichever comes first,
# and the stub exits on its own after an hour. Loopback only; never in CI.
#
#   scripts/bench-serve.sh [quick]
#
# Environment: LMC_BENCH_N (requests per run, default 20000),
# LMC_BENCH_CONC (default "1 16 64"), LMC_BENCH_SECONDS (default 30),
# LMC_BIN (an lmc binary to measure instead of building one),
# LMC_BENCH_SKIP_BUILD=1.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${LMC_BENCH_N:-20000}
CONCS=${LMC_BENCH_CONC:-"1 16 64"}
SECS=${LMC_BENCH_SECONDS:-30}
if [[ "${1:-}" == quick ]]; then N=3000; CONCS="16 64"; SECS=15; fi
if [[ -z "${LMC_BENCH_SKIP_BUILD:-}" ]]; then
  cargo build --release --no-default-features --example serve_load >&2
fi
source scripts/bench-common.sh
LOADGEN=$TARGET/release/examples/serve_load

# start_serve ARGS... -> sets BASE and SERVE_PID (stopped by stop_serve).
start_serve() {
  : > "$WORK/serve.out"
  "$LMC" serve "$WORK/prog.yaml" --port 0 --provider openai --model stub --base-url "$URL" \
    --max-in-flight 256 --queue 256 --cache-dir "$WORK/cache" "$@" \
    > "$WORK/serve.out" 2> "$WORK/serve.err" &
  SERVE_PID=$!
  PIDS+=("$SERVE_PID")
  for _ in $(seq 200); do grep -q listening "$WORK/serve.out" && break; sleep 0.05; done
  BASE=$(sed -n 's/^listening on //p' "$WORK/serve.out")
  [[ -n $BASE ]] || { echo "lmc serve did not start:" >&2; cat "$WORK/serve.err" >&2; exit 1; }
}

# stop_serve: SIGTERM, wait for the drain; a non-zero exit stops the bench.
stop_serve() {
  kill -TERM "$SERVE_PID"
  wait "$SERVE_PID" || { echo "lmc serve exited $?:" >&2; tail -n5 "$WORK/serve.err" >&2; exit 1; }
}

echo "lmc: $LMC"
echo "cores: $(nproc)"
start_stub 0

echo
echo "== instant stub, distinct inputs (every request an LM call), no cache =="
start_serve --no-cache
for c in $CONCS; do
  echo "$("$LOADGEN" --url "$BASE" --requests "$N" --concurrency "$c" --seconds "$SECS")   load $(load)"
done
stop_serve

echo
echo "== instant stub, distinct inputs, response cache on (each reply written) =="
rm -rf "$WORK/cache"
start_serve
k=0
for c in $CONCS; do
  echo "$("$LOADGEN" --url "$BASE" --requests "$N" --concurrency "$c" --seconds "$SECS" --offset $((k * N)))   load $(load)"
  k=$((k + 1))
done
stop_serve

echo
echo "== one repeated input: cache hits after the first =="
start_serve
for c in $CONCS; do
  echo "$("$LOADGEN" --url "$BASE" --requests "$N" --concurrency "$c" --seconds "$SECS" --repeat)   load $(load)"
done
stop_serve
echo
echo "access log lines written: $(grep -c ' POST /v1/run ' "$WORK/serve.err" || true) (last run)"
