#!/usr/bin/env bash
# Runs the replicator benchmark from one command: builds what it needs in BUILD_DIR (default
# build-bench, configured with -Dbench=true if missing) and runs it. Extra arguments go to the
# benchmark (--objects-4k N --objects-256k N --threads T).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-bench}
shift || true
[ -f "$build/build.ninja" ] || meson setup "$build" -Dbench=true -Dbuildtype=release >/dev/null
ninja -C "$build" replicator/coffer-node tests/bench/replicator_bench >/dev/null
COFFER_NODE="$build/replicator/coffer-node" exec "$build/tests/bench/replicator_bench" "$@"
