#!/usr/bin/env bash
# Config long-poll benchmark: one Kokoa replica (fsync on) holding 10,000 concurrent
# `GET /api/v1/edge-nodes/me/config?after=V&wait=60` pulls, each on its own HTTP/1.1
# connection. Measures the replica's RSS and CPU while they all wait, then how fast one
# committed write wakes every one of them (p50 / p99 / max after the write's 201), 3 times.
# Builds release binaries of `kokoa` and `pull-bench`, then runs `pull-bench` with the given
# flags (see `pull-bench --help`). Respects CARGO_TARGET_DIR. Takes a minute or two with the
# defaults; needs an open-file hard limit above the number of pulls (it raises the soft one).
#   bench/pull-bench.sh                                 # defaults: 10000 pulls, 100 edges, 3 rounds
#   bench/pull-bench.sh --pulls 2000 --edges 20 --rounds 5 --json /tmp/pulls.json
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
cargo build --release -p kokoa -p kokoa-bench
# Where cargo put them (honours CARGO_TARGET_DIR and cargo config); pull-bench finds `kokoa` beside itself.
target="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
exec "$target/release/pull-bench" "$@"
