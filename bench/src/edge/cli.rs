//! Command-line flags of `edge-bench`. The knobs of `shared/peers/nginx.sh` (`RUNS`, `WRK_ARGS`,
//! `WORKERS`) are read from the environment too, so the same settings drive both.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// One measured load shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Plain HTTP, keep-alive.
    Http,
    /// HTTPS (TLS terminated by the proxy), keep-alive.
    Https,
    /// HTTPS with `Connection: close`: a full TLS handshake per request.
    HttpsNewconn,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Http, Scenario::Https, Scenario::HttpsNewconn];

    /// The name in `RESULT` lines and JSON (`http`, `https`, `https_newconn`).
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Http => "http",
            Scenario::Https => "https",
            Scenario::HttpsNewconn => "https_newconn",
        }
    }

    /// One line saying what the scenario measures.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Http => "plain HTTP/1.1, keep-alive",
            Scenario::Https => "HTTPS (TLS terminated by the proxy), keep-alive",
            Scenario::HttpsNewconn => {
                "HTTPS, `Connection: close`: one full TLS handshake per request \
                 (wrk's latency excludes connect + handshake; req/s is the handshake rate)"
            }
        }
    }

    pub fn is_tls(self) -> bool {
        !matches!(self, Scenario::Http)
    }

    pub fn new_connection_per_request(self) -> bool {
        matches!(self, Scenario::HttpsNewconn)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// `kokoa edge` against nginx (Debian) as a TLS-terminating reverse proxy, both in front of the
/// same upstream (an nginx answering `return 200 "ok\n"`), measured with wrk in one run,
/// alternating nginx and Kokoa, on loopback.
#[derive(Debug, Clone, Parser)]
#[command(name = "edge-bench", version)]
pub struct EdgeArgs {
    /// Measured runs per scenario and system; the report shows the median (and min / max).
    #[arg(long, env = "RUNS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: u32,
    /// wrk's load shape: `-tN -cN -dN[s|m]` (the only flags accepted; latency, Host and, for
    /// the new-connection scenario, `Connection: close` are added by the benchmark).
    #[arg(
        long,
        env = "WRK_ARGS",
        default_value = "-t2 -c64 -d10s",
        allow_hyphen_values = true
    )]
    pub wrk_args: String,
    /// nginx proxy `worker_processes` (default: the number of CPUs, like `auto`).
    #[arg(long, env = "WORKERS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: Option<u32>,
    /// Scenarios to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "http,https,https-newconn"
    )]
    pub scenarios: Vec<Scenario>,
    /// Unrecorded wrk load before each system's first run of a scenario, in seconds (0: none).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// Pause between two wrk runs, in ms (lets sockets in TIME_WAIT and CPU caches settle).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub pause_ms: u64,
    /// A run during which other processes took a noticeable share of the CPUs (see `other%`
    /// in the report) is discarded and measured again, up to this many times.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub contended_retries: u32,
    /// Measure nginx alone (no Kokoa processes, no ratios).
    #[arg(long, conflicts_with = "skip_nginx")]
    pub skip_kokoa: bool,
    /// Measure Kokoa alone (the upstream nginx still runs).
    #[arg(long)]
    pub skip_nginx: bool,
    /// An extra argument for `kokoa server` (repeatable), e.g. `--kokoa-arg=--snapshot-every=100`.
    #[arg(long = "kokoa-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub kokoa_args: Vec<String>,
    /// An extra argument for `kokoa edge` (repeatable).
    #[arg(long = "edge-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub edge_args: Vec<String>,
    /// The whole run gives up (and stops every process it started) after this many seconds.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(30..=86_400))]
    pub timeout_secs: u64,
    /// Also write every figure as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// wrk's `-t -c -d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WrkLoad {
    pub threads: u32,
    pub connections: u32,
    #[serde(rename = "duration_secs", serialize_with = "as_secs")]
    pub duration: Duration,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl WrkLoad {
    /// Parses `-t2 -c64 -d10s` (also `-t 2`, `--threads 2`, `-d 1m`); anything else is refused.
    pub fn parse(text: &str) -> anyhow::Result<WrkLoad> {
        let mut load = WrkLoad {
            threads: 2,
            connections: 64,
            duration: Duration::from_secs(10),
        };
        let mut words = text.split_whitespace();
        while let Some(word) = words.next() {
            let (flag, inline) = match word {
                w if w.starts_with("--") => (w, None),
                w if w.len() > 2 && w.starts_with('-') => (&w[..2], Some(&w[2..])),
                w => (w, None),
            };
            let mut value = || {
                inline
                    .map(str::to_string)
                    .or_else(|| words.next().map(str::to_string))
                    .ok_or_else(|| anyhow::anyhow!("WRK_ARGS: {flag} needs a value"))
            };
            match flag {
                "-t" | "--threads" => load.threads = number(flag, &value()?)?,
                "-c" | "--connections" => load.connections = number(flag, &value()?)?,
                "-d" | "--duration" => load.duration = duration(&value()?)?,
                other => anyhow::bail!(
                    "WRK_ARGS: {other:?} is not supported (only -t, -c and -d; the benchmark \
                     adds --latency and the headers itself)"
                ),
            }
        }
        anyhow::ensure!(
            load.threads >= 1 && load.connections >= load.threads,
            "WRK_ARGS: need at least one thread and at least as many connections as threads"
        );
        anyhow::ensure!(
            (1..=3600).contains(&load.duration.as_secs()),
            "WRK_ARGS: -d must be 1 s to 1 h"
        );
        Ok(load)
    }

    /// `-t2 -c64 -d10s`.
    pub fn args(&self) -> Vec<String> {
        vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", self.duration.as_secs()),
        ]
    }
}

impl fmt::Display for WrkLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.args().join(" "))
    }
}

fn number(flag: &str, text: &str) -> anyhow::Result<u32> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("WRK_ARGS: {flag} {text:?} is not a number"))
}

/// `10`, `10s`, `2m` (wrk's own suffixes; `h` is refused as longer than the 1 h bound anyway).
fn duration(text: &str) -> anyhow::Result<Duration> {
    let (digits, unit) = match text.strip_suffix('s') {
        Some(d) => (d, 1),
        None => match text.strip_suffix('m') {
            Some(d) => (d, 60),
            None => (text, 1),
        },
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("WRK_ARGS: -d {text:?} is not a duration like 10s"))?;
    Ok(Duration::from_secs(n * unit))
}

impl EdgeArgs {
    /// Checks what clap cannot express; returns wrk's load shape.
    pub fn validate(&self) -> anyhow::Result<WrkLoad> {
        anyhow::ensure!(
            !self.scenarios.is_empty(),
            "--scenarios needs at least one value"
        );
        WrkLoad::parse(&self.wrk_args)
    }

    /// The scenarios in the order given, each once.
    pub fn scenarios(&self) -> Vec<Scenario> {
        let mut seen = Vec::new();
        for s in &self.scenarios {
            if !seen.contains(s) {
                seen.push(*s);
            }
        }
        seen
    }

    /// nginx's `worker_processes`: `--workers`, else the number of CPUs.
    pub fn nginx_workers(&self) -> u32 {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_peer_script() {
        let args = EdgeArgs::try_parse_from(["edge-bench"]).expect("parse defaults");
        assert_eq!(args.scenarios(), Scenario::ALL.to_vec());
        let load = args.validate().expect("valid");
        assert_eq!(
            load,
            WrkLoad {
                threads: 2,
                connections: 64,
                duration: Duration::from_secs(10)
            }
        );
        assert_eq!(load.to_string(), "-t2 -c64 -d10s");
        assert!(args.nginx_workers() >= 1);
    }

    #[test]
    fn parses_wrk_args_in_several_spellings() {
        let load = WrkLoad::parse("-t 4 --connections 128 -d1m").expect("parse");
        assert_eq!(
            (load.threads, load.connections, load.duration.as_secs()),
            (4, 128, 60)
        );
        assert_eq!(WrkLoad::parse("-d5").expect("parse").duration.as_secs(), 5);
        assert!(WrkLoad::parse("-t2 --latency").is_err());
        assert!(WrkLoad::parse("-t4 -c2").is_err());
        assert!(WrkLoad::parse("-d0s").is_err());
        assert!(WrkLoad::parse("-c").is_err());
    }

    #[test]
    fn scenarios_are_deduplicated_in_order() {
        let args = EdgeArgs::try_parse_from([
            "edge-bench",
            "--scenarios",
            "https-newconn,http,https-newconn",
            "--skip-kokoa",
        ])
        .expect("parse");
        assert_eq!(
            args.scenarios(),
            vec![Scenario::HttpsNewconn, Scenario::Http]
        );
        assert!(args.skip_kokoa);
        assert!(EdgeArgs::try_parse_from(["edge-bench", "--skip-kokoa", "--skip-nginx"]).is_err());
    }
}
