#!/bin/bash
# Diff two directories of compiled artifacts with what differs by execution
# (created_at, lineage.run, wall time) stripped. Usage: diff-artifacts.sh OLD NEW
set -eu
norm() { jq -S 'del(.created_at) | del(.lineage.run) | del(.output_path) | del(.lm.base_urls)' "$1"; }
status=0
for f in "$1"/*.json; do
  n=$(basename "$f")
  if ! diff -u --label "before/$n" --label "after/$n" <(norm "$f") <(norm "$2/$n"); then status=1; fi
done
exit $status
