#!/usr/bin/env bash
# Build skiff (release), install its runtime dependencies, and put it on PATH at
# /usr/local/bin/skiff. Then use it as you would docker: skiff run, skiff build, ...
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
cargo build --release -p skiff
install -m 0755 "$CARGO_TARGET_DIR/release/skiff" /usr/local/bin/skiff
echo "skiff installed at /usr/local/bin/skiff"
if [ $# -gt 0 ]; then exec /usr/local/bin/skiff "$@"; fi
