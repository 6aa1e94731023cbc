#!/usr/bin/env bash
# API server benchmark, both backends side by side in one run: the same load (creates,
# gets, lists of ConfigMaps from 32 HTTP/2 clients; then 1,000 watchers of a 100 events/s
# stream) against an in-process server on the embedded store, then on Debian's etcd.
# Usage: bench/api.sh [CLIENTS] [OPS_PER_CLIENT]   (root not needed)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
cargo build --release -q -p skiff-apiserver --example api_bench
W=$(mktemp -d /var/tmp/skiff-apibench.XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
C=$(port); P=$(port)
etcd --data-dir "$W/etcd" --listen-client-urls "http://127.0.0.1:$C" --advertise-client-urls "http://127.0.0.1:$C" \
  --listen-peer-urls "http://127.0.0.1:$P" --initial-advertise-peer-urls "http://127.0.0.1:$P" \
  --initial-cluster "default=http://127.0.0.1:$P" > "$W/etcd.log" 2>&1 &
EPID=$!
trap 'set +e; kill $EPID 2>/dev/null; wait $EPID 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 1 50); do ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$C" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
echo "== skiff API server on the embedded store"
TMPDIR="$W" "$CARGO_TARGET_DIR/release/examples/api_bench" "$@"
echo "== skiff API server on etcd $(etcd --version | head -1 | awk '{print $3}')"
TMPDIR="$W" DATASTORE="http://127.0.0.1:$C" "$CARGO_TARGET_DIR/release/examples/api_bench" "$@"
