#!/usr/bin/env bash
# Benchmark: container start-to-exit latency of
#   skiff run --rm --network none busybox /bin/true
# against runc run of the same busybox rootfs with runc's default config (which
# also gives the container a bare network namespace), interleaved in one run, plus
# skiff on the default bridge. Prints medians, p90s and the median ratio.
# Usage: bench/container_start.sh [iterations]   (root; builds skiff in release)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-40}"
SKIFF_BENCH=1 bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
# SKIFF_BIN: measure that binary instead of building this tree's (bench/ab.sh).
[ -n "${SKIFF_BIN:-}" ] || cargo build --release -q -p skiff
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/release/skiff}"
W=$(mktemp -d /var/tmp/skiff-bench.XXXXXX)
ROOT="$W/root"
cleanup() {
  set +e
  "$SKIFF" --root "$ROOT" ps -aq 2>/dev/null | xargs -r "$SKIFF" --root "$ROOT" rm -f >/dev/null 2>&1 || true
  ip link del skbench0 2>/dev/null || true
  nft delete table ip skbench 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
export SKIFF_BRIDGE=skbench0 SKIFF_BRIDGE_CIDR=10.231.0.0/24 SKIFF_FILTER_TABLE=skbench

# One busybox rootfs for both.
RF="$W/bundle/rootfs"
. bench/busybox.lib.sh
busybox_rootfs "$RF" "$W/rootfs.tar"
"$SKIFF" --root "$ROOT" import "$W/rootfs.tar" busybox:latest >/dev/null
(cd "$W/bundle" && runc spec && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open("config.json", "w"))
PY
)
# Warm up both.
"$SKIFF" --root "$ROOT" run --rm --network none busybox /bin/true
runc --root "$W/runc" run --bundle "$W/bundle" warm >/dev/null
"$SKIFF" --root "$ROOT" run --rm busybox /bin/true

ns() { date +%s%N; }
: > "$W/skiff.txt"; : > "$W/runc.txt"; : > "$W/bridge.txt"
for i in $(seq 1 "$N"); do
  t0=$(ns); "$SKIFF" --root "$ROOT" run --rm --network none busybox /bin/true; t1=$(ns)
  echo $(( (t1 - t0) / 1000 )) >> "$W/skiff.txt"
  t0=$(ns); runc --root "$W/runc" run --bundle "$W/bundle" "b$i" >/dev/null; t1=$(ns)
  echo $(( (t1 - t0) / 1000 )) >> "$W/runc.txt"
  t0=$(ns); "$SKIFF" --root "$ROOT" run --rm busybox /bin/true; t1=$(ns)
  echo $(( (t1 - t0) / 1000 )) >> "$W/bridge.txt"
done
python3 - "$W" "$N" <<'PY'
import sys, statistics
w, n = sys.argv[1], sys.argv[2]
def load(f): return sorted(int(x) / 1000 for x in open(f"{w}/{f}.txt"))
def p(v, q): return v[min(len(v) - 1, int(q * len(v)))]
s, r, b = load("skiff"), load("runc"), load("bridge")
print(f"iterations: {n}")
print(f"{'':34}{'median':>10}{'p90':>10}")
print(f"{'skiff run --rm --network none':34}{statistics.median(s):>8.1f}ms{p(s,.9):>8.1f}ms")
print(f"{'runc run (default config)':34}{statistics.median(r):>8.1f}ms{p(r,.9):>8.1f}ms")
print(f"{'skiff run --rm (default bridge)':34}{statistics.median(b):>8.1f}ms{p(b,.9):>8.1f}ms")
print(f"median ratio skiff/runc: {statistics.median(s) / statistics.median(r):.2f}")
PY
