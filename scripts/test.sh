#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test.
# Must run as root (tests start real containers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
# One-shot builds from fresh clones gain nothing from incremental state, which would
# pile up per clone path in the shared target dir.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --workspace --all-targets
status=0
cargo test --workspace --no-fail-fast 2>&1 || status=$?
# The API server's integration tests again, on etcd (one etcd per test fixture).
SKIFF_TEST_DATASTORE=etcd cargo test -p skiff-apiserver --no-fail-fast --test '*' 2>&1 || status=$?
exit $status
