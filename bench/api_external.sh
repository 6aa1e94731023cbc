#!/usr/bin/env bash
# API creates measured from outside: a `skiff server --disable-agent` on the embedded
# store, and h2load (nghttp2's HTTP/2 load tool, a separate process) creating N
# small ConfigMaps (generateName) over 32 connections with a bearer token.
# Prints "creates/s R" and h2load's mean request time.
# Usage: bench/api_external.sh [N]   (root not needed; SKIFF_BIN picks the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
# shellcheck source=bench/apiserver.lib.sh
. bench/apiserver.lib.sh skiff-apiext
h2load -n "$N" -c 32 -m 1 -H 'Authorization: Bearer benchtoken' -H 'Content-Type: application/json' \
  -d "$W/body" "https://127.0.0.1:$PORT/api/v1/namespaces/default/configmaps" > "$W/h2load.txt"
created=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$W/h2load.txt")
[ "$created" = "$N" ] || { echo "only ${created:-0} of $N creates succeeded:" >&2; cat "$W/h2load.txt" >&2; exit 1; }
rate=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$W/h2load.txt")
mean=$(awk '/^time for request:/ {print $6}' "$W/h2load.txt")
echo "creates/s $rate (mean $mean per request, $N ConfigMaps, 32 connections)"
