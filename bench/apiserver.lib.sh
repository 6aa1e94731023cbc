# Sourced by the API benchmarks (api_external.sh, api_curve.sh, api_list.sh): builds
# skiff unless SKIFF_BIN names a binary, then starts `skiff server --disable-agent` in a
# scratch directory with a bearer token (`benchtoken`, system:masters), and removes it
# all on exit. With STORE=etcd it first starts Debian's etcd on loopback ports in the
# scratch directory (EPID, ETCD: its client URL) and puts the server on it; else the
# server uses the embedded store. Sets SKIFF, W (the scratch directory), SPID (the
# server's pid), PORT (its API port) and writes "$W/body", a small ConfigMap to create.
# $1: the scratch directory's name prefix.
if [ -z "${SKIFF_BIN:-}" ]; then
  SKIFF_BENCH=1 bash scripts/deps.sh
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
  cargo build --release -q -p skiff
fi
command -v h2load >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q nghttp2-client >/dev/null
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/release/skiff}"
W=$(mktemp -d "/var/tmp/$1.XXXXXX")
cleanup() {
  set +e
  [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  [ -n "${EPID:-}" ] && kill "$EPID" 2>/dev/null && wait "$EPID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DATASTORE_ARGS=()
if [ "${STORE:-embedded}" = etcd ]; then
  command -v etcd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client >/dev/null
  EC=$(free_port) EP=$(free_port)
  ETCD="http://127.0.0.1:$EC"
  etcd --data-dir "$W/etcd" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls "http://127.0.0.1:$EP" --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
    --initial-cluster "default=http://127.0.0.1:$EP" --quota-backend-bytes 8589934592 > "$W/etcd.log" 2>&1 &
  EPID=$!
  for _ in $(seq 1 50); do ETCDCTL_API=3 etcdctl --endpoints "$ETCD" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
  ETCDCTL_API=3 etcdctl --endpoints "$ETCD" endpoint health >/dev/null || { echo "etcd did not start:" >&2; cat "$W/etcd.log" >&2; exit 1; }
  DATASTORE_ARGS=(--datastore-endpoint "$ETCD")
elif [ "${STORE:-embedded}" != embedded ]; then
  echo "STORE must be embedded or etcd, not ${STORE}" >&2; exit 2
fi
echo 'benchtoken,bench,1000,"system:masters"' > "$W/tokens"
SKIFF_LOG=warn "$SKIFF" server --disable-agent --data-dir "$W/server" --https-listen-port 0 \
  --bind-address 127.0.0.1 --write-kubeconfig "$W/kc" --token-auth-file "$W/tokens" "${DATASTORE_ARGS[@]}" 2>"$W/server.log" &
SPID=$!
PORT=""
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*API on port \([0-9]*\).*/\1/p' "$W/server.log" | head -1)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "server did not start:" >&2; cat "$W/server.log" >&2; exit 1; }
echo '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"bench-"},"data":{"k":"v"}}' > "$W/body"
