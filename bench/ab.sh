#!/usr/bin/env bash
# A/B of two skiff binaries (e.g. before and after a restructuring), interleaved in
# one run, RUNS runs of each: container start (bench/container_start.sh, 20
# iterations a run), pod start (bench/pods.sh, 10 single pods and a 30-replica
# Deployment a run) and API creates measured from outside (bench/api_external.sh,
# 10,000 ConfigMaps a run). Prints every run's figures, the medians over the runs
# and the ratio B/A (for times, lower is better; for creates/s, higher).
# Usage: sudo bench/ab.sh BINARY_A BINARY_B [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
A=$(realpath "$1"); B=$(realpath "$2"); RUNS="${3:-5}"
SKIFF_BENCH=1 bash scripts/deps.sh
OUT=$(mktemp -d /var/tmp/skiff-ab.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
for r in $(seq 1 "$RUNS"); do
  for side in A B; do
    bin=$A; [ "$side" = B ] && bin=$B
    c=$(SKIFF_BIN="$bin" bash bench/container_start.sh 20 | awk '/^skiff run --rm --network none/ {print $(NF-1)}' | tr -d ms)
    p=$(SKIFF_BIN="$bin" bash bench/pods.sh 10)
    p50=$(echo "$p" | sed -n 's/.*p50 \([0-9]*\) ms.*/\1/p')
    dep=$(echo "$p" | sed -n 's/.*Ready: \([0-9.]*\) s.*/\1/p')
    api=$(SKIFF_BIN="$bin" bash bench/api_external.sh 10000 | awk '{print $2}')
    echo "$side container_ms=$c pod_p50_ms=$p50 deploy30_s=$dep creates_per_s=$api" | tee -a "$OUT/runs.txt"
  done
done
python3 - "$OUT/runs.txt" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
keys = ["container_ms", "pod_p50_ms", "deploy30_s", "creates_per_s"]
med = {}
for side in "AB":
    vals = {k: [] for k in keys}
    for r in rows:
        if r[0] == side:
            for kv in r[1:]:
                k, v = kv.split("=")
                vals[k].append(float(v))
    med[side] = {k: statistics.median(v) for k, v in vals.items()}
print(f"{'':16}{'A median':>12}{'B median':>12}{'B/A':>8}")
for k in keys:
    a, b = med["A"][k], med["B"][k]
    print(f"{k:16}{a:>12.2f}{b:>12.2f}{b / a:>8.3f}")
PY
