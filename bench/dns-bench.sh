#!/usr/bin/env bash
# DNS benchmark: Kokoa's authoritative DNS (`kokoa server --dns-listen`) vs NSD and Knot DNS
# (Debian) serving the same zone (exported from Kokoa's answers), on loopback, in one run,
# alternating kokoa, nsd, knot. dnsperf (Debian) measures A queries/s and latency; the report
# gives medians of RUNS runs, the servers' CPU, Kokoa/NSD and Kokoa/Knot ratios and whether
# Kokoa reaches half of NSD's queries/s.
# Builds release binaries of `kokoa` and `dns-bench`, installs dnsperf, knot, knot-dnsutils
# (kdig) and nsd with apt-get when missing, then runs `dns-bench` with the given flags (see
# `dns-bench --help`). Respects CARGO_TARGET_DIR. Env as in shared/peers/knot.sh: RUNS=3
# DNSPERF_SECS=10 DNSPERF_ARGS="-c 16 -T 1 -q 200" WORKERS=<CPUs>. About 2 minutes by default.
#   bench/dns-bench.sh
#   RUNS=5 bench/dns-bench.sh --routes 1000 --json /tmp/dns.json
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
need=()
for pair in dnsperf:dnsperf knotd:knot kdig:knot-dnsutils nsd:nsd; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}" >&2
  ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
  # policy-rc.d on the dev VM (exit 101) keeps postinst from starting the knot and nsd services.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release -p kokoa -p kokoa-bench
# Where cargo put them (honours CARGO_TARGET_DIR and cargo config); dns-bench finds `kokoa` beside itself.
target="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)"
exec "$target/release/dns-bench" "$@"
