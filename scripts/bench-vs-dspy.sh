#!/usr/bin/env bash
# Whole-process benchmark of `lmc eval` against DSPy's `Evaluate` on the
# same local stub LM (examples/stub.rs, 127.0.0.1 only), the same dataset
# rows and the same concurrency (lmc's --concurrency = DSPy's num_threads),
# back to back, with no cache on either side. Each figure is one whole
# process from start to exit (interpreter start-up and imports included
# for DSPy, as start-up is for lmc). Prints both rates, the ratio and the
# load average: on a shared machine read them together. Never run in CI.
#
#   scripts/bench-vs-dspy.sh [quick]
#
# DSPy is installed from PyPI into a throwaway virtualenv under the user's
# cache directory (reused by later runs; delete it to reinstall); nothing
# is installed system-wide. The DSPy program is scripts/bench_dspy.py.
#
# Environment: LMC_BENCH_N (examples per run, default 5000),
# LMC_BENCH_CONC (default "16 64"), LMC_BENCH_LATENCIES (stub latencies in
# ms, default "0 50"), LMC_DSPY_VERSION (default 3.4.1), LMC_DSPY_VENV
# (the virtualenv), LMC_BIN, LMC_BENCH_SKIP_BUILD=1.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${LMC_BENCH_N:-5000}
CONCS=${LMC_BENCH_CONC:-"16 64"}
LATENCIES=${LMC_BENCH_LATENCIES:-"0 50"}
if [[ "${1:-}" == quick ]]; then N=1000; fi
DSPY_VERSION=${LMC_DSPY_VERSION:-3.4.1}
VENV=${LMC_DSPY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lmc/dspy-bench-venv}

# DSPy, pinned, in its own virtualenv (PyPI is the only network use).
if ! "$VENV/bin/python" -c "import dspy, sys; sys.exit(dspy.__version__ != '$DSPY_VERSION')" 2>/dev/null; then
  echo "installing dspy==$DSPY_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "dspy==$DSPY_VERSION" >&2
fi

source scripts/bench-common.sh

# Keep DSPy off the network and out of the home directory: LiteLLM reads its
# model price map from the installed package instead of fetching it, and
# DSPy's (unused) disk cache lives in the throwaway work directory.
export LITELLM_LOCAL_MODEL_COST_MAP=True DSPY_CACHEDIR=$WORK/dspy-cache

# Distinct sentences, half positive: both sides must score 0.5 against the
# stub, which always answers "positive".
dataset data.csv "$N"

# timed CMD... -> prints the wall seconds of one whole process; its output
# goes to $WORK/out and $WORK/err. A failed run stops the script: a rate
# of a run that did not do the work would mislead.
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$WORK/out" 2> "$WORK/err" || { echo "failed: $*" >&2; tail -n5 "$WORK/err" >&2; exit 3; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

echo "lmc: $LMC"
echo "dspy: $("$VENV/bin/python" -c 'import dspy; print(dspy.__version__)') ($VENV)"
echo "cores: $(nproc), $N examples per run, no cache on either side"
echo
printf "%-8s %5s %12s %12s %7s   %s\n" stub conc "lmc ex/s" "dspy ex/s" ratio "load (lmc | dspy)"
for lat in $LATENCIES; do
  start_stub "$lat"
  for c in $CONCS; do
    l1=$(load)
    wl=$(timed "$LMC" eval "$WORK/prog.yaml" --dataset "$WORK/data.csv" \
      --map label=sentiment --provider openai --model stub --base-url "$URL" \
      --concurrency "$c" --no-cache --quiet)
    grep -Eq "score +0\.5000" "$WORK/out" && grep -q "errors 0, parse failures 0" "$WORK/out" \
      || { echo "lmc did not score 0.5 without errors:" >&2; cat "$WORK/out" >&2; exit 3; }
    l2=$(load)
    wd=$(timed timeout 600 "$VENV/bin/python" scripts/bench_dspy.py "$URL" "$WORK/data.csv" "$c")
    grep -q "score 50.0 on $N examples" "$WORK/err" \
      || { echo "dspy did not score 50%:" >&2; tail -n3 "$WORK/err" >&2; exit 3; }
    awk -v n="$N" -v a="$wl" -v b="$wd" -v lat="${lat} ms" -v c="$c" -v l1="$l1" -v l2="$l2" 'BEGIN {
      printf "%-8s %5d %12.0f %12.0f %6.1fx   %s | %s\n", lat, c, n / a, n / b, b / a, l1, l2 }'
  done
done
