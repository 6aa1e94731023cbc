#!/usr/bin/env bash
# LIST of every pod as the cluster grows, from outside (issue 15): a `skiff server
# --disable-agent` (no nodes: the pods stay pending) gets PODS pods made by h2load
# (a separate process, 32 HTTP/2 connections; each pod ~1.5 KB as JSON before the
# server's defaults and managedFields, as a Deployment's pods are), then, RUNS times
# each: a raw paginated LIST of all pods (limit=500 and its continue tokens, as
# client-go's pager and kubectl list; a Python client outside the server) and
# `kubectl get pods -A` (real kubectl, output discarded). Prints every run's time,
# the slowest of each (with 5 runs, the p99 is the slowest), and the server's RSS.
# Usage: [STORE=embedded|etcd] bench/api_list.sh [PODS [RUNS]]   (defaults 150000 5)
set -euo pipefail
cd "$(dirname "$0")/.."
PODS="${1:-150000}" RUNS="${2:-5}"
# shellcheck source=bench/apiserver.lib.sh
. bench/apiserver.lib.sh skiff-apilist
command -v kubectl >/dev/null || { echo "kubectl is needed (the README's test command installs it)" >&2; exit 1; }
rss() { awk '/^VmRSS/ {print int($2/1024)}' "/proc/$SPID/status"; }
cat > "$W/pod" <<'POD'
{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"web-5d8f7c9b4-","labels":{"app":"web","pod-template-hash":"5d8f7c9b4","tier":"frontend"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-12-07T10:00:00Z"}},
"spec":{"containers":[{"name":"web","image":"registry.example.com/team/web:1.27.3","ports":[{"containerPort":8080,"name":"http"}],
"env":[{"name":"MODE","value":"production"},{"name":"LOG_LEVEL","value":"info"},{"name":"POD_NAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],
"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"500m","memory":"256Mi"}},
"readinessProbe":{"httpGet":{"path":"/healthz","port":8080},"periodSeconds":5},
"volumeMounts":[{"name":"config","mountPath":"/etc/web"}]}],
"volumes":[{"name":"config","configMap":{"name":"web-config"}}],"terminationGracePeriodSeconds":30}}
POD
# Pods need the namespace's service account, made by a controller.
for _ in $(seq 1 100); do
  curl -sfk -H 'Authorization: Bearer benchtoken' "https://127.0.0.1:$PORT/api/v1/namespaces/default/serviceaccounts/default" >/dev/null && break
  sleep 0.1
done
start=$(date +%s.%N)
left=$PODS
while [ "$left" -gt 0 ]; do
  n=$((left < 10000 ? left : 10000))
  h2load -n "$n" -c 32 -m 1 -H 'Authorization: Bearer benchtoken' -H 'Content-Type: application/json' \
    -d "$W/pod" "https://127.0.0.1:$PORT/api/v1/namespaces/default/pods" > "$W/h2load.txt"
  ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$W/h2load.txt")
  [ "$ok" = "$n" ] || { echo "only ${ok:-0} of $n pod creates succeeded:" >&2; cat "$W/h2load.txt" >&2; exit 1; }
  left=$((left - n))
done
echo "made $PODS pods in $(python3 -c "import time; print(round(time.time() - $start, 1))") s; server RSS $(rss) MiB"
# The pager reads every page whole over one keep-alive connection, as a client does,
# but parses only the list's metadata (its continue token) and counts the items by their
# kind, so the figure is the server's and not Python's JSON decoding.
cat > "$W/pager.py" <<'PY'
import http.client, re, ssl, sys, time, urllib.parse
port, want = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
headers = {"Authorization": "Bearer benchtoken", "Accept": "application/json"}
t0, n, pages, cont = time.monotonic(), 0, 0, ""
while True:
    q = "limit=500" + ("&continue=" + urllib.parse.quote(cont) if cont else "")
    conn.request("GET", f"/api/v1/pods?{q}", headers=headers)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"page {pages + 1}: HTTP {r.status}: {body[:300]!r}")
    head = body[: body.find(b'"items":')]
    m = re.search(rb'"continue":"([^"]*)"', head)
    cont = m.group(1).decode() if m else ""
    n += body.count(b'"kind":"Pod"'); pages += 1
    if not cont:
        break
if n != want:
    sys.exit(f"the paginated list returned {n} pods, not {want}")
print(f"{time.monotonic() - t0:.3f} {pages}")
PY
raw=() kube=()
for i in $(seq 1 "$RUNS"); do
  read -r t pages < <(python3 "$W/pager.py" "$PORT" "$PODS")
  [ -n "${t:-}" ] || exit 1
  raw+=("$t")
  s=$(date +%s.%N)
  got=$(kubectl --kubeconfig "$W/kc" get pods -A --no-headers | wc -l)
  k=$(python3 -c "import time; print(f'{time.time() - $s:.3f}')")
  [ "$got" -ge "$PODS" ] || { echo "kubectl get pods -A printed $got pods, not $PODS" >&2; exit 1; }
  kube+=("$k")
  echo "run $i: paginated LIST ${t} s ($pages pages); kubectl get pods -A ${k} s; server RSS $(rss) MiB"
done
max() { printf '%s\n' "$@" | sort -g | tail -1; }
echo "slowest of $RUNS: paginated LIST $(max "${raw[@]}") s; kubectl get pods -A $(max "${kube[@]}") s"
