#!/usr/bin/env bash
# Control-plane benchmark: Kokoa (3 replicas) vs etcd 3.4 (3 members) on loopback, same run.
# Builds release binaries of `kokoa` and `cp-bench`, then runs `cp-bench` with the given flags
# (see `cp-bench --help`): write throughput/latency at 1, 16 and 64 clients, leader failover.
# Respects CARGO_TARGET_DIR. Installs etcd-server/etcd-client with apt-get when etcd is missing
# (cp-bench does that itself). Takes a few minutes with the defaults.
#   bench/cp-bench.sh                          # defaults
#   bench/cp-bench.sh --duration-secs 5 --clients 1,64 --failover-runs 3 --json /tmp/cp.json
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
cargo build --release -p kokoa -p kokoa-bench
# Where cargo put them (honours CARGO_TARGET_DIR and cargo config); cp-bench finds `kokoa` beside itself.
target="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
exec "$target/release/cp-bench" "$@"
