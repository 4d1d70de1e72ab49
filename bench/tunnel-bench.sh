#!/usr/bin/env bash
# Tunnel benchmark: Kokoa's tunnel (HTTP downloads through `kokoa edge` → WireGuard → `kokoa
# agent` → an origin app, plain HTTP via the routes' allow_http) vs wireguard-go (Debian) between
# two network namespaces (iperf3 TCP, as shared/peers/wireguard-go.sh), in one run, alternating:
# Gbit/s with 1 and 8 parallel streams, the tunnel processes' CPU, the latency the tunnel adds to
# a small GET (p50/p99 through edge + tunnel minus through the edge to a direct origin), medians
# of RUNS runs and Kokoa/wireguard-go ratios as RESULT lines.
# Needs root (network namespaces, /dev/net/tun). Builds release binaries of `kokoa` and
# `tunnel-bench`, installs wireguard-go, wireguard-tools, iperf3 and iproute2 with apt-get when
# missing, then runs `tunnel-bench` with the given flags (see `tunnel-bench --help`). Respects
# CARGO_TARGET_DIR. Env as in shared/peers/wireguard-go.sh: RUNS=3 IPERF_SECS=10. About 3
# minutes with the defaults.
#   bench/tunnel-bench.sh
#   RUNS=5 bench/tunnel-bench.sh --direct-throughput --veth-baseline --json /tmp/tunnel.json
#   bench/tunnel-bench.sh --skip-kokoa          # the wireguard-go half alone
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
if [ "$(id -u)" != 0 ]; then echo "tunnel-bench needs root (network namespaces)" >&2; exit 1; fi
[ -c /dev/net/tun ] || { echo "tunnel-bench needs /dev/net/tun (wireguard-go)" >&2; exit 1; }
need=()
for pair in wireguard-go:wireguard-go wg:wireguard-tools iperf3:iperf3 ip:iproute2; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}" >&2
  ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
  # policy-rc.d on the dev VM (exit 101), and debconf's default "no", keep iperf3's daemon off.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -p kokoa -p kokoa-bench --bin kokoa --bin tunnel-bench
# Where cargo put them (honours CARGO_TARGET_DIR and cargo config); tunnel-bench finds `kokoa` beside itself.
target="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
exec "$target/release/tunnel-bench" "$@"
