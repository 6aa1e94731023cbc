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
# shellcheck source=bench/apiserver.lib.sh
. bench/apiserver.lib.sh skiff-apicurve
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
