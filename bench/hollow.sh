#!/usr/bin/env bash
# Benchmark (not a test): the control plane under simulated nodes (issue 15).
# A `skiff server --disable-agent` (release build, embedded store, its own scratch
# directory, --cluster-cidr 10.64.0.0/11 so that 8,192 nodes fit, --disable
# servicelb,coredns) and, in a second process, `skiff agent --hollow NODES`
# (--hollow-start-delay 1s). Nothing runs on the host and no packet goes anywhere but
# to the server on 127.0.0.1.
#  1. Join: time from the agent's start to every node Ready; the server's and the
#     agent's RSS; the server's CPU while the nodes only renew their Leases (30 s).
#  2. Scheduling, as scheduler_perf measures it (pods made first, unscheduled, then
#     timed from the first bind to the last): the kube-scheduler Lease is handed to
#     a holder that does not exist ("bench", for an hour), so the server's scheduler
#     stands by as a deposed leader does; the Deployments (DEPLOYMENTS of them, PODS
#     pods in all, pause containers with 10m/16Mi requests) are created and their
#     pods made; then the Lease is deleted, the server's scheduler takes it again and
#     places every pod at once on nodes that are all there. The hollow kubelets keep
#     running throughout (they start the pods as they are bound). Throughput is the
#     pods bound over the time from the start of the first scheduling pass that bound
#     any to the end of the last (the scheduler's "scheduling pass" lines: end stamp,
#     duration, pods bound), with the slowest and the median pass of 100 pods or more.
#  3. Time from the Lease's release to every replica ready.
#  4. API latency of single-object reads (GET of one node Lease) while that happens
#     and after: h2load at RPS requests/s over 2 connections for 30 s, with a
#     bearer token; p50 and p99 from its per-request log.
# Usage: sudo bench/hollow.sh   (installs nghttp2-client if h2load is missing)
# Env: SKIFF_BIN (else this tree is built in release), NODES (1000), PODS (10000),
#      DEPLOYMENTS (100), RPS (50).
set -euo pipefail
cd "$(dirname "$0")/.."
NODES="${NODES:-1000}" PODS="${PODS:-10000}" DEPLOYMENTS="${DEPLOYMENTS:-100}" RPS="${RPS:-50}"
command -v h2load >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q nghttp2-client >/dev/null
if [ -z "${SKIFF_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
  cargo build --release -q -p skiff
fi
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/release/skiff}"
W=$(mktemp -d /var/tmp/skiff-hollowbench.XXXXXX)
SPID= APID=
cleanup() {
  set +e
  [ -n "$APID" ] && kill "$APID" 2>/dev/null && wait "$APID" 2>/dev/null
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
echo 'benchtoken,bench,1000,"system:masters"' > "$W/tokens"
SKIFF_LOG=warn,skiff_scheduler=info,skiff_controllers::leader=info "$SKIFF" --root "$W/root" server --disable-agent \
  --data-dir "$W/server" --https-listen-port 0 --bind-address 127.0.0.1 \
  --write-kubeconfig "$W/kc" --token-auth-file "$W/tokens" \
  --cluster-cidr 10.64.0.0/11 --disable servicelb,coredns 2>"$W/server.log" &
SPID=$!
PORT=
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*API on port \([0-9]*\).*/\1/p' "$W/server.log" | head -1)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "server did not start:" >&2; cat "$W/server.log" >&2; exit 1; }
TOKEN=$(grep -o 'K10[^ ]*' "$W/server.log" | head -1)
K() { kubectl --kubeconfig "$W/kc" "$@"; }
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$1/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ready_nodes() { K get nodes -l node.skiff.io/hollow=true --no-headers 2>/dev/null | grep -c ' Ready' || true; }

echo "== $NODES hollow nodes, $PODS pods in $DEPLOYMENTS Deployments"
t0=$(date +%s.%N)
"$SKIFF" --root "$W/aroot" agent --hollow "$NODES" --hollow-start-delay 1s \
  --server "https://127.0.0.1:$PORT" --token "$TOKEN" --data-dir "$W/agent" 2>"$W/agent.log" &
APID=$!
until [ "$(ready_nodes)" -ge "$NODES" ]; do
  kill -0 "$APID" 2>/dev/null || { echo "the hollow agent stopped:" >&2; tail -5 "$W/agent.log" >&2; exit 1; }
  sleep 2
done
t1=$(date +%s.%N)
printf 'join: %d nodes Ready in %.1f s; server RSS %s, hollow agent RSS %s\n' \
  "$NODES" "$(echo "$t1 - $t0" | bc)" "$(rss $SPID)" "$(rss $APID)"
c0=$(cpu $SPID); sleep 30; c1=$(cpu $SPID)
printf 'idle (leases only): server CPU %.1f%% of a core\n' "$(echo "($c1 - $c0) / $(getconf CLK_TCK) / 30 * 100" | bc -l)"

latency() { # $1: label
  rm -f "$W/h2.log"
  h2load -n $((RPS * 30)) -c 2 --rps "$((RPS / 2))" -H 'Authorization: Bearer benchtoken' \
    --log-file "$W/h2.log" "https://127.0.0.1:$PORT/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/hollow-node-0" >/dev/null 2>&1
  # The log: start (µs), status, latency (µs) per request.
  awk '{print $3}' "$W/h2.log" | sort -n | awk -v l="$1" '{a[NR]=$1} END {
    printf "API GET latency %s: p50 %.1f ms, p99 %.1f ms over %d requests\n", l, a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000, NR}'
}
latency "(idle)"

leader_lines() { grep -c "$1 .*lease=kube-system/kube-scheduler" "$W/server.log" || true; }
stopped_before=$(leader_lines 'stopped leading')
K -n kube-system patch lease kube-scheduler --type merge -p "{\"spec\": {\"holderIdentity\": \"bench\",
  \"leaseDurationSeconds\": 3600, \"renewTime\": \"$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)\"}}" >/dev/null
until [ "$(leader_lines 'stopped leading')" -gt "$stopped_before" ]; do sleep 0.5; done
per=$((PODS / DEPLOYMENTS))
for i in $(seq 1 "$DEPLOYMENTS"); do
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: load-$i}
spec:
  replicas: $per
  selector: {matchLabels: {app: load-$i}}
  template:
    metadata: {labels: {app: load-$i}}
    spec:
      containers:
      - name: c
        image: registry.k8s.io/pause:3.10
        resources: {requests: {cpu: 10m, memory: 16Mi}}
---
EOF
done > "$W/deployments.yaml"
K apply -f "$W/deployments.yaml" >/dev/null
sum() { K get deployments -o jsonpath="{range .items[*]}{.status.$1}{\"\\n\"}{end}" | awk '{s+=$1} END {print s+0}'; }
until [ "$(sum replicas)" -ge "$PODS" ]; do sleep 2; done
bound=$(K get pods -A -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | grep -c . || true)
echo "pods made, unscheduled: $(sum replicas) ($bound bound)"
[ "$bound" -eq 0 ] || { echo "pods were bound while the scheduler stood by" >&2; exit 1; }
passes_before=$(grep -c 'scheduling pass' "$W/server.log" || true)
t2=$(date +%s.%N)
K -n kube-system delete lease kube-scheduler >/dev/null
latency "(while $PODS pods are scheduled and started)" &
LPID=$!
until [ "$(sum readyReplicas)" -ge "$PODS" ]; do sleep 2; done
t3=$(date +%s.%N)
wait $LPID
printf 'all %d replicas ready %.1f s after the Lease was released; server RSS %s, hollow agent RSS %s\n' \
  "$PODS" "$(echo "$t3 - $t2" | bc)" "$(rss $SPID)" "$(rss $APID)"
# Scheduler throughput from the scheduling passes' own lines: each says when it ended,
# how long it took and how many pods it bound.
grep 'scheduling pass' "$W/server.log" | tail -n +"$((passes_before + 1))" |
  python3 -c '
import sys, re, datetime
passes = []
for l in sys.stdin:
    m = re.match(r"(\S+)Z .*bound=(\d+).*took_ms=([0-9.]+)", l)
    if m:
        end = datetime.datetime.fromisoformat(m.group(1)).timestamp()
        passes.append((end - float(m.group(3)) / 1000, end, int(m.group(2))))
if not passes:
    print("scheduler: no scheduling pass logged"); sys.exit()
n = sum(p[2] for p in passes)
span = passes[-1][1] - passes[0][0]
rates = sorted(p[2] / max(p[1] - p[0], 1e-6) for p in passes if p[2] >= 100)
med = rates[len(rates) // 2] if rates else 0
print(f"scheduler: {n} pods bound in {len(passes)} passes over {span:.2f} s = {n / span:.0f} pods/s (first pass start to last pass end); passes of 100 pods or more: slowest {rates[0] if rates else 0:.0f}, median {med:.0f} pods/s")
'
latency "(steady, $PODS pods)"
printf 'server VmHWM %s\n' "$(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$SPID/status)"
