//! Running Debian's `wrk` (bounded in time, killed when dropped) and reading its `--latency`
//! output, as `shared/peers/lib.sh` `wrk_parse` does.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use super::cli::WrkLoad;

/// wrk may overrun its `-d` by this much (connection teardown, report) before it is killed.
const OVERRUN: Duration = Duration::from_secs(30);

/// What one wrk run printed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WrkOutput {
    pub requests_per_s: f64,
    /// Completed requests (`N requests in T`).
    pub requests: u64,
    pub p50_ms: Option<f64>,
    pub p75_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The slowest request (`Latency ... Max`).
    pub max_ms: Option<f64>,
    /// Responses with a status above 399 (wrk's "Non-2xx or 3xx responses" counts only those).
    pub bad_status: u64,
    /// Socket errors: connect, read, write, timeout.
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
}

impl WrkOutput {
    /// Every kind of error wrk counts.
    pub fn errors(&self) -> u64 {
        self.bad_status + self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }

    /// Parses wrk's text output; `None` when there is no `Requests/sec` line.
    pub fn parse(text: &str) -> Option<WrkOutput> {
        let mut out = WrkOutput::default();
        let mut have_rate = false;
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["Requests/sec:", rate, ..] => {
                    out.requests_per_s = rate.parse().ok()?;
                    have_rate = true;
                }
                ["50%", v, ..] => out.p50_ms = time_ms(v),
                ["75%", v, ..] => out.p75_ms = time_ms(v),
                ["90%", v, ..] => out.p90_ms = time_ms(v),
                ["99%", v, ..] => out.p99_ms = time_ms(v),
                ["Latency", _avg, _stdev, max, ..] => out.max_ms = time_ms(max),
                [n, "requests", "in", ..] => out.requests = n.parse().unwrap_or(0),
                ["Non-2xx", "or", "3xx", "responses:", n, ..] => {
                    out.bad_status = n.parse().unwrap_or(0);
                }
                ["Socket", "errors:", rest @ ..] => {
                    // connect 0, read 12, write 0, timeout 3
                    for pair in rest.chunks(2) {
                        if let [name, n] = pair {
                            let n = n.trim_end_matches(',').parse().unwrap_or(0);
                            match *name {
                                "connect" => out.connect_errors = n,
                                "read" => out.read_errors = n,
                                "write" => out.write_errors = n,
                                "timeout" => out.timeouts = n,
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        have_rate.then_some(out)
    }
}

/// `1.89ms`, `620.00us`, `1.02s`, `1.50m` in ms.
fn time_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().ok().map(|v| v * scale)
}

/// One wrk invocation: the load, the URL and extra headers (`Host` always).
#[derive(Debug, Clone)]
pub struct WrkRun {
    pub load: WrkLoad,
    pub url: String,
    pub headers: Vec<String>,
}

impl WrkRun {
    /// The command line after `wrk`.
    pub fn args(&self) -> Vec<String> {
        let mut args = self.load.args();
        args.push("--latency".into());
        for header in &self.headers {
            args.extend(["-H".into(), header.clone()]);
        }
        args.push(self.url.clone());
        args
    }

    /// Runs wrk to the end (killed after `-d` + 30 s); its parsed output and raw text.
    pub async fn run(&self) -> anyhow::Result<(WrkOutput, String)> {
        let child = tokio::process::Command::new("wrk")
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawn wrk (apt-get install wrk)")?;
        let limit = self.load.duration + OVERRUN;
        let output = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .map_err(|_| anyhow::anyhow!("wrk did not finish within {limit:?}; killed"))?
            .context("wait for wrk")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        anyhow::ensure!(
            output.status.success(),
            "wrk {} exited with {}:\n{text}",
            self.args().join(" "),
            output.status
        );
        let parsed = WrkOutput::parse(&text)
            .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
        Ok((parsed, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ https://127.0.0.1:18443/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.89ms    1.02ms  30.12ms   90.12%
    Req/Sec    17.12k     1.23k   19.00k    70.00%
  Latency Distribution
     50%  620.00us
     75%    2.10ms
     90%    2.50ms
     99%    1.02s
  340450 requests in 10.00s, 45.12MB read
  Socket errors: connect 0, read 12, write 1, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  34045.00
Transfer/sec:      4.51MB
";

    #[test]
    fn parses_latency_distribution_and_errors() {
        let out = WrkOutput::parse(SAMPLE).expect("parse");
        assert_eq!(out.requests_per_s, 34045.0);
        assert_eq!(out.requests, 340_450);
        assert_eq!(out.p50_ms, Some(0.62));
        assert_eq!(out.p75_ms, Some(2.1));
        assert_eq!(out.p99_ms, Some(1020.0));
        assert_eq!(out.max_ms, Some(30.12));
        assert_eq!(
            (
                out.connect_errors,
                out.read_errors,
                out.write_errors,
                out.timeouts,
                out.bad_status
            ),
            (0, 12, 1, 3, 7)
        );
        assert_eq!(out.errors(), 23);
    }

    #[test]
    fn no_rate_no_result() {
        assert!(WrkOutput::parse("unable to connect to 127.0.0.1:1 Connection refused").is_none());
        let clean = SAMPLE
            .lines()
            .filter(|l| !l.contains("errors") && !l.contains("Non-2xx"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(WrkOutput::parse(&clean).expect("parse").errors(), 0);
    }

    #[test]
    fn builds_the_command_line() {
        let run = WrkRun {
            load: WrkLoad::parse("-t2 -c64 -d10s").expect("load"),
            url: "https://127.0.0.1:1/".into(),
            headers: vec!["Host: bench.example.com".into(), "Connection: close".into()],
        };
        assert_eq!(
            run.args().join(" "),
            "-t2 -c64 -d10s --latency -H Host: bench.example.com -H Connection: close https://127.0.0.1:1/"
        );
    }
}
