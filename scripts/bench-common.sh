# Shared set-up of the whole-process benchmarks (bench-http.sh,
# bench-vs-dspy.sh); sourced, never run. Gives: $LMC and $STUB (built
# unless LMC_BENCH_SKIP_BUILD=1), a work directory $WORK removed at exit
# with every started stub, the SST-2 program at $WORK/prog.yaml, and the
# helpers `dataset`, `start_stub` and `load`.

TARGET=${CARGO_TARGET_DIR:-target}
if [[ -z "${LMC_BENCH_SKIP_BUILD:-}" ]]; then
  cargo build --release --no-default-features --bin lmc --example stub >&2
fi
LMC=${LMC_BIN:-$TARGET/release/lmc}
STUB=$TARGET/release/examples/stub

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' TERM

# programs/sentiment.yaml's signature, datasets left out so the rows come
# from --dataset.
cat > "$WORK/prog.yaml" <<'YAML'
name: sentiment
signatures:
  classify:
    instructions: Classify the sentiment of a movie review sentence.
    inputs:
      sentence: {type: str, description: a sentence from a movie review}
    outputs:
      sentiment:
        type: enum[positive, negative]
        description: the sentiment the sentence expresses
inputs:
  sentence: str
nodes:
  classify:
    kind: predict
    signature: classify
outputs:
  sentiment: classify.sentiment
metric: {type: exact_match, field: sentiment}
YAML

# dataset NAME ROWS: distinct sentences (distinct cache keys), half positive.
dataset() {
  awk -v n="$2" 'BEGIN { print "sentence,label";
    for (i = 1; i <= n; i++) printf "review number %d of a film that was %s,%s\n", i, (i % 2 ? "dull" : "moving"), (i % 2 ? "negative" : "positive") }' > "$WORK/$1"
}

# start_stub LATENCY_MS -> sets URL (the stub lives until the script ends).
start_stub() {
  local fifo=$WORK/stub-$1.out
  mkfifo "$WORK/stub-$1.in"
  "$STUB" --latency-ms "$1" --seconds 3600 < "$WORK/stub-$1.in" > "$fifo" 2>/dev/null &
  PIDS+=($!)
  exec {HOLD}>"$WORK/stub-$1.in"   # keeps the stub's stdin open
  for _ in $(seq 100); do [[ -s $fifo ]] && break; sleep 0.05; done
  URL=$(head -n1 "$fifo")
}

load() { cut -d' ' -f1-3 /proc/loadavg; }
