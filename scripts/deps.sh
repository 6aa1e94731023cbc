#!/usr/bin/env bash
# Install the system packages skiff and its tests need (Debian; run as root).
set -euo pipefail
need=()
command -v busybox >/dev/null 2>&1 || [ -x /bin/busybox ] || need+=(busybox-static)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The service proxy deletes stale UDP flows with conntrack (skiff-network).
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
# etcd-client's build compiles etcd's protobufs; the etcd backend's tests start a real etcd.
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
# The cluster tests' WebSocket client (tests/wsclient.py) and raw HTTP requests.
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v curl >/dev/null 2>&1 || need+=(curl)
# The cluster DNS tests' upstream resolver (the binary only, no service on port 53).
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
# The registry tests: a real Distribution registry and skopeo as the second client.
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
# The Docker API tests drive `skiff system service` with the real docker CLI (this
# machine ships 28.2 at /usr/local/bin/docker; elsewhere Debian's client).
command -v docker >/dev/null 2>&1 || need+=(docker-cli)
# docker-compose 1.29 (Debian's, with its python3-docker 5.0.3) against the service.
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
if [ "${SKIFF_BENCH:-}" = 1 ]; then
  command -v runc >/dev/null 2>&1 || need+=(runc)
  command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
  command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
fi
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
