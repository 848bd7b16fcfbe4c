#!/usr/bin/env bash
# Check an lmc HTML report in headless Chromium: no script error, plots
# rendered, sorting by a header click, filtering by typed text and by
# outcome, and take a screenshot.
#
#   scripts/check-html.sh                      # make demo eval + compare reports, check them
#   scripts/check-html.sh [--compare] REPORT.html QUERY [OUT.png]
#
# With no arguments it builds a report itself: `lmc eval` of a small
# program against a local scripted LM server (loopback only) that answers
# wrong on a few rows, then checks it with the query "number 1" and writes
# target/check-html.png (or $LMC_CHECK_HTML_SCREENSHOT). Needs node (>= 20) and chromium (`apt-get install
# chromium`); set CHROMIUM to use another binary. Exit 0 when every check
# passed, 1 when one failed, 2 on bad usage, 3 when chromium is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v node >/dev/null || { echo "check-html: node is needed" >&2; exit 3; }
command -v "${CHROMIUM:-chromium}" >/dev/null || { echo "check-html: chromium is needed (apt-get install chromium)" >&2; exit 3; }

if [ $# -ge 2 ]; then
  exec node --experimental-websocket "$here/check-html.mjs" "$@"
fi
[ $# -eq 0 ] || { echo "usage: $0 [[--compare] REPORT.html QUERY [OUT.png]]" >&2; exit 2; }

# No report given: the integration test makes one (lmc eval against a
# local scripted stub), runs this checker on it and keeps the screenshot.
root="$(cd "$here/.." && pwd)"
export LMC_CHECK_HTML_SCREENSHOT="${LMC_CHECK_HTML_SCREENSHOT:-$root/target/check-html.png}"
export LMC_CHECK_HTML_SCREENSHOT_COMPARE="${LMC_CHECK_HTML_SCREENSHOT_COMPARE:-$root/target/check-html-compare.png}"
mkdir -p "$(dirname "$LMC_CHECK_HTML_SCREENSHOT")" "$(dirname "$LMC_CHECK_HTML_SCREENSHOT_COMPARE")"
cd "$root"
cargo test --no-default-features --test it -- reports::html_report_sorts_and_filters_in_chromium compare::compare_html_renders_plots_in_chromium --exact --nocapture
echo "screenshots: $LMC_CHECK_HTML_SCREENSHOT $LMC_CHECK_HTML_SCREENSHOT_COMPARE" >&2
