//! Command-line flags of `dns-bench`. The knobs of `shared/peers/knot.sh` / `nsd.sh` (`RUNS`,
//! `WORKERS`, `DNSPERF_SECS`, `DNSPERF_ARGS`) are read from the environment too.

use std::path::PathBuf;

use clap::Parser;

/// Kokoa's authoritative DNS against Knot DNS and NSD (Debian) serving the same zone, measured
/// with dnsperf (Debian) in one run, alternating kokoa, nsd, knot, on loopback.
#[derive(Debug, Clone, Parser)]
#[command(name = "dns-bench", version)]
pub struct DnsArgs {
    /// Measured runs per server; the report shows the median (and min / max).
    #[arg(long, env = "RUNS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: u32,
    /// Seconds per dnsperf throughput run (`-l`).
    #[arg(long, env = "DNSPERF_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub dnsperf_secs: u64,
    /// Other dnsperf flags for the throughput runs (the same for every server; `-s -p -d -l`
    /// are added by the benchmark).
    #[arg(
        long,
        env = "DNSPERF_ARGS",
        default_value = "-c 16 -T 1 -q 200",
        allow_hyphen_values = true
    )]
    pub dnsperf_args: String,
    /// Knot `udp-workers` and NSD `server-count` (default: the number of CPUs; Kokoa binds one
    /// UDP socket per CPU).
    #[arg(long, env = "WORKERS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: Option<u32>,
    /// Route hostnames (`h0..` in the zone), each answering with every edge's IP.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub routes: u32,
    /// Registered edges (A records per answer).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub edges: u32,
    /// The zone Kokoa manages (`--dns-zone`) and the peers serve.
    #[arg(long, default_value = "bench.test")]
    pub zone: String,
    /// Latency pass: queries/s for a fixed-rate dnsperf `-v` run per server (per-query
    /// latencies → p50/p99/p99.9 at the same offered load for all); 0 skips it.
    #[arg(long, default_value_t = 20_000)]
    pub latency_qps: u32,
    /// Seconds of each latency pass run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub latency_secs: u64,
    /// Seconds of unmeasured dnsperf load per server before the first run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// Pause between runs, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub pause_ms: u64,
    /// Measure Kokoa alone (no Knot, no NSD).
    #[arg(long)]
    pub kokoa_only: bool,
    /// Extra `kokoa server` argument (repeatable).
    #[arg(long = "kokoa-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub kokoa_args: Vec<String>,
    /// Give up (and stop everything) after this many seconds.
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u64).range(30..=86_400))]
    pub timeout_secs: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

impl DnsArgs {
    /// The dnsperf flags as separate words; refuses the ones the benchmark sets itself.
    pub fn dnsperf_words(&self) -> anyhow::Result<Vec<String>> {
        let words: Vec<String> = self
            .dnsperf_args
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for word in &words {
            anyhow::ensure!(
                !matches!(word.as_str(), "-s" | "-p" | "-d" | "-l" | "-v" | "-m"),
                "DNSPERF_ARGS: {word} is set by the benchmark"
            );
        }
        Ok(words)
    }

    /// Knot udp-workers / NSD server-count.
    pub fn workers_or_cpus(&self) -> u32 {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_flags_it_sets() {
        let mut args = DnsArgs::parse_from(["dns-bench"]);
        assert_eq!(args.dnsperf_words().expect("default").len(), 6);
        args.dnsperf_args = "-c 4 -l 3".into();
        assert!(args.dnsperf_words().is_err());
    }
}
