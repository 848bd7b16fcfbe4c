#!/usr/bin/env bash
# Cross-optimizer table on the known-optimum task (issue 14): every
# registered optimizer with its default settings, then instruction-search
# pipelines composed with kNN demos, each on a cold cache against the
# task's scripted LM (examples/known_optimum.rs, the handler of
# tests/support/known_optimum.rs). Prints one markdown row per run: dev
# score (the task's optimum is 1.0, zero-shot 0.25), LM calls that reached
# the stub (proposals included), the program's LM requests during the
# search (cache hits included, every stage of a pipeline) and wall time.
#
#   scripts/bench-optimizers.sh            # release build
#   LMC_BENCH_PROFILE=debug scripts/bench-optimizers.sh
#   LMC_BENCH_SKIP_BUILD=1 ...             # use what is built
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${LMC_BENCH_PROFILE:-release}
TARGET=${CARGO_TARGET_DIR:-target}
if [[ -z "${LMC_BENCH_SKIP_BUILD:-}" ]]; then
  flag=$([[ $PROFILE == release ]] && echo --release || true)
  cargo build $flag --no-default-features --bin lmc --example known_optimum >&2
fi
LMC=${LMC_BIN:-$TARGET/$PROFILE/lmc}
STUB=$TARGET/$PROFILE/examples/known_optimum
PROGRAM=tests/fixtures/known_optimum/route.yaml
DATA=tests/fixtures/known_optimum/tickets.csv

WORK=$(mktemp -d)
STUB_PID=
cleanup() {
  [[ -n $STUB_PID ]] && kill "$STUB_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' TERM INT

mkfifo "$WORK/stub.in"
"$STUB" --seconds 3600 < "$WORK/stub.in" > "$WORK/stub.out" 2>/dev/null &
STUB_PID=$!
exec {HOLD}>"$WORK/stub.in"   # keeps the stub's stdin open
for _ in $(seq 100); do [[ -s $WORK/stub.out ]] && break; sleep 0.05; done
URL=$(head -n1 "$WORK/stub.out")
[[ $URL == http* ]] || { echo "the stub did not start" >&2; exit 1; }

# bench LABEL ARGS...: one compile on a fresh cache, one table row.
bench() {
  local label=$1; shift
  local dir; dir=$(mktemp -d -p "$WORK")
  local json
  if ! json=$(LMC_CACHE_DIR="$dir/cache" "$LMC" compile "$PROGRAM" \
      --trainset "$DATA" --valset "$DATA" --seed 0 --json --quiet \
      --provider openai --model scripted --base-url "$URL" \
      -o "$dir/out.json" "$@" 2>"$dir/err"); then
    echo "$label failed:" >&2; cat "$dir/err" >&2; exit 1
  fi
  python3 -c '
import json, sys
j = json.loads(sys.argv[2])
requests = j["lm_requests"] + sum(s["lm_calls"] for s in j.get("stages", []))
print("| %s | %.3f | %d | %d | %.2f |" % (sys.argv[1], j["dev_score"], j["lm_calls"], requests, j["wall_time_s"]))
' "$label" "$json"
}

echo "| optimizer | dev score | LM calls | program LM requests | wall time (s) |"
echo "|---|---:|---:|---:|---:|"
for name in $("$LMC" compile --list --json | python3 -c 'import json,sys; print(" ".join(o["name"] for o in json.load(sys.stdin)))'); do
  bench "$name" --optimizer "$name"
done
for first in mipro gepa simba; do
  bench "$first → knn_few_shot" --optimizer "$first" --then knn_few_shot
done
# The other order: demos chosen per input first, then an instruction
# search that keeps them (GEPA searches instructions only, so every
# candidate it scores runs with kNN's per-input demos).
bench "knn_few_shot → gepa" --optimizer knn_few_shot --then gepa
