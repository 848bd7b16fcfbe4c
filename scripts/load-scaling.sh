#!/usr/bin/env bash
# Loading must be linear in input size (issue #11): time `lmc check` on
# generated programs with N enum values, N predict nodes and N program
# inputs, doubling N, and print seconds and peak RSS. Time per element
# should stay about flat down each column; a quadratic step doubles it.
#   scripts/load-scaling.sh [LMC_BINARY]     default: target/debug/lmc
# A benchmark, never a timed test.
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/debug/lmc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

head_lines='name: scale
signatures:
  s:
    inputs: {q: str}
    outputs:'
tail_lines='nodes:
  n: {kind: predict, signature: s, inputs: {q: input.q}}
outputs: {a: n.a}'

gen_enum() { # N enum values in one output type
  { echo "$head_lines"
    printf '      a: enum['; seq 0 $(($1 - 1)) | awk '{printf "%sv%s", (NR>1?", ":""), $1}'; echo ']'
    echo 'inputs: {q: str}'
    echo "$tail_lines"; }
}
gen_nodes() { # N predict nodes over one signature
  { echo "$head_lines"
    echo '      a: str'
    echo 'inputs: {q: str}'
    echo "$tail_lines"
    seq 1 "$1" | awk '{printf "  n%s: {kind: predict, signature: s, inputs: {q: input.q}}\n", $1}'; } |
    awk '/^outputs:/ {o=$0; next} {print} END {print o}'
}
gen_inputs() { # N program inputs (a mapping with N keys)
  { echo "$head_lines"
    echo '      a: str'
    echo 'inputs:'
    echo '  q: str'
    seq 1 "$1" | awk '{printf "  f%s: str\n", $1}'
    echo "$tail_lines"; }
}

printf '%-8s %9s %9s %12s %10s\n' what N seconds "us/element" "peak MB"
for what in enum nodes inputs; do
  case $what in
    enum) sizes="125000 250000 500000 1000000" ;;
    nodes) sizes="2500 5000 10000 20000" ;;
    inputs) sizes="62500 125000 250000 500000" ;;
  esac
  for n in $sizes; do
    f="$tmp/$what-$n.yaml"
    "gen_$what" "$n" > "$f"
    /usr/bin/time -f '%e %M' -o "$tmp/t" "$bin" check "$f" > /dev/null 2>&1 || true
    read -r secs kb < "$tmp/t"
    awk -v w="$what" -v n="$n" -v s="$secs" -v kb="$kb" \
      'BEGIN {printf "%-8s %9d %9.2f %12.2f %10.0f\n", w, n, s, s * 1e6 / n, kb / 1024}'
  done
done
