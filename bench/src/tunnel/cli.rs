//! Command-line flags of `tunnel-bench`. The knobs of `shared/peers/wireguard-go.sh` (`RUNS`,
//! `IPERF_SECS`) are read from the environment too, so the same settings drive both halves.

use std::path::PathBuf;

use clap::Parser;

/// Kokoa's tunnel (edge → WireGuard → agent → origin, downloads over plain HTTP) against
/// wireguard-go (Debian) between two network namespaces (iperf3 TCP), in one run, on this
/// machine, alternating; prints both, and the Kokoa / wireguard-go ratios. Root only.
#[derive(Debug, Clone, Parser)]
#[command(name = "tunnel-bench", version)]
pub struct TunnelArgs {
    /// Measured runs per path and stream count; the report shows the median (and min / max).
    #[arg(long, env = "RUNS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: u32,
    /// Seconds per throughput run (iperf3 `-t`, and the Kokoa download window).
    #[arg(long, env = "IPERF_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub secs: u64,
    /// Parallel streams to measure (iperf3 `-P`; Kokoa: parallel downloading clients).
    #[arg(long, value_delimiter = ',', default_value = "1,8", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub streams: Vec<u32>,
    /// Seconds of unmeasured load per path before the first run (handshakes, slow start,
    /// connection pools).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// Size of each Kokoa download, MiB (large, so per-request costs do not count).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub download_mib: u64,
    /// At most this many downloads per client per run (a bound, besides the time).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_downloads: u64,
    /// Small GETs per path (through the tunnel, and through the edge to a direct origin) for
    /// the added latency; 0 skips it.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub latency_requests: u32,
    /// Body size of each small GET, bytes.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub latency_bytes: u64,
    /// Also measure the edge to a direct origin (no tunnel) with the same downloads: shows how
    /// much of Kokoa's figure is the edge's and how much the tunnel's.
    #[arg(long)]
    pub direct_throughput: bool,
    /// Also measure iperf3 over the plain veth under wireguard-go (as the peer script does).
    #[arg(long)]
    pub veth_baseline: bool,
    /// Pause between runs, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub pause_ms: u64,
    /// Measure wireguard-go only.
    #[arg(long, conflicts_with = "skip_wireguard_go")]
    pub skip_kokoa: bool,
    /// Measure Kokoa only.
    #[arg(long)]
    pub skip_wireguard_go: bool,
    /// Extra `kokoa server` argument (repeatable).
    #[arg(long = "kokoa-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub kokoa_args: Vec<String>,
    /// Extra `kokoa edge` argument (repeatable).
    #[arg(long = "edge-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub edge_args: Vec<String>,
    /// Extra `kokoa agent` argument (repeatable).
    #[arg(long = "agent-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub agent_args: Vec<String>,
    /// Give up (and stop everything) after this many seconds.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(30..=86_400))]
    pub timeout_secs: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

impl TunnelArgs {
    /// Stream counts, sorted, without repeats.
    pub fn stream_counts(&self) -> Vec<u32> {
        let mut streams = self.streams.clone();
        streams.sort_unstable();
        streams.dedup();
        streams
    }

    /// Bytes per Kokoa download.
    pub fn download_bytes(&self) -> u64 {
        self.download_mib << 20
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_measure_one_and_eight_streams() {
        let args = TunnelArgs::parse_from(["tunnel-bench"]);
        assert_eq!(args.stream_counts(), vec![1, 8]);
        assert_eq!(args.download_bytes(), 64 << 20);
        let args = TunnelArgs::parse_from(["tunnel-bench", "--streams", "8,1,8,2"]);
        assert_eq!(args.stream_counts(), vec![1, 2, 8]);
        assert!(TunnelArgs::try_parse_from(["tunnel-bench", "--streams", "0"]).is_err());
    }
}
