//! Running dnsperf (Debian) and reading its report: queries/s, completed / lost, response codes,
//! average / min / max / stddev latency; with `-v`, one line per query (`> RCODE NAME TYPE
//! SECONDS`), from which the latency pass takes percentiles.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

/// What one dnsperf run printed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DnsperfOutput {
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    pub qps: f64,
    pub avg_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub stddev_ms: f64,
    /// `Response codes:` line, e.g. `NOERROR 100 (100.00%)`.
    pub rcodes: String,
    /// Per-query latencies in ms (only with `-v`), sorted ascending.
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

impl DnsperfOutput {
    /// Every answer was NOERROR.
    pub fn all_noerror(&self) -> bool {
        self.rcodes.starts_with("NOERROR") && !self.rcodes.contains(',')
    }
}

/// `dnsperf -s ADDR -p PORT -d QUERIES -l SECS FLAGS...` (plus `-v` when `verbose`), bounded by
/// `timeout` (dnsperf waits up to 5 s for lost queries after `-l`).
pub fn run(
    addr: SocketAddr,
    queries: &Path,
    secs: u64,
    flags: &[String],
    verbose: bool,
) -> anyhow::Result<DnsperfOutput> {
    let limit = secs + 30;
    let mut command = Command::new("timeout");
    command
        .arg(limit.to_string())
        .arg("dnsperf")
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(queries)
        .args(["-l", &secs.to_string()])
        .args(flags)
        .stdin(Stdio::null());
    if verbose {
        command.arg("-v");
    }
    let output = command.output().context("run dnsperf")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let parsed = parse(&text);
    anyhow::ensure!(
        parsed.completed > 0,
        "dnsperf against {addr} completed no query ({}): {}{}",
        output.status,
        text.lines().rev().take(30).collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(parsed)
}

fn num(text: &str) -> f64 {
    text.trim_matches(|c: char| !c.is_ascii_digit() && c != '.')
        .parse()
        .unwrap_or(0.0)
}

/// Parses dnsperf 2.x output (the summary, and `-v` query lines when present).
pub fn parse(text: &str) -> DnsperfOutput {
    let mut out = DnsperfOutput::default();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("> ") {
            // `> NOERROR h1.bench.test A 0.000123`
            if let Some(secs) = rest
                .split_whitespace()
                .last()
                .and_then(|v| v.parse::<f64>().ok())
            {
                out.latencies_ms.push(secs * 1000.0);
            }
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let first = value.split_whitespace().next().unwrap_or("");
        match key.trim() {
            "Queries sent" => out.sent = num(first) as u64,
            "Queries completed" => out.completed = num(first) as u64,
            "Queries lost" => out.lost = num(first) as u64,
            "Queries per second" => out.qps = num(first),
            "Response codes" => out.rcodes = value.trim().to_string(),
            "Average Latency (s)" => {
                // `0.000123 (min 0.000010, max 0.001234)`
                let words: Vec<&str> = value.split_whitespace().collect();
                out.avg_ms = num(first) * 1000.0;
                if let Some(at) = words.iter().position(|w| *w == "(min") {
                    out.min_ms = words.get(at + 1).map_or(0.0, |w| num(w)) * 1000.0;
                }
                if let Some(at) = words.iter().position(|w| *w == "max") {
                    out.max_ms = words.get(at + 1).map_or(0.0, |w| num(w)) * 1000.0;
                }
            }
            "Latency StdDev (s)" => out.stddev_ms = num(first) * 1000.0,
            _ => {}
        }
    }
    out.latencies_ms.sort_by(f64::total_cmp);
    out
}

/// The dnsperf version line, e.g. `Version 2.10.0`.
pub fn version() -> anyhow::Result<String> {
    let out = Command::new("dnsperf")
        .arg("-h")
        .output()
        .context("dnsperf not found: apt-get install dnsperf (bench/dns-bench.sh does)")?;
    let mut all = out.stdout;
    all.extend(out.stderr);
    Ok(String::from_utf8_lossy(&all)
        .lines()
        .find(|l| l.starts_with("Version"))
        .map_or_else(
            || "unknown".into(),
            |l| l.trim_start_matches("Version ").to_string(),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report() {
        let text = "DNS Performance Testing Tool\nVersion 2.10.0\n\n\
> NOERROR h1.bench.test A 0.000200\n\
> NOERROR h2.bench.test A 0.000100\n\
Statistics:\n\n  Queries sent:         1000\n  Queries completed:    998 (99.80%)\n\
  Queries lost:         2 (0.20%)\n\n  Response codes:       NOERROR 998 (100.00%)\n\
  Average packet size:  request 33, response 81\n  Run time (s):         10.000\n\
  Queries per second:   99.800000\n\n\
  Average Latency (s):  0.000123 (min 0.000010, max 0.001234)\n\
  Latency StdDev (s):   0.000050\n";
        let out = parse(text);
        assert_eq!((out.sent, out.completed, out.lost), (1000, 998, 2));
        assert!((out.qps - 99.8).abs() < 1e-9);
        assert!((out.avg_ms - 0.123).abs() < 1e-9);
        assert!((out.min_ms - 0.010).abs() < 1e-9);
        assert!((out.max_ms - 1.234).abs() < 1e-9);
        assert!((out.stddev_ms - 0.05).abs() < 1e-9);
        assert!(out.all_noerror());
        assert_eq!(out.latencies_ms.len(), 2);
        assert!((out.latencies_ms[0] - 0.1).abs() < 1e-9);
    }
}
