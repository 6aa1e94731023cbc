#!/usr/bin/env bash
# Store benchmark, side by side in one run: Debian's etcd (etcdctl check perf
# --load=l: 60 s of puts from its own load generator) and skiff's embedded store
# (64 concurrent writers, 1 KiB values, fsync'd group commit). Prints writes/s and
# latency percentiles of each. Usage: bench/store.sh   (root not needed)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
cargo build --release -q -p skiff-store --example store_bench
W=$(mktemp -d /var/tmp/skiff-storebench.XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
C=$(port); P=$(port)
etcd --data-dir "$W/etcd" --listen-client-urls "http://127.0.0.1:$C" --advertise-client-urls "http://127.0.0.1:$C" \
  --listen-peer-urls "http://127.0.0.1:$P" --initial-advertise-peer-urls "http://127.0.0.1:$P" \
  --initial-cluster "default=http://127.0.0.1:$P" > "$W/etcd.log" 2>&1 &
EPID=$!
trap 'set +e; kill $EPID 2>/dev/null; wait $EPID 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 1 50); do ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$C" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
echo "== etcd $(etcd --version | head -1 | awk '{print $3}'): etcdctl check perf --load=l"
ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$C" check perf --load=l 2>&1 | grep -vE '^\s*[0-9]+ / [0-9]+' | tail -6 || true
echo "== skiff embedded store: 64 writers, 50000 creates of 1 KiB"
TMPDIR="$W" "$CARGO_TARGET_DIR/release/examples/store_bench" 64 50000 1024 0
