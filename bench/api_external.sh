#!/usr/bin/env bash
# API creates measured from outside: a `skiff server --disable-agent` on the embedded
# store, and h2load (nghttp2's HTTP/2 load tool, a separate process) creating N
# small ConfigMaps (generateName) over 32 connections with a bearer token.
# Prints "creates/s R" and h2load's mean request time.
# Usage: bench/api_external.sh [N]   (root not needed; SKIFF_BIN picks the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
if [ -z "${SKIFF_BIN:-}" ]; then
  SKIFF_BENCH=1 bash scripts/deps.sh
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
  cargo build --release -q -p skiff
fi
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/release/skiff}"
W=$(mktemp -d /var/tmp/skiff-apiext.XXXXXX)
cleanup() {
  set +e
  [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
echo 'benchtoken,bench,1000,"system:masters"' > "$W/tokens"
SKIFF_LOG=warn "$SKIFF" server --disable-agent --data-dir "$W/server" --https-listen-port 0 \
  --bind-address 127.0.0.1 --write-kubeconfig "$W/kc" --token-auth-file "$W/tokens" 2>"$W/server.log" &
SPID=$!
PORT=""
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*API on port \([0-9]*\).*/\1/p' "$W/server.log" | head -1)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "server did not start:" >&2; cat "$W/server.log" >&2; exit 1; }
echo '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"bench-"},"data":{"k":"v"}}' > "$W/body"
h2load -n "$N" -c 32 -m 1 -H 'Authorization: Bearer benchtoken' -H 'Content-Type: application/json' \
  -d "$W/body" "https://127.0.0.1:$PORT/api/v1/namespaces/default/configmaps" > "$W/h2load.txt"
created=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$W/h2load.txt")
[ "$created" = "$N" ] || { echo "only ${created:-0} of $N creates succeeded:" >&2; cat "$W/h2load.txt" >&2; exit 1; }
rate=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$W/h2load.txt")
mean=$(awk '/^time for request:/ {print $6}' "$W/h2load.txt")
echo "creates/s $rate (mean $mean per request, $N ConfigMaps, 32 connections)"
