#!/usr/bin/env bash
# Render an HTML report in headless Chromium (Debian: apt-get install -y chromium) and save a full-page PNG.
#
#   examples/screenshot_report.sh [REPORT.html] [OUT.png] [HEIGHT]
#
# Without REPORT it runs `torchmetrics-av demo --random-weights tiny` (offline) into a temporary folder first.
# Chromium gets no network (a proxy that does not exist): a self-contained report must render completely anyway.
set -euo pipefail
REPORT=${1:-}
OUT=${2:-report.png}
HEIGHT=${3:-2400}
WIDTH=1200  # the report lays two 520 px plots side by side in a 1150 px column
if [[ -z "$REPORT" ]]; then
    DEMO=$(mktemp -d)
    TORCHMETRICS_AV_OFFLINE=1 python -m torchmetrics_av.cli demo --random-weights tiny --device cpu --out "$DEMO"
    REPORT="$DEMO/report.html"
fi
BROWSER=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [[ -z "$BROWSER" ]]; then
    echo "no Chromium found: apt-get install -y chromium" >&2
    exit 1
fi
"$BROWSER" --headless --no-sandbox --disable-gpu --hide-scrollbars --proxy-server=127.0.0.1:9 \
    --window-size="$WIDTH,$HEIGHT" --screenshot="$OUT" "file://$(realpath "$REPORT")" 2>/dev/null
echo "wrote $OUT from $REPORT"
