//! Command-line flags of `cp-bench`.

use std::path::PathBuf;

use clap::Parser;

/// Kokoa's control plane vs etcd 3.4: write throughput/latency under C concurrent clients and
/// leader failover time, 3 replicas each, on loopback, in one run.
#[derive(Debug, Clone, Parser)]
#[command(name = "cp-bench", version)]
pub struct Args {
    /// Measured seconds per load step (after the warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration_secs: u64,
    /// Concurrent clients per load step, comma-separated; each step runs once per system.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,16,64",
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    pub clients: Vec<u16>,
    /// Warm-up before each step's measurement, in ms (same load, not recorded).
    #[arg(long, default_value_t = 1000)]
    pub warmup_ms: u64,
    /// Upper bound on measured writes per step (the step ends at whichever comes first).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_requests: u64,
    /// Leader failover rounds per system (0 skips failover).
    #[arg(long, default_value_t = 5)]
    pub failover_runs: u32,
    /// Measure Kokoa alone (no etcd, no ratios).
    #[arg(long)]
    pub skip_etcd: bool,
    /// An extra argument for every `kokoa server` (repeatable), e.g.
    /// `--kokoa-arg=--election-timeout-ms=150`. Default: none, i.e. Kokoa's defaults.
    #[arg(long = "kokoa-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub kokoa_args: Vec<String>,
    /// Also write every figure as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

impl Args {
    /// Checks what clap cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.clients.is_empty(),
            "--clients needs at least one value"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_run() {
        let args = Args::try_parse_from(["cp-bench"]).expect("parse defaults");
        assert_eq!(args.clients, vec![1, 16, 64]);
        assert_eq!(args.duration_secs, 10);
        assert_eq!(args.failover_runs, 5);
        assert!(!args.skip_etcd);
        assert!(args.kokoa_args.is_empty());
    }

    #[test]
    fn passes_server_arguments_through() {
        let args = Args::try_parse_from([
            "cp-bench",
            "--kokoa-arg=--election-timeout-ms=150",
            "--kokoa-arg",
            "--snapshot-every",
            "--kokoa-arg",
            "100",
        ])
        .expect("parse");
        assert_eq!(
            args.kokoa_args,
            ["--election-timeout-ms=150", "--snapshot-every", "100"]
        );
    }

    #[test]
    fn parses_a_client_list_and_rejects_zero() {
        let args =
            Args::try_parse_from(["cp-bench", "--clients", "2,8", "--skip-etcd"]).expect("parse");
        assert_eq!(args.clients, vec![2, 8]);
        assert!(args.skip_etcd);
        assert!(Args::try_parse_from(["cp-bench", "--clients", "0"]).is_err());
    }
}
