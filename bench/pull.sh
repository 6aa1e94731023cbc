#!/usr/bin/env bash
# Benchmark (not a test): pulling an image from a local registry into an empty store,
# skiff against podman and against skopeo + umoci, side by side in one run (issue 14).
#   The image: made here, FROM scratch with LAYERS layers of LAYER_MB MiB each (half
#   random bytes, half base64 text, so gzip does some work), pushed by skiff to
#   Debian's docker-registry (Distribution 2.8) on a loopback port.
#   skiff:          skiff --root <fresh> pull -q REF           (download, verify, unpack)
#   podman:         podman --root <fresh> --storage-driver overlay pull -q REF
#   skopeo + umoci: skopeo copy docker://REF oci:<fresh>:x && umoci unpack --image … bundle
#   re-pull:        skiff pull again with every layer present (manifest + config only)
# ROUNDS rounds, the order of the three rotating; wall time from outside
# the process and peak RSS, both by GNU time. `sync` and a dropped page cache before
# each timed run, so neither peer reads what the other just wrote.
# Usage: sudo bench/pull.sh   (root; installs docker-registry, skopeo, umoci, podman)
# Env: SKIFF_BIN (else this tree is built in release), ROUNDS (5), LAYERS (10),
#      LAYER_MB (20), REPULLS (10).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}" LAYERS="${LAYERS:-10}" LAYER_MB="${LAYER_MB:-20}" REPULLS="${REPULLS:-10}"
for p in docker-registry:docker-registry skopeo:skopeo umoci:umoci time:/usr/bin/time podman:podman; do
  command -v "${p#*:}" >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${p%%:*}" >/dev/null
done
if [ -z "${SKIFF_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
  cargo build --release -q -p skiff
fi
SKIFF="${SKIFF_BIN:-$CARGO_TARGET_DIR/release/skiff}"

W=$(mktemp -d /var/tmp/skiff-pullbench.XXXXXX)
REF=""
# Names of its own, should anything here touch the network setup.
export SKIFF_BRIDGE=skpb0 SKIFF_FILTER_TABLE=skiff_pullbench
REG_PID=""
cleanup() {
  set +e
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
  for r in "$W"/seed "$W"/skiff-*; do
    [ -d "$r" ] && "$SKIFF" --root "$r" rmi -f "$REF" >/dev/null 2>&1
  done
  podman_clean
  rm -rf "$W"
}
podman_clean() {
  if [ -d "$W/podman" ]; then
    podman --root "$W/podman" --runroot "$W/podman-run" --storage-driver overlay rmi -a -f >/dev/null 2>&1
    { grep -o " $W/podman[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$W/podman" "$W/podman-run"
  fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry
http:
  addr: 127.0.0.1:$PORT
  secret: bench
EOF
docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
REF="127.0.0.1:$PORT/bench/image:1"

# The image.
mkdir -p "$W/ctx"
: >"$W/ctx/Dockerfile"
echo "FROM scratch" >>"$W/ctx/Dockerfile"
half=$((LAYER_MB * 1024 * 1024 / 2))
for i in $(seq 1 "$LAYERS"); do
  mkdir -p "$W/ctx/l$i"
  head -c "$half" /dev/urandom >"$W/ctx/l$i/random"
  head -c $((half * 3 / 4)) /dev/urandom | base64 -w 76 >"$W/ctx/l$i/text"
  echo "COPY l$i /l$i/" >>"$W/ctx/Dockerfile"
done
"$SKIFF" --root "$W/seed" build -q -t "$REF" "$W/ctx" >/dev/null
"$SKIFF" --root "$W/seed" push -q "$REF" >/dev/null
rm -rf "$W/ctx"
compressed=$(du -sb "$W/registry" | cut -f1)

fresh() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# timed CMD...: prints "seconds maxrss_kb"
timed() {
  /usr/bin/time -f "%e %M" -o "$W/t" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
  cat "$W/t"
}
run_skiff() {
  rm -rf "$W/skiff-$1"
  fresh
  timed "$SKIFF" --root "$W/skiff-$1" pull -q "$REF"
}
run_podman() {
  podman_clean
  fresh
  timed podman --root "$W/podman" --runroot "$W/podman-run" --storage-driver overlay \
    pull -q --tls-verify=false "$REF"
}
run_peer() {
  rm -rf "$W/oci" "$W/bundle"
  fresh
  local a b
  a=$(timed skopeo copy --quiet --src-tls-verify=false "docker://$REF" "oci:$W/oci:x")
  b=$(timed umoci unpack --rootless --image "$W/oci:x" "$W/bundle")
  # Wall times add; peak RSS is the larger of the two processes.
  awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," ");split(b,y," ");printf "%.2f %d\n", x[1]+y[1], (x[2]>y[2]?x[2]:y[2])}'
}

echo "pull benchmark: $LAYERS layers x $LAYER_MB MiB ($(numfmt --to=iec "$compressed") in the registry), $ROUNDS rounds, $(nproc) cores"
: >"$W/skiff.txt"; : >"$W/peer.txt"; : >"$W/podman.txt"
for r in $(seq 1 "$ROUNDS"); do
  case $((r % 3)) in
  1) run_skiff "$r" >>"$W/skiff.txt"; run_podman >>"$W/podman.txt"; run_peer >>"$W/peer.txt" ;;
  2) run_podman >>"$W/podman.txt"; run_peer >>"$W/peer.txt"; run_skiff "$r" >>"$W/skiff.txt" ;;
  0) run_peer >>"$W/peer.txt"; run_skiff "$r" >>"$W/skiff.txt"; run_podman >>"$W/podman.txt" ;;
  esac
  "$SKIFF" --root "$W/skiff-$r" rmi -f "$REF" >/dev/null 2>&1 || true
  [ "$r" -lt "$ROUNDS" ] && rm -rf "$W/skiff-$r"
done
# Re-pulls into the last round's root: every layer present.
: >"$W/repull.txt"
"$SKIFF" --root "$W/skiff-$ROUNDS" pull -q "$REF" >/dev/null
for _ in $(seq 1 "$REPULLS"); do
  s=$(date +%s%N)
  "$SKIFF" --root "$W/skiff-$ROUNDS" pull -q "$REF" >/dev/null
  e=$(date +%s%N)
  echo $(((e - s) / 1000000)) >>"$W/repull.txt"
done

stats() { # file column -> "median min max"
  cut -d' ' -f"$2" "$1" | sort -n | awk '{v[NR]=$1} END{m=(NR%2)?v[(NR+1)/2]:v[NR/2]; print m, v[1], v[NR]}'
}
read -r sm smin smax < <(stats "$W/skiff.txt" 1)
read -r pm pmin pmax < <(stats "$W/peer.txt" 1)
read -r qm qmin qmax < <(stats "$W/podman.txt" 1)
read -r qr _ _ < <(stats "$W/podman.txt" 2)
read -r sr _ _ < <(stats "$W/skiff.txt" 2)
read -r pr _ _ < <(stats "$W/peer.txt" 2)
read -r rm rmin rmax < <(stats "$W/repull.txt" 1)
printf "%-28s %10s %10s %10s %14s\n" "" "median s" "min s" "max s" "peak RSS MiB"
printf "%-28s %10s %10s %10s %14d\n" "skiff pull" "$sm" "$smin" "$smax" $((sr / 1024))
printf "%-28s %10s %10s %10s %14d\n" "podman pull" "$qm" "$qmin" "$qmax" $((qr / 1024))
printf "%-28s %10s %10s %10s %14d\n" "skopeo copy + umoci unpack" "$pm" "$pmin" "$pmax" $((pr / 1024))
awk -v s="$sm" -v p="$pm" -v q="$qm" 'BEGIN{printf "ratio peer/skiff (medians): podman %.2f, skopeo+umoci %.2f\n", q/s, p/s}'
echo "skiff re-pull, every layer present: median ${rm} ms (min ${rmin}, max ${rmax}; $REPULLS runs, whole command)"
