#!/usr/bin/env bash
# Pod start benchmark on a single-node `skiff server` (root): time from creating a
# 30-replica Deployment to all 30 pods Ready, and single-pod startup latency
# (creation to Ready, image present) over N pods created one at a time, measured
# by polling the API directly every 10 ms. Kubernetes' SLO: p99 <= 5 s.
# Usage: bench/pods.sh [single-pod count]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
# SKIFF_BIN: measure that binary instead of building this tree's (bench/ab.sh).
[ -n "${SKIFF_BIN:-}" ] || cargo build --release -q -p skiff
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/release/skiff}"
W=$(mktemp -d /var/tmp/skiff-podbench.XXXXXX)
export SKIFF_FILTER_TABLE=skpodbench SKIFF_BRIDGE=skpodbench0 SKIFF_BRIDGE_CIDR=10.231.1.0/24
cleanup() {
  set +e
  [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  for f in "$W"/root/pods/*/running.json; do
    [ -f "$f" ] && kill -9 "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sandbox"]["pid"])' "$f")" 2>/dev/null
  done
  "$SKIFF" --root "$W/root" ps -aq 2>/dev/null | xargs -r "$SKIFF" --root "$W/root" rm -f >/dev/null 2>&1
  for d in /sys/fs/cgroup/*/kubepods/pod* /sys/fs/cgroup/memory/*/*/kubepods/pod*; do rmdir "$d" 2>/dev/null; done
  ip link del skpodbench1 2>/dev/null; nft delete table ip skpodbench_pods 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
RF="$W/rootfs"; mkdir -p "$RF"/{bin,etc,tmp,proc,sys,dev}
cp /bin/busybox "$RF/bin/"; for a in $("$RF/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$RF/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$RF/etc/passwd"; echo 'root:x:0:' > "$RF/etc/group"
tar -C "$RF" -cf "$W/rootfs.tar" .
"$SKIFF" --root "$W/root" import "$W/rootfs.tar" busybox:latest >/dev/null
"$SKIFF" --root "$W/root" server --data-dir "$W/server" --https-listen-port 0 --bind-address 127.0.0.1 \
  --write-kubeconfig "$W/kc" --pod-bridge skpodbench1 --cluster-cidr 10.232.0.0/16 --node-name bench \
  --eviction-hard "memory.available<10Mi,nodefs.available<1%,imagefs.available<1%" \
  --image-gc-high-threshold 100 --image-gc-low-threshold 99 2>"$W/server.log" &
SPID=$!
for _ in $(seq 1 100); do [ -f "$W/kc" ] && grep -q "API on port" "$W/server.log" && break; sleep 0.1; done
python3 - "$W" "$N" <<'PY'
import base64, json, ssl, statistics, sys, time, urllib.request, os
w, n = sys.argv[1], int(sys.argv[2])
import re
kc = open(f"{w}/kc").read()
def field(name):
    return re.search(rf"{name}: (\S+)", kc).group(1)
server = field("server")
for name, key in (("ca", "certificate-authority-data"), ("cert", "client-certificate-data"), ("key", "client-key-data")):
    open(f"{w}/{name}.pem", "wb").write(base64.b64decode(field(key)))
ctx = ssl.create_default_context(cafile=f"{w}/ca.pem")
ctx.load_cert_chain(f"{w}/cert.pem", f"{w}/key.pem")
def call(method, path, body=None):
    req = urllib.request.Request(server + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx) as r:
        return json.loads(r.read() or b"{}")
def wait(pred, limit=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if pred():
            return True
        time.sleep(0.01)
    return False
assert wait(lambda: any(c["type"] == "Ready" and c["status"] == "True"
                        for n in call("GET", "/api/v1/nodes")["items"] for c in n["status"].get("conditions", []))), "node not Ready"
def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
spec = {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}
# Single pods, one at a time.
lat = []
for i in range(n):
    t0 = time.monotonic()
    call("POST", "/api/v1/namespaces/default/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"single-{i}"}, "spec": spec})
    assert wait(lambda: ready(call("GET", f"/api/v1/namespaces/default/pods/single-{i}"))), f"single-{i} never Ready"
    lat.append(time.monotonic() - t0)
for i in range(n):
    call("DELETE", f"/api/v1/namespaces/default/pods/single-{i}")
wait(lambda: not call("GET", "/api/v1/namespaces/default/pods")["items"], 120)
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"single-pod startup (creation to Ready, {n} pods): p50 {statistics.median(lat)*1000:.0f} ms, p99 {p(0.99)*1000:.0f} ms, max {lat[-1]*1000:.0f} ms")
# A 30-replica Deployment.
t0 = time.monotonic()
call("POST", "/apis/apps/v1/namespaces/default/deployments", {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "thirty"}, "spec": {"replicas": 30, "selector": {"matchLabels": {"app": "thirty"}},
     "template": {"metadata": {"labels": {"app": "thirty"}}, "spec": spec}}})
ok = wait(lambda: call("GET", "/apis/apps/v1/namespaces/default/deployments/thirty").get("status", {}).get("readyReplicas", 0) >= 30, 300)
el = time.monotonic() - t0
print(f"30-replica Deployment, apply to 30/30 Ready: {el:.2f} s" + ("" if ok else " (NOT all ready)"))
call("DELETE", "/apis/apps/v1/namespaces/default/deployments/thirty")
wait(lambda: not call("GET", "/api/v1/namespaces/default/pods")["items"], 180)
PY
