#!/usr/bin/env bash
# Benchmark (not a test): Services through skiff's service proxy (issue 13).
# A single-node `skiff server` (release build) with its own root, nftables table
# (sksvcbench), service range (10.97.0.0/16), node ports, `--flannel-backend none`
# and `--disable servicelb,coredns`; the backends live in a network namespace of
# the script's own (sksvcb), joined to the host by a veth pair (10.213.255.1/30 on
# the host, .2 inside), where every address of 10.213.0.0/17 is local (an AnyIP
# route), so one TCP listener (python3, port 8080) answers them all, and busybox
# httpd (port 8081) serves HTTP (the Service's endpoint 10.213.127.1; measured
# directly at 10.213.127.2, the same server, so that the two paths' connections,
# masqueraded or not, never meet in the server's TIME_WAIT table). Traffic only ever goes to that namespace, and to a
# ClusterIP only once `nft list chain ip sksvcbench cluster-ips-check` shows the
# reject rule covering the whole service range.
#  1. Programming latency: selectorless Services (port 80 -> 8080) with one
#     EndpointSlice each (10 ready IPv4 endpoints, managed-by bench.skiff.dev),
#     written over the API by a separate python3 process (keep-alive HTTPS). At
#     SIZES Services present it writes SAMPLES more, one at a time, and times each
#     from just before the Service's create until a TCP connection to its ClusterIP
#     (from the host, by that process) succeeds; then it fills up to the next size
#     (FILL_THREADS writers). With the server's VmRSS/VmHWM at each size.
#  2. Full sync: the server stopped, its table deleted, started again with every
#     Service present; times from the exec to the range's reject rule, and to the
#     first successful connection to the last Service written; then every
#     Service's ClusterIP once.
#  3. New connections/s: `ab -n AB_N -c AB_C` without keep-alive to busybox httpd
#     through a ClusterIP and straight to the backend, interleaved, AB_ROUNDS
#     rounds each, medians.
# Usage: sudo bench/services.sh   (root; installs apache2-utils if `ab` is missing)
# Env: SKIFF_BIN (else this tree is built in release), SIZES ("0 100 250 500
#      1000"), SAMPLES (100), FILL_THREADS (4), AB_N (5000), AB_C (16),
#      AB_ROUNDS (7), KEEP_LOGS (a directory the server's logs are copied to; with
#      SKIFF_LOG=info,skiff_network=debug they time each service sync). Medians of
#      an even count are the lower middle.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES="${SIZES:-0 100 250 500 1000}" SAMPLES="${SAMPLES:-100}" FILL_THREADS="${FILL_THREADS:-4}"
AB_N="${AB_N:-5000}" AB_C="${AB_C:-16}" AB_ROUNDS="${AB_ROUNDS:-7}"
command -v ab >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q apache2-utils
BUSYBOX=$(command -v busybox) || { echo "busybox is needed (scripts/deps.sh)" >&2; exit 1; }
if [ -z "${SKIFF_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
  cargo build --release -q -p skiff
fi
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/release/skiff}"

NS=sksvcb TABLE=sksvcbench SVC_CIDR=10.97.0.0/16 EP_RANGE=10.213.0.0/17
export SKIFF_FILTER_TABLE=sksvcb SKIFF_BRIDGE=sksvcbr0 SKIFF_BRIDGE_CIDR=10.233.1.0/24
for t in "$TABLE" sksvcb sksvcb_pods; do
  if nft list table ip "$t" >/dev/null 2>&1; then echo "nft table $t exists already" >&2; exit 1; fi
done
if ip netns list | grep -qw "$NS"; then echo "netns $NS exists already" >&2; exit 1; fi
# The tests use 10.213.250.0-10.213.254.255; these ranges must be nobody's.
for r in "$EP_RANGE" 10.213.255.0/30 10.214.0.0/16 10.233.1.0/24 "$SVC_CIDR"; do
  if [ -n "$(ip -4 route show root "$r")" ]; then echo "the host routes within $r already" >&2; exit 1; fi
done
W=$(mktemp -d /var/tmp/skiff-svcbench.XXXXXX)
SPID=
cleanup() {
  set +e
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
  ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null
  sleep 0.2
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns del "$NS" 2>/dev/null
  ip link del sksvcv0 2>/dev/null
  ip route del "$EP_RANGE" 2>/dev/null
  for t in "$TABLE" sksvcb sksvcb_pods; do nft delete table ip "$t" 2>/dev/null; done
  ip link del sksvcbr0 2>/dev/null; ip link del sksvcbr1 2>/dev/null
  [ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$W"/server*.log "$KEEP_LOGS"/
  rm -rf "$W"
}
trap cleanup EXIT

# The backends' namespace.
ip netns add "$NS"
ip link add sksvcv0 type veth peer name eth0 netns "$NS"
ip addr add 10.213.255.1/30 dev sksvcv0
ip link set sksvcv0 up
ip -n "$NS" addr add 10.213.255.2/30 dev eth0
ip -n "$NS" link set lo up
ip -n "$NS" link set eth0 up
ip -n "$NS" route add default via 10.213.255.1
ip -n "$NS" route add local "$EP_RANGE" dev lo
ip route add "$EP_RANGE" via 10.213.255.2 dev sksvcv0
# The backends keep no TIME_WAIT. With one client address, the ClusterIP path's
# masquerade (fully random ports) soon picks a port the backend still holds in
# TIME_WAIT from an earlier connection, and PAWS refuses the SYN: it waits a second
# for its retransmit. That measures the single client, not the proxy (ClusterIP
# rounds fell from ~4,000 to ~860/s while the namespace's TcpExtPAWSTimewait rose,
# in the ClusterIP rounds only), so both paths go without.
ip netns exec "$NS" sysctl -qw net.ipv4.tcp_max_tw_buckets=0
ip netns exec "$NS" python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(4096)
while True:
    c, _ = s.accept()
    c.close()
' &
mkdir -p "$W/www" && echo "hello from the backend" >"$W/www/index.html"
ip netns exec "$NS" "$BUSYBOX" httpd -f -p 8081 -h "$W/www" &
sleep 0.3
curl -sf -m 2 http://10.213.127.1:8081/ >/dev/null || { echo "the backend does not answer" >&2; exit 1; }

start_server() { # LOG
  "$SKIFF" --root "$W/root" server --data-dir "$W/server" --https-listen-port 0 \
    --bind-address 127.0.0.1 --write-kubeconfig "$W/kc" --node-name svcbench --kubelet-port 0 \
    --pod-bridge sksvcbr1 --cluster-cidr 10.214.0.0/16 --service-cidr "$SVC_CIDR" \
    --nftables-table "$TABLE" --flannel-backend none --service-node-port-range 31940-31949 \
    --disable servicelb,coredns \
    --eviction-hard "memory.available<10Mi,nodefs.available<1%,imagefs.available<1%" \
    2>"$W/$1" &
  SPID=$!
  for _ in $(seq 1 200); do [ -f "$W/kc" ] && grep -q "API on port" "$W/$1" && return; sleep 0.05; done
  echo "the server did not start: $(tail -5 "$W/$1")" >&2; exit 1
}

cat >"$W/load.py" <<'PY'
"""The load side: API writes, probes through ClusterIPs, the server's memory."""
import base64, http.client, ipaddress, json, re, socket, ssl, subprocess, sys, threading, time

W, MODE = sys.argv[1], sys.argv[2]
TABLE, SVC_CIDR = "sksvcbench", "10.97.0.0/16"
RANGE = ipaddress.ip_network(SVC_CIDR)

def covered():
    """Whether the node's rules reject the whole service range (the safety rule)."""
    o = subprocess.run(["nft", "list", "chain", "ip", TABLE, "cluster-ips-check"],
                       capture_output=True, text=True)
    return f"ip daddr {SVC_CIDR} goto reject-chain" in o.stdout

def connect(ip, port, timeout=0.2):
    assert ipaddress.ip_address(ip) in RANGE or ip.startswith("10.213."), ip
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()

def probe_until(ip, port, limit=60):
    t0 = time.monotonic()
    while not connect(ip, port):
        if time.monotonic() - t0 > limit:
            raise SystemExit(f"{ip}:{port} never answered")
        time.sleep(0.001)
    return time.time()

def memory(pid):
    st = open(f"/proc/{pid}/status").read()
    get = lambda k: int(re.search(rf"{k}:\s+(\d+) kB", st).group(1)) // 1024
    return get("VmRSS"), get("VmHWM")

def credentials():
    """The API's address and a TLS context from the admin kubeconfig."""
    kc = open(f"{W}/kc").read()
    field = lambda n: re.search(rf"{n}: (\S+)", kc).group(1)
    m = re.match(r"https://([^:/]+):(\d+)", field("server"))
    for name, key in (("ca", "certificate-authority-data"), ("cert", "client-certificate-data"),
                      ("key", "client-key-data")):
        open(f"{W}/{name}.pem", "wb").write(base64.b64decode(field(key)))
    ctx = ssl.create_default_context(cafile=f"{W}/ca.pem")
    ctx.load_cert_chain(f"{W}/cert.pem", f"{W}/key.pem")
    return m.group(1), int(m.group(2)), ctx

CREDS = None

class Api:
    def __init__(self):
        global CREDS
        if CREDS is None:
            CREDS = credentials()
        self.host, self.port, self.ctx = CREDS
        self.conn = None

    def call(self, method, path, body=None):
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx)
            try:
                self.conn.request(method, path, body=json.dumps(body) if body else None,
                                  headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if r.status >= 300:
                raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
            return json.loads(data or b"{}")

def endpoints(i):
    out = []
    for j in range(10):
        k = i * 10 + j
        out.append(f"10.213.{k // 250}.{k % 250 + 1}")
    return out

def create(api, i):
    """Service svc-i and its slice; the ClusterIP."""
    svc = api.call("POST", "/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
    api.call("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"svc-{i}-bench", "labels": {
            "kubernetes.io/service-name": f"svc-{i}",
            "endpointslice.kubernetes.io/managed-by": "bench.skiff.dev"}},
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in endpoints(i)]})
    return svc["spec"]["clusterIP"]

def pct(xs, q):
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, -(-int(q * 100) * len(xs) // 100) - 1))]

def grow(pid, sizes, samples, threads):
    api = Api()
    t0 = time.monotonic()
    while not covered():
        assert time.monotonic() - t0 < 60, "the service range is never covered"
        time.sleep(0.05)
    node_ready = lambda: any(c["type"] == "Ready" and c["status"] == "True"
                             for n in api.call("GET", "/api/v1/nodes")["items"]
                             for c in n.get("status", {}).get("conditions", []))
    while not node_ready():
        assert time.monotonic() - t0 < 60, "the node is never Ready"
        time.sleep(0.1)
    ips, n, rows = {}, 0, []
    for size in sizes:
        # Fill to `size` with several writers, then wait for the last one to work.
        todo = list(range(n, size))
        lock = threading.Lock()
        def writer():
            a = Api()
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop(0)
                ip = create(a, i)
                with lock:
                    ips[i] = ip
        ws = [threading.Thread(target=writer) for _ in range(threads)]
        fill0 = time.monotonic()
        for t in ws: t.start()
        for t in ws: t.join()
        if size > n:
            probe_until(ips[size - 1], 80)
            print(f"filled {n} -> {size} Services in {time.monotonic() - fill0:.1f} s", flush=True)
        n = max(n, size)
        time.sleep(1)
        rss0, _ = memory(pid)
        lat = []
        for _ in range(samples):
            assert covered()
            t = time.time()
            ip = create(api, n)
            ips[n] = ip
            lat.append((probe_until(ip, 80) - t) * 1000)
            n += 1
        rss, hwm = memory(pid)
        row = {"size": size, "p50": pct(lat, 0.50), "p99": pct(lat, 0.99), "max": max(lat),
               "rss": rss0, "hwm": hwm}
        rows.append(row)
        t = time.monotonic()
        subprocess.run(["nft", "list", "table", "ip", TABLE], capture_output=True, check=True)
        row["nft_list_ms"] = (time.monotonic() - t) * 1000
        print(f"{size} Services present: nft list table {row['nft_list_ms']:.0f} ms; p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, "
              f"max {row['max']:.1f} ms over {samples}; VmRSS {rss0} MiB, VmHWM {hwm} MiB", flush=True)
    json.dump({"ips": ips, "rows": rows, "total": n}, open(f"{W}/grow.json", "w"))

def full_sync(pid, started):
    g = json.load(open(f"{W}/grow.json"))
    ips = {int(k): v for k, v in g["ips"].items()}
    while not covered():
        assert time.time() - started < 120, "the service range is never covered"
        time.sleep(0.005)
    skeleton = time.time()
    last = ips[max(ips)]
    done = probe_until(last, 80, limit=120)
    rss, hwm = memory(pid)
    ok = sum(connect(ip, 80, 1.0) for ip in ips.values())
    json.dump({"skeleton": skeleton - started, "full": done - started, "services": len(ips),
               "answered": ok, "rss": rss, "hwm": hwm}, open(f"{W}/sync.json", "w"))
    print(f"restart with {len(ips)} Services: range covered after {skeleton - started:.2f} s, "
          f"the last Service answers after {done - started:.2f} s; {ok}/{len(ips)} answer; "
          f"VmRSS {rss} MiB, VmHWM {hwm} MiB", flush=True)

def web(pid):
    api = Api()
    svc = api.call("POST", "/api/v1/namespaces/default/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80, "targetPort": 8081, "protocol": "TCP"}]}})
    api.call("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-bench", "labels": {
            "kubernetes.io/service-name": "web",
            "endpointslice.kubernetes.io/managed-by": "bench.skiff.dev"}},
        "addressType": "IPv4", "ports": [{"name": "", "port": 8081, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.213.127.1"], "conditions": {"ready": True}}]})
    ip = svc["spec"]["clusterIP"]
    assert covered()
    probe_until(ip, 80)
    print(ip)

if MODE == "grow":
    grow(int(sys.argv[3]), [int(s) for s in sys.argv[4].split()], int(sys.argv[5]), int(sys.argv[6]))
elif MODE == "sync":
    full_sync(int(sys.argv[3]), float(sys.argv[4]))
elif MODE == "web":
    web(int(sys.argv[3]))
PY

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start_server server.log
python3 "$W/load.py" "$W" grow "$SPID" "$SIZES" "$SAMPLES" "$FILL_THREADS"

# Full sync: stop, forget the rules, start again.
kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=
nft delete table ip "$TABLE"
rm -f "$W/kc"
STARTED=$(date +%s.%N)
start_server server2.log
python3 "$W/load.py" "$W" sync "$SPID" "$STARTED"

# New connections per second: ClusterIP against the backend itself.
CIP=$(python3 "$W/load.py" "$W" web "$SPID")
ab_rate() {
  local out
  out=$(ab -q -n "$AB_N" -c "$AB_C" "$1" 2>&1)
  grep -q '^Failed requests: *0$' <<<"$out" || { echo "ab $1: $out" >&2; exit 1; }
  awk '/Requests per second/ {print $4}' <<<"$out"
}
: >"$W/ab.cip"; : >"$W/ab.direct"
for r in $(seq "$AB_ROUNDS"); do
  c=$(ab_rate "http://$CIP/"); echo "$c" >>"$W/ab.cip"
  d=$(ab_rate "http://10.213.127.2:8081/"); echo "$d" >>"$W/ab.direct"
  echo "round $r: ClusterIP $c/s, direct $d/s"
done
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
CM=$(median <"$W/ab.cip") DM=$(median <"$W/ab.direct")
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$W" "$SAMPLES" <<'PY'
import json, sys
w, samples = sys.argv[1], sys.argv[2]
g, s = json.load(open(f"{w}/grow.json")), json.load(open(f"{w}/sync.json"))
print(f"| Services present | write to first connection p50 / p99 (of {samples}) | VmRSS / VmHWM |")
print("|---|---|---|")
for r in g["rows"]:
    print(f"| {r['size']:,} | {r['p50']:.1f} / {r['p99']:.1f} ms | {r['rss']} / {r['hwm']} MiB |")
print()
print(f"restart with {s['services']:,} Services x 10 endpoints: range covered {s['skeleton']:.2f} s, "
      f"last Service answers {s['full']:.2f} s after exec; {s['answered']}/{s['services']} answered; "
      f"VmRSS {s['rss']} MiB, VmHWM {s['hwm']} MiB")
PY
awk -v c="$CM" -v d="$DM" -v n="$AB_N" -v k="$AB_C" -v r="$AB_ROUNDS" 'BEGIN {
  printf "ab -n %d -c %d, medians of %d: ClusterIP %.0f/s, direct %.0f/s, ratio %.2f\n", n, k, r, c, d, c / d }'
