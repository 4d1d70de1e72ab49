//! Command-line flags of `pull-bench`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// `--readiness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Readiness {
    Auto,
    Metric,
    Sockets,
}

/// One Kokoa replica (fsync on) holding N concurrent edge config long-polls, each on its own
/// HTTP/1.1 connection: its RSS and CPU while they wait, then how fast one committed write
/// wakes every one of them, R times.
#[derive(Debug, Clone, Parser)]
#[command(name = "pull-bench", version)]
pub struct PullArgs {
    /// Concurrent long-polls, one TCP connection each.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub pulls: u32,
    /// Edges registered through the API; the pulls use their tokens in turn (several pulls per
    /// edge token).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub edges: u32,
    /// Write-wake cycles: re-arm every pull with the current version, measure idle, write once,
    /// time every answer.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Seconds over which the idle replica's CPU is measured, every pull waiting.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=50))]
    pub idle_secs: u64,
    /// `wait` of every pull in seconds (the server allows at most 60). A pull answered 304
    /// before the write is sent again at once, as an edge would.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub wait_secs: u64,
    /// Per round: how long the pulls may take to be all waiting on the server.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=1800))]
    pub ready_timeout_secs: u64,
    /// Per round: how long after the write's acknowledgement every pull may take to answer.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub answer_timeout_secs: u64,
    /// How to know every pull is waiting on the server: `auto` uses the replica's
    /// `kokoa_pulls_waiting` metric when `/metrics` has it, else `sockets` (every request read
    /// from its socket, then the replica quiet; see `ready.rs`).
    #[arg(long, value_enum, default_value_t = Readiness::Auto)]
    pub readiness: Readiness,
    /// Connections being opened at once. The replica's listen backlog is finite (128 seen):
    /// more at once overflow it and those connects are retried by the kernel after 1 s.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connect_concurrency: u32,
    /// The whole run gives up (and stops every process it started) after this many seconds.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub timeout_secs: u64,
    /// An extra argument for `kokoa server` (repeatable), e.g. `--kokoa-arg=--snapshot-every=100`.
    /// Default: none, i.e. Kokoa's defaults.
    #[arg(long = "kokoa-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub kokoa_args: Vec<String>,
    /// Also write every figure as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

impl PullArgs {
    /// Checks what clap cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.edges <= self.pulls,
            "--edges {} is more than --pulls {}: every edge must hold at least one pull",
            self.edges,
            self.pulls
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_run() {
        let args = PullArgs::try_parse_from(["pull-bench"]).expect("parse defaults");
        assert_eq!(
            (
                args.pulls,
                args.edges,
                args.rounds,
                args.idle_secs,
                args.wait_secs
            ),
            (10_000, 100, 3, 5, 60)
        );
        assert!(args.kokoa_args.is_empty() && args.json.is_none());
        assert_eq!(args.readiness, Readiness::Auto);
        args.validate().expect("defaults are valid");
    }

    #[test]
    fn rejects_out_of_range_values() {
        assert!(PullArgs::try_parse_from(["pull-bench", "--wait-secs", "61"]).is_err());
        assert!(PullArgs::try_parse_from(["pull-bench", "--pulls", "0"]).is_err());
        let args = PullArgs::try_parse_from(["pull-bench", "--pulls", "10", "--edges", "20"])
            .expect("parse");
        assert!(args.validate().is_err());
    }
}
