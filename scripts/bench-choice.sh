#!/usr/bin/env bash
# Enum choices on the embedded engine: SST-2 dev sentences evaluated with
# the sentiment label sampled (greedy), chosen by likelihood, and chosen by
# calibrated likelihood, back to back, each with a fresh cache. Prints
# accuracy with its 95% interval, the predicted-label split, examples/s and
# the load average (the machine is shared). An optional compiled artifact
# (ARTIFACT=path) is evaluated the same way after the program.
#
#   N=100 bash scripts/bench-choice.sh            # release build
#   LMC=/path/to/lmc N=20 bash scripts/bench-choice.sh
#   ARTIFACT=sst2.compiled.json bash scripts/bench-choice.sh  # program, then artifact
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-100}"
if [ -z "${LMC:-}" ]; then
  cargo build --release --quiet
  LMC="${CARGO_TARGET_DIR:-target}/release/lmc"
fi
# KEEP=dir keeps each run's eval JSON there.
WORK="${KEEP:-$(mktemp -d)}"
mkdir -p "$WORK"
[ -z "${KEEP:-}" ] && trap 'rm -rf "$WORK"' EXIT

# TARGETS (space-separated) replaces the program, e.g. to bench artifacts only.
read -r -a targets <<<"${TARGETS:-programs/sentiment.yaml}"
[ -n "${ARTIFACT:-}" ] && targets+=("$ARTIFACT")

printf '%-28s %-10s %-22s %-26s %-7s %s\n' target choice accuracy "predicted (pos/neg)" "ex/s" load
for target in "${targets[@]}"; do
  for mode in sample likelihood calibrated; do
    out="$WORK/$(basename "$target")-$mode.json"
    LMC_CACHE_DIR="$WORK/cache-$mode-$RANDOM" \
      "$LMC" eval "$target" --limit "$N" --choice "$mode" --json --quiet >"$out"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    python3 - "$out" "$target" "$mode" "$load" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
labels = [(x.get("outputs") or {}).get("sentiment") for x in r["results"]]
pos, neg = labels.count("positive"), labels.count("negative")
acc = "%.2f [%.2f, %.2f]" % (s["mean"], s["ci95_low"], s["ci95_high"])
split = "%d/%d (n=%d)" % (pos, neg, s["n"])
print("%-28s %-10s %-22s %-26s %-7.2f %s" % (sys.argv[2][-28:], sys.argv[3], acc, split, s["examples_per_s"], sys.argv[4]))
PY
  done
done
