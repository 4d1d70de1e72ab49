#!/usr/bin/env bash
# Edge benchmark: `kokoa edge` vs nginx (Debian) as TLS-terminating reverse proxies, in front of
# the same upstream (an nginx answering `return 200`), on loopback, in one run, alternating.
# wrk (Debian) measures plain HTTP and HTTPS keep-alive, and HTTPS with a new TLS connection per
# request: req/s, p50/p99, the proxies' CPU and RSS; medians of RUNS runs, Kokoa/nginx ratios.
# Builds release binaries of `kokoa` and `edge-bench`, installs nginx, wrk and openssl with
# apt-get when missing, then runs `edge-bench` with the given flags (see `edge-bench --help`).
# Respects CARGO_TARGET_DIR. Env as in shared/peers/nginx.sh: RUNS=3 WRK_ARGS="-t2 -c64 -d10s"
# WORKERS=<CPUs> (nginx worker_processes). About 4 minutes with the defaults.
#   bench/edge-bench.sh                                     # defaults
#   RUNS=5 bench/edge-bench.sh --scenarios https --json /tmp/edge.json
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
need=()
for pair in nginx:nginx wrk:wrk openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}" >&2
  ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
  # policy-rc.d on the dev VM (exit 101) keeps postinst from starting the nginx service.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -p kokoa -p kokoa-bench
# Where cargo put them (honours CARGO_TARGET_DIR and cargo config); edge-bench finds `kokoa` beside itself.
target="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
exec "$target/release/edge-bench" "$@"
