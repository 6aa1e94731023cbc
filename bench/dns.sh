#!/usr/bin/env bash
# Benchmark (not a test): skiff's DNS server against dnsmasq, the same 1,000 A names
# from a hosts file, side by side in one run, on loopback (issue 13).
#   dnsmasq:            127.0.0.2:53  (--no-resolv --no-hosts --addn-hosts)
#   skiff, 1 UDP worker: 127.0.0.3:53  (skiff __dns-serve --hosts --workers 1)
# Servers on core SERVER_CPU, dnsperf on core CLIENT_CPU (taskset). Three figures:
#  1. max queries/s: dnsperf -c CLIENTS -l DURATION, servers alternating, ROUNDS
#     rounds; with the server's CPU use per query (from /proc/PID/stat). One dnsperf
#     thread on one core runs out before either server does, so also
#  2. max queries/s with each server held to CAP % of a core (a cgroup cpu quota of
#     its own): there the server is the limit;
#  3. latency at half dnsmasq's max of (1): dnsperf -Q RATE -v, p50/p99/max from
#     its per-query lines.
# Usage: sudo bench/dns.sh   (root; installs dnsperf and dnsmasq-base if missing)
# Env: SKIFF_BIN (else this tree is built in release), DURATION (20), ROUNDS (3),
#      CLIENTS (20), CAP (30), SERVER_CPU (0), CLIENT_CPU (1). Medians of an even
#      ROUNDS are the lower middle.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-20}" ROUNDS="${ROUNDS:-3}" CLIENTS="${CLIENTS:-20}" CAP="${CAP:-30}"
SERVER_CPU="${SERVER_CPU:-0}" CLIENT_CPU="${CLIENT_CPU:-1}"
command -v dnsperf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsperf
# dnsmasq-base: the binary without the service that would start on port 53.
command -v dnsmasq >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsmasq-base
if [ -z "${SKIFF_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
  cargo build --release -q -p skiff
fi
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/release/skiff}"

W=$(mktemp -d /var/tmp/skiff-dnsbench.XXXXXX)
PIDS=()
CGROUPS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for c in "${CGROUPS[@]}"; do rmdir "$c" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

for i in $(seq 0 999); do echo "10.77.$((i / 250)).$((i % 250 + 1)) host-$i.bench.test"; done >"$W/hosts"
for i in $(seq 0 999); do echo "host-$i.bench.test A"; done >"$W/queries"

taskset -c "$SERVER_CPU" dnsmasq -k --no-resolv --no-hosts --addn-hosts="$W/hosts" \
  --listen-address=127.0.0.2 --bind-interfaces --port=53 -u root \
  --pid-file="$W/dnsmasq.pid" --log-facility="$W/dnsmasq.log" &
PIDS+=($!)
declare -A PID=([dnsmasq]=$!)
taskset -c "$SERVER_CPU" "$SKIFF" __dns-serve --hosts "$W/hosts" --listen 127.0.0.3:53 \
  --workers 1 2>"$W/skiff.log" &
PIDS+=($!)
PID[skiff]=$!
declare -A ADDR=([dnsmasq]=127.0.0.2 [skiff]=127.0.0.3)
sleep 1
for s in dnsmasq skiff; do
  out=$(dnsperf -s "${ADDR[$s]}" -d "$W/queries" -n 1 2>&1)
  grep -q 'Queries completed: *1000 ' <<<"$out" || { echo "$s does not answer: $out" >&2; exit 1; }
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# run SERVER ARGS...: prints "qps cpu_us_per_query lost"
run() {
  local s=$1; shift
  local t0 out t1
  t0=$(ticks "${PID[$s]}")
  out=$(taskset -c "$CLIENT_CPU" dnsperf -s "${ADDR[$s]}" -d "$W/queries" "$@" 2>&1)
  t1=$(ticks "${PID[$s]}")
  local qps done lost
  qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
  done=$(awk '/Queries completed/ {print $3}' <<<"$out")
  lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
  awk -v q="$qps" -v n="$done" -v t=$((t1 - t0)) -v hz="$HZ" -v l="$lost" \
    'BEGIN {printf "%.0f %.2f %s\n", q, (n > 0 ? t / hz * 1e6 / n : 0), l}'
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A MAX CPUQ CAPPED
for s in dnsmasq skiff; do : >"$W/max.$s"; : >"$W/cpu.$s"; : >"$W/cap.$s"; done
for r in $(seq "$ROUNDS"); do
  for s in dnsmasq skiff; do
    read -r q c l < <(run "$s" -c "$CLIENTS" -l "$DURATION")
    echo "round $r $s: $q q/s, $c µs CPU/query, $l lost"
    echo "$q" >>"$W/max.$s"; echo "$c" >>"$W/cpu.$s"
  done
done
# Each server in a cgroup of its own held to CAP % of one core.
for s in dnsmasq skiff; do
  if [ -d /sys/fs/cgroup/cpu ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
    cg=/sys/fs/cgroup/cpu/skiff-dnsbench-$s-$$
    mkdir "$cg"
    echo 100000 >"$cg/cpu.cfs_period_us"
    echo $((CAP * 1000)) >"$cg/cpu.cfs_quota_us"
    for t in /proc/"${PID[$s]}"/task/*; do echo "${t##*/}" >"$cg/tasks"; done
  else
    cg=/sys/fs/cgroup/skiff-dnsbench-$s-$$
    mkdir "$cg"
    echo "$((CAP * 1000)) 100000" >"$cg/cpu.max"
    echo "${PID[$s]}" >"$cg/cgroup.procs"
  fi
  CGROUPS+=("$cg")
done
for r in $(seq "$ROUNDS"); do
  for s in dnsmasq skiff; do
    read -r q c l < <(run "$s" -c "$CLIENTS" -l "$DURATION")
    echo "round $r $s at $CAP% of a core: $q q/s, $l lost"
    echo "$q" >>"$W/cap.$s"
  done
done
# Back to a whole core for the latency run.
for s in dnsmasq skiff; do
  if [ -d /sys/fs/cgroup/cpu ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
    for t in /proc/"${PID[$s]}"/task/*; do echo "${t##*/}" >/sys/fs/cgroup/cpu/tasks; done
  else
    echo "${PID[$s]}" >/sys/fs/cgroup/cgroup.procs
  fi
done
for s in dnsmasq skiff; do
  MAX[$s]=$(median <"$W/max.$s"); CPUQ[$s]=$(median <"$W/cpu.$s"); CAPPED[$s]=$(median <"$W/cap.$s")
done
RATE=$((MAX[dnsmasq] / 2))
declare -A P50 P99 PMAX LOST
for s in dnsmasq skiff; do
  taskset -c "$CLIENT_CPU" dnsperf -s "${ADDR[$s]}" -d "$W/queries" -c "$CLIENTS" \
    -l "$DURATION" -Q "$RATE" -v >"$W/lat.$s" 2>&1
  awk '/^> / && $NF ~ /^[0-9.]+$/ {print $NF * 1000}' "$W/lat.$s" | sort -n >"$W/ms.$s"
  n=$(wc -l <"$W/ms.$s")
  P50[$s]=$(awk -v n="$n" 'NR == int(n * 0.50) {print; exit}' "$W/ms.$s")
  P99[$s]=$(awk -v n="$n" 'NR == int(n * 0.99) {print; exit}' "$W/ms.$s")
  PMAX[$s]=$(tail -1 "$W/ms.$s")
  LOST[$s]=$(awk '/Queries lost/ {print $3}' "$W/lat.$s")
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "servers on core $SERVER_CPU, dnsperf on core $CLIENT_CPU, $CLIENTS clients, ${DURATION}s runs, medians of $ROUNDS"
printf '| %s | %s | %s | %s | %s |\n' "" "max q/s" "CPU µs/query" "max q/s at $CAP% of a core" "latency at $RATE q/s: p50 / p99 / max (lost)"
printf '|---|---|---|---|---|\n'
for s in dnsmasq skiff; do
  printf '| %s | %s | %s | %s | %s / %s / %s ms (%s) |\n' "$s" "${MAX[$s]}" "${CPUQ[$s]}" "${CAPPED[$s]}" \
    "${P50[$s]}" "${P99[$s]}" "${PMAX[$s]}" "${LOST[$s]}"
done
