# Sourced by the API benchmarks (api_external.sh, api_curve.sh): builds skiff unless
# SKIFF_BIN names a binary, then starts `skiff server --disable-agent` on the embedded
# store in a scratch directory with a bearer token (`benchtoken`, system:masters), and
# removes it all on exit. Sets SKIFF, W (the scratch directory), SPID (the server's
# pid), PORT (its API port) and writes "$W/body", a small ConfigMap to create.
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
