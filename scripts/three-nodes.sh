#!/usr/bin/env bash
# A three-node cluster on one machine, for demos: a server and two agents, each in a
# network namespace of its own (sk3n0, sk3n1, sk3n2) on a bridge in a fourth (sk3lan),
# 10.213.254.1-3/24, with no link to the host's namespace (nothing they do leaves the
# machine). Each node has its own engine root under /var/tmp/skiff-3nodes.
#
#   sudo scripts/three-nodes.sh up [BACKEND]   # vxlan (default), host-gw or none
#   sudo ip netns exec sk3n0 kubectl --kubeconfig /var/tmp/skiff-3nodes/kubeconfig get nodes -o wide
#   sudo scripts/three-nodes.sh down
#
# SKIFF (default: skiff on the PATH) is the binary to run.
set -euo pipefail
SKIFF="${SKIFF:-$(command -v skiff || true)}"
DIR=/var/tmp/skiff-3nodes
LAN=sk3lan
NODES=3

down() {
  for i in $(seq 0 $((NODES - 1))); do
    ns="sk3n$i"
    [ -e "/run/netns/$ns" ] || continue
    # Stop the node, then remove what it made (pods, rules, routes, bridge).
    for pid in $(ip netns pids "$ns"); do kill "$pid" 2>/dev/null || true; done
    sleep 2
    cmd=agent; [ "$i" = 0 ] && cmd=server
    ip netns exec "$ns" "$SKIFF" --root "$DIR/n$i" "$cmd" --cleanup --node-name "sk3-n$i" >/dev/null || true
    for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns"
  done
  [ -e "/run/netns/$LAN" ] && ip netns del "$LAN"
  rm -rf "$DIR"
  echo "three-node cluster removed"
}

up() {
  backend="${1:-vxlan}"
  [ -x "$SKIFF" ] || { echo "skiff not found: set SKIFF=/path/to/skiff" >&2; exit 1; }
  [ -e "/run/netns/$LAN" ] && { echo "already up (scripts/three-nodes.sh down first)" >&2; exit 1; }
  mkdir -p "$DIR"
  ip netns add "$LAN"
  ip -n "$LAN" link add br0 type bridge
  ip -n "$LAN" link set br0 up
  for i in $(seq 0 $((NODES - 1))); do
    ns="sk3n$i"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$LAN" link add "n$i" type veth peer name eth0 netns "$ns"
    ip -n "$LAN" link set "n$i" master br0 up
    ip -n "$ns" addr add "10.213.254.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  # The server (node 0), with its own node agent.
  ip netns exec sk3n0 "$SKIFF" --root "$DIR/n0" server --node-name sk3-n0 \
    --node-ip 10.213.254.1 --advertise-address 10.213.254.1 --flannel-backend "$backend" \
    --data-dir "$DIR/server" --write-kubeconfig "$DIR/kubeconfig" \
    --log "$DIR/server.log" >/dev/null 2>"$DIR/server.banner" &
  for _ in $(seq 1 100); do
    grep -q 'join token' "$DIR/server.banner" 2>/dev/null && break
    sleep 0.2
  done
  token=$(sed -n 's/.*join token //p' "$DIR/server.banner")
  [ -n "$token" ] || { echo "the server did not start; see $DIR/server.log" >&2; exit 1; }
  for i in $(seq 1 $((NODES - 1))); do
    ip netns exec "sk3n$i" "$SKIFF" --root "$DIR/n$i" agent --server https://10.213.254.1:6443 \
      --token "$token" --node-name "sk3-n$i" --node-ip "10.213.254.$((i + 1))" \
      --data-dir "$DIR/agent$i" --log "$DIR/agent$i.log" >/dev/null 2>&1 &
  done
  echo "three-node cluster ($backend) starting; try:"
  echo "  sudo ip netns exec sk3n0 kubectl --kubeconfig $DIR/kubeconfig get nodes -o wide"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  *) echo "usage: $0 up [vxlan|host-gw|none] | down" >&2; exit 2 ;;
esac
