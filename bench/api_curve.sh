#!/usr/bin/env bash
# API creates as objects accumulate, measured from outside (issue 15): a
# `skiff server --disable-agent` and h2load (nghttp2's HTTP/2 load tool, a separate
# process) creating small ConfigMaps (generateName) over 32 connections in batches of
# BATCH, up to TOTAL. After each batch: the batch's creates/s, h2load's mean and max
# request time, and the server's RSS (VmRSS).
# STORE=etcd puts the server on Debian's etcd (started here) and, after each batch,
# measures etcd's own write rate in the same run: BATCH puts of a value the size of a
# stored ConfigMap, by the same tool over the same number of connections, through etcd's
# JSON gateway (HTTP/1.1; its HTTP/2 port speaks only gRPC); the etcd RSS column is
# etcd's. STORE=embedded (the default) uses skiff's embedded store.
# Usage: [STORE=embedded|etcd] bench/api_curve.sh [TOTAL [BATCH]]   (defaults 50000
# 10000; SKIFF_BIN picks the binary, else this tree is built in release)
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-50000}" BATCH="${2:-10000}"
# shellcheck source=bench/apiserver.lib.sh
. bench/apiserver.lib.sh skiff-apicurve
rss() { awk '/^VmRSS/ {print int($2/1024)}' "/proc/$1/status"; }
# h2load's report: "<req/s> <mean> <max>", after checking every request succeeded.
h2() {
  local n=$1; shift
  h2load -n "$n" -c 32 -m 1 "$@" > "$W/h2load.txt"
  local ok
  ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$W/h2load.txt")
  [ "$ok" = "$n" ] || { echo "only ${ok:-0} of $n requests succeeded:" >&2; cat "$W/h2load.txt" >&2; exit 1; }
  local rate mean max
  rate=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$W/h2load.txt")
  read -r max mean < <(awk '/^time for request:/ {print $5, $6}' "$W/h2load.txt")
  echo "$rate $mean $max"
}
if [ -n "${EPID:-}" ]; then
  # etcd's own writes: one key, a 400-byte value (a stored ConfigMap with its metadata).
  printf '{"key":"%s","value":"%s"}' "$(printf /bench/direct | base64 -w0)" \
    "$(head -c 300 /dev/urandom | base64 -w0)" > "$W/etcdput"
  printf "%-16s %10s %10s %10s %10s %12s %10s\n" "objects" "creates/s" "mean" "max" "RSS MiB" "etcd puts/s" "etcd MiB"
  printf "%-16s %10s %10s %10s %10d %12s %10d\n" "0" "" "" "" "$(rss "$SPID")" "" "$(rss "$EPID")"
else
  printf "%-16s %10s %10s %10s %10s\n" "objects" "creates/s" "mean" "max" "RSS MiB"
  printf "%-16s %10s %10s %10s %10d\n" "0" "" "" "" "$(rss "$SPID")"
fi
done_n=0
while [ "$done_n" -lt "$TOTAL" ]; do
  r=$(h2 "$BATCH" -H 'Authorization: Bearer benchtoken' \
    -H 'Content-Type: application/json' -d "$W/body" \
    "https://127.0.0.1:$PORT/api/v1/namespaces/default/configmaps")
  read -r rate mean max <<< "$r"
  if [ -n "${EPID:-}" ]; then
    r=$(h2 "$BATCH" --h1 -d "$W/etcdput" "$ETCD/v3/kv/put")
    read -r erate _ _ <<< "$r"
    printf "%-16s %10.0f %10s %10s %10d %12.0f %10d\n" "$done_n-$((done_n + BATCH))" "$rate" "$mean" "$max" \
      "$(rss "$SPID")" "$erate" "$(rss "$EPID")"
  else
    printf "%-16s %10.0f %10s %10s %10d\n" "$done_n-$((done_n + BATCH))" "$rate" "$mean" "$max" "$(rss "$SPID")"
  fi
  done_n=$((done_n + BATCH))
done
