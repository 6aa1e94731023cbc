#!/usr/bin/env bash
# Benchmark: the Docker Engine API of `skiff system service`, side by side with skiff's
# own CLI in one run, from outside the service process.
#  1. `docker run --rm` as raw API calls from a minimal client (create with AutoRemove,
#     attach over a hijacked connection, wait for removal, start, read to the end),
#     one persistent Python process, against `skiff run --rm` (a process each);
#  2. the real docker CLI's `docker run --rm` through the socket;
#  3. with 100 running containers: `docker ps` against `skiff ps`, and
#     `GET /containers/json` calls/s from the minimal client; the service's RSS.
# The peer: podman's `system service` (Debian's 4.3.1, installed if missing) on its own
# storage, driven by the same client and the same docker CLI.
# Usage: bench/docker_api.sh [iterations]   (root; builds skiff in release)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-30}"
SKIFF_BENCH=1 bash scripts/deps.sh
command -v podman >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman >/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
[ -n "${SKIFF_BIN:-}" ] || cargo build --release -q -p skiff
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/release/skiff}"
DOCKER=$(command -v /usr/local/bin/docker || command -v docker)
W=$(mktemp -d /var/tmp/skiff-bench.XXXXXX)
ROOT="$W/root"
SOCK="$W/docker.sock"
SVC=""
PSVC=""
PSOCK="$W/podman.sock"
# podman gives its containers open-files and process limits above this host's hard
# limits (and then cannot start them): its containers get this host's limits
# (containers.conf). Where podman still cannot start a container, its rows say why.
cat > "$W/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Sn):$(ulimit -Hn)", "nproc=$(ulimit -Su):$(ulimit -Hu)"]
CONF
export CONTAINERS_CONF="$W/containers.conf"
POD=(podman --root "$W/proot" --runroot "$W/prun" --storage-driver overlay)
cleanup() {
  set +e
  [ -n "$SVC" ] && kill "$SVC" 2>/dev/null && wait "$SVC" 2>/dev/null
  [ -n "$PSVC" ] && kill "$PSVC" 2>/dev/null && wait "$PSVC" 2>/dev/null
  "${POD[@]}" rm -af -t 0 >/dev/null 2>&1
  "${POD[@]}" system reset -f >/dev/null 2>&1
  "$SKIFF" --root "$ROOT" ps -aq 2>/dev/null | xargs -r "$SKIFF" --root "$ROOT" rm -f >/dev/null 2>&1 || true
  ip link del skbapi0 2>/dev/null || true
  nft delete table ip skbapi 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
export SKIFF_BRIDGE=skbapi0 SKIFF_BRIDGE_CIDR=10.231.1.0/24 SKIFF_FILTER_TABLE=skbapi

RF="$W/rootfs"
. bench/busybox.lib.sh
busybox_rootfs "$RF" "$W/rootfs.tar"
"$SKIFF" --root "$ROOT" import "$W/rootfs.tar" busybox:latest >/dev/null
"${POD[@]}" import "$W/rootfs.tar" busybox:latest >/dev/null
"${POD[@]}" system service --time 0 "unix://$PSOCK" 2>"$W/podman.log" &
PSVC=$!

"$SKIFF" --root "$ROOT" system service --time 0 "unix://$SOCK" 2>"$W/service.log" &
SVC=$!
for _ in $(seq 1 100); do [ -S "$SOCK" ] && [ -S "$PSOCK" ] && break; sleep 0.1; done
PODMAN=1
if ! why=$("${POD[@]}" run --rm --network none busybox /bin/true 2>&1); then
  PODMAN=0
  echo "podman $(podman --version | cut -d' ' -f3) cannot start a container on this host, so its rows are left out: $why"
fi
export DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$W/dockercfg"

cat > "$W/client.py" <<'PY'
import json, socket, sys, threading, time

SOCK = sys.argv[1]

def call(method, path, body=None, hijack=False):
    s = socket.socket(socket.AF_UNIX)
    s.connect(SOCK)
    data = b"" if body is None else json.dumps(body).encode()
    # 1.41: the newest both servers speak (podman 4.3's).
    head = f"{method} /v1.41{path} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    head += "Connection: Upgrade\r\nUpgrade: tcp\r\n" if hijack else "Connection: close\r\n"
    s.sendall(head.encode() + b"\r\n" + data)
    if hijack:
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        return s, buf.split(b"\r\n\r\n", 1)[1]
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        body, chunks = b"", rest
        while chunks:
            n, _, chunks = chunks.partition(b"\r\n")
            n = int(n, 16)
            if n == 0:
                break
            body += chunks[:n]
            chunks = chunks[n + 2:]
        rest = body
    return int(head[9:12]), rest

def run_rm():
    st, b = call("POST", "/containers/create", {"Image": "busybox", "Cmd": ["/bin/true"],
                 "AttachStdout": True, "AttachStderr": True,
                 "HostConfig": {"AutoRemove": True, "NetworkMode": "none"}})
    assert st == 201, b
    cid = json.loads(b)["Id"]
    s, early = call("POST", f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1", hijack=True)
    res = {}
    def waiter():
        res["wait"] = call("POST", f"/containers/{cid}/wait?condition=removed")
    t = threading.Thread(target=waiter)
    t.start()
    st, b = call("POST", f"/containers/{cid}/start")
    assert st == 204, b
    while s.recv(65536):
        pass
    s.close()
    t.join()
    assert b'"StatusCode":0' in res["wait"][1], res

mode = sys.argv[2]
if mode == "run":
    n = int(sys.argv[3])
    run_rm()  # warm
    for _ in range(n):
        t0 = time.monotonic_ns()
        run_rm()
        print((time.monotonic_ns() - t0) // 1000)
elif mode == "list":
    secs = float(sys.argv[3])
    end, n = time.monotonic() + secs, 0
    while time.monotonic() < end:
        st, b = call("GET", "/containers/json")
        assert st == 200
        n += 1
    print(f"{n / secs:.1f}")
PY

ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; p=a[int(NR*0.9+0.5)]; printf "%.1f %.1f\n", m/1000, p/1000}'; }

echo "== docker run --rm (${N} runs each, ms: median p90)"
python3 "$W/client.py" "$SOCK" run "$N" > "$W/raw.txt" || { echo "the minimal client failed; the service said:"; cat "$W/service.log"; exit 1; }
[ "$PODMAN" = 0 ] || python3 "$W/client.py" "$PSOCK" run "$N" > "$W/praw.txt" || { echo "the minimal client failed against podman:"; cat "$W/podman.log"; exit 1; }
: > "$W/cli.txt"; : > "$W/docker.txt"; : > "$W/pdocker.txt"
"$SKIFF" --root "$ROOT" run --rm --network none busybox /bin/true
"$DOCKER" run --rm --network none busybox /bin/true
[ "$PODMAN" = 0 ] || DOCKER_HOST="unix://$PSOCK" "$DOCKER" run --rm --network none busybox /bin/true
for _ in $(seq 1 "$N"); do
  t0=$(ns); "$SKIFF" --root "$ROOT" run --rm --network none busybox /bin/true; t1=$(ns)
  echo $(( (t1 - t0) / 1000 )) >> "$W/cli.txt"
  t0=$(ns); "$DOCKER" run --rm --network none busybox /bin/true; t1=$(ns)
  echo $(( (t1 - t0) / 1000 )) >> "$W/docker.txt"
  if [ "$PODMAN" = 1 ]; then
    t0=$(ns); DOCKER_HOST="unix://$PSOCK" "$DOCKER" run --rm --network none busybox /bin/true; t1=$(ns)
    echo $(( (t1 - t0) / 1000 )) >> "$W/pdocker.txt"
  fi
done
row() { read -r m p < <(median < "$2"); printf "  %-44s %8s %8s\n" "$1" "$m" "$p"; }
row "raw API sequence, skiff service" "$W/raw.txt"
[ "$PODMAN" = 0 ] || row "raw API sequence, podman service" "$W/praw.txt"
row "skiff run --rm" "$W/cli.txt"
row "docker CLI run --rm, skiff service" "$W/docker.txt"
[ "$PODMAN" = 0 ] || row "docker CLI run --rm, podman service" "$W/pdocker.txt"
read -r raw_m _ < <(median < "$W/raw.txt")
read -r cli_m _ < <(median < "$W/cli.txt")
awk -v a="$raw_m" -v b="$cli_m" 'BEGIN { printf "  raw API (skiff) / skiff run --rm, medians: %.2fx\n", a / b }'

echo "== 100 running containers (ms: median p90)"
for i in $(seq 1 100); do
  "$SKIFF" --root "$ROOT" run -d --network none --name "c$i" busybox sleep 3600 >/dev/null
  [ "$PODMAN" = 0 ] || "${POD[@]}" run -d --network none --name "c$i" busybox sleep 3600 >/dev/null
done
: > "$W/dps.txt"; : > "$W/sps.txt"; : > "$W/pps.txt"
for _ in $(seq 1 "$N"); do
  t0=$(ns); "$DOCKER" ps >/dev/null; t1=$(ns); echo $(( (t1 - t0) / 1000 )) >> "$W/dps.txt"
  if [ "$PODMAN" = 1 ]; then
    t0=$(ns); DOCKER_HOST="unix://$PSOCK" "$DOCKER" ps >/dev/null; t1=$(ns); echo $(( (t1 - t0) / 1000 )) >> "$W/pps.txt"
  fi
  t0=$(ns); "$SKIFF" --root "$ROOT" ps >/dev/null; t1=$(ns); echo $(( (t1 - t0) / 1000 )) >> "$W/sps.txt"
done
row "docker ps, skiff service" "$W/dps.txt"
[ "$PODMAN" = 0 ] || row "docker ps, podman service" "$W/pps.txt"
row "skiff ps" "$W/sps.txt"
echo "  GET /containers/json, one client, 5 s: skiff $(python3 "$W/client.py" "$SOCK" list 5) calls/s"
[ "$PODMAN" = 0 ] || echo "  GET /containers/json, one client, 5 s: podman $(python3 "$W/client.py" "$PSOCK" list 5) calls/s"
rss() { awk '/VmRSS/ {print $2, $3}' "/proc/$1/status"; }
echo "  service RSS: skiff $(rss "$SVC") ($(ls /proc/$SVC/task | wc -l) threads), podman $(rss "$PSVC") ($(ls /proc/$PSVC/task | wc -l) threads, $( [ "$PODMAN" = 1 ] && echo "100 containers" || echo "no containers"))"
