#!/usr/bin/env bash
# API creates as objects accumulate, measured from outside (issue 15): a
# `skiff server --disable-agent` on the embedded store, and h2load (nghttp2's HTTP/2
# load tool, a separate process) creating small ConfigMaps (generateName) over 32
# connections in batches of BATCH, up to TOTAL. After each batch: the batch's
# creates/s, h2load's mean and max request time, and the server's RSS (VmRSS).
# Usage: bench/api_curve.sh [TOTAL [BATCH]]   (defaults 50000 10000; SKIFF_BIN picks
# the binary, else this tree is built in release)
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-50000}" BATCH="${2:-10000}"
if [ -z "${SKIFF_BIN:-}" ]; then
  SKIFF_BENCH=1 bash scripts/deps.sh
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
  cargo build --release -q -p skiff
fi
command -v h2load >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q nghttp2-client >/dev/null
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/release/skiff}"
W=$(mktemp -d /var/tmp/skiff-apicurve.XXXXXX)
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
rss() { awk '/^VmRSS/ {print int($2/1024)}' "/proc/$SPID/status"; }
printf "%-16s %10s %10s %10s %10s\n" "objects" "creates/s" "mean" "max" "RSS MiB"
printf "%-16s %10s %10s %10s %10d\n" "0" "" "" "" "$(rss)"
done_n=0
while [ "$done_n" -lt "$TOTAL" ]; do
  h2load -n "$BATCH" -c 32 -m 1 -H 'Authorization: Bearer benchtoken' \
    -H 'Content-Type: application/json' -d "$W/body" \
    "https://127.0.0.1:$PORT/api/v1/namespaces/default/configmaps" > "$W/h2load.txt"
  created=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$W/h2load.txt")
  [ "$created" = "$BATCH" ] || { echo "only ${created:-0} of $BATCH creates succeeded:" >&2; cat "$W/h2load.txt" >&2; exit 1; }
  rate=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$W/h2load.txt")
  read -r max mean < <(awk '/^time for request:/ {print $5, $6}' "$W/h2load.txt")
  printf "%-16s %10.0f %10s %10s %10d\n" "$done_n-$((done_n + BATCH))" "$rate" "$mean" "$max" "$(rss)"
  done_n=$((done_n + BATCH))
done
