//! The figures of an edge-bench run: one table per scenario (Kokoa and nginx side by side, the
//! ratios under it), `RESULT` lines in the format of `shared/peers/nginx.sh`, and the same data
//! as JSON (`--json`).
//!
//! Ratios are Kokoa / nginx: a req/s ratio above 1 and a latency or memory ratio below 1 favour
//! Kokoa.

use std::fmt::{self, Write as _};

use serde::Serialize;

use super::cli::{EdgeArgs, Scenario, WrkLoad};
use super::wrk::WrkOutput;
use crate::stats::Summary;

/// Which proxy a figure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proxy {
    Nginx,
    Kokoa,
}

impl Proxy {
    pub fn as_str(self) -> &'static str {
        match self {
            Proxy::Nginx => "nginx",
            Proxy::Kokoa => "kokoa",
        }
    }

    /// The prefix of its `RESULT` lines (`nginx_proxy` as in `shared/peers/nginx.sh`).
    pub fn result_name(self) -> &'static str {
        match self {
            Proxy::Nginx => "nginx_proxy",
            Proxy::Kokoa => "kokoa_edge",
        }
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run where other processes took more than this much CPU (% of one core) is flagged.
pub const OTHER_CPU_WARN_PCT: f64 = 15.0;

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeReport {
    pub settings: Settings,
    pub machine: Machine,
    pub runs: Vec<RunRow>,
    pub summaries: Vec<ScenarioSummary>,
    pub ratios: Vec<RatioRow>,
    /// Idle RSS (after setup and one probe request), KiB.
    pub rss_kib_idle: Vec<(Proxy, u64)>,
    /// Warnings and skipped scenarios, in the order they happened.
    pub notes: Vec<String>,
    pub edge_log: Option<LogSummary>,
}

/// The flags of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub runs: u32,
    pub wrk: WrkLoad,
    pub scenarios: Vec<Scenario>,
    pub warmup_secs: u64,
    pub pause_ms: u64,
    pub contended_retries: u32,
    pub nginx_workers: u32,
    pub kokoa_server_args: Vec<String>,
    pub kokoa_edge_args: Vec<String>,
}

/// Where and with what it ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub nginx_version: String,
    pub wrk_version: String,
    pub kokoa_bin: Option<String>,
    /// What `openssl s_client` negotiates with each proxy, connecting as wrk does.
    pub tls_nginx: Option<String>,
    pub tls_kokoa: Option<String>,
    pub edge_listening: Option<String>,
    /// The control-plane replica's RSS after the run, KiB (not counted in Kokoa's RSS).
    pub replica_rss_kib: Option<u64>,
    /// How busy the whole box was over 2 s before anything started, %.
    pub busy_pct_before: Option<f64>,
    #[serde(flatten)]
    pub load: crate::report::HostLoad,
}

/// One wrk run against one proxy.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub scenario: Scenario,
    pub proxy: Proxy,
    pub run: u32,
    pub wrk: WrkOutput,
    /// CPU of the proxy's processes during the run, % of one core.
    pub proxy_cpu_pct: f64,
    /// CPU of the upstream nginx during the run, % of one core.
    pub upstream_cpu_pct: f64,
    /// CPU of wrk during the run, % of one core.
    pub wrk_cpu_pct: f64,
    /// CPU the box spent on anything else (neither proxy, upstream, wrk nor this program), % of
    /// one core: above [`OTHER_CPU_WARN_PCT`] something else competed for the CPUs.
    pub other_cpu_pct: Option<f64>,
    /// Whole box busy / steal during the run, %.
    pub busy_pct: Option<f64>,
    pub steal_pct: Option<f64>,
    /// TCP connections accepted on the box (any port) per completed request: about 1 when
    /// every request comes on a new connection, about 0 with keep-alive on both hops; 2 means
    /// the proxy also opened a new upstream connection per request.
    pub accepted_per_request: Option<f64>,
    /// RSS of the proxy's processes right after the run, KiB.
    pub rss_kib_after: u64,
}

impl RunRow {
    /// The proxy's CPU time per completed request, µs: what a request costs the proxy,
    /// whatever share of the box the load generator took.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        (self.wrk.requests_per_s > 0.0)
            .then(|| self.proxy_cpu_pct / 100.0 * 1e6 / self.wrk.requests_per_s)
    }

    /// The progress line for one run.
    pub fn one_line(&self) -> String {
        format!(
            "{} {} run {}: req/s={:.0} p50={}ms p99={}ms max={}ms errors={} proxy cpu={:.0}% ({}µs/req) upstream cpu={:.0}% wrk cpu={:.0}% accepted/req={} rss={:.1}MiB (box busy {}%, other {}%, steal {}%){}",
            self.proxy,
            self.scenario,
            self.run,
            self.wrk.requests_per_s,
            opt(self.wrk.p50_ms, 2),
            opt(self.wrk.p99_ms, 2),
            opt(self.wrk.max_ms, 1),
            self.wrk.errors(),
            self.proxy_cpu_pct,
            opt(self.cpu_us_per_request(), 1),
            self.upstream_cpu_pct,
            self.wrk_cpu_pct,
            opt(self.accepted_per_request, 2),
            self.rss_kib_after as f64 / 1024.0,
            opt(self.busy_pct, 0),
            opt(self.other_cpu_pct, 0),
            opt(self.steal_pct, 1),
            if self.contended() {
                " CONTENDED: other processes competed for the CPUs"
            } else {
                ""
            },
        )
    }

    /// Other processes took a noticeable share of the CPUs during the run.
    pub fn contended(&self) -> bool {
        self.other_cpu_pct.is_some_and(|o| o > OTHER_CPU_WARN_PCT)
    }
}

/// All runs of one scenario against one proxy.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioSummary {
    pub scenario: Scenario,
    pub proxy: Proxy,
    pub req_per_s: Summary,
    pub p50_ms: Option<Summary>,
    pub p99_ms: Option<Summary>,
    pub max_ms: Option<Summary>,
    /// Errors over all runs (statuses above 399, socket errors, timeouts).
    pub errors: u64,
    pub proxy_cpu_pct: Summary,
    /// The proxy's CPU time per request, µs.
    pub cpu_us_per_request: Option<Summary>,
    pub upstream_cpu_pct: Summary,
    pub accepted_per_request: Option<Summary>,
    pub steal_pct_max: Option<f64>,
    /// wrk's CPU, % of one core.
    pub wrk_cpu_pct: Summary,
    /// The most CPU other processes took in one run, % of one core.
    pub other_cpu_pct_max: Option<f64>,
    /// Runs where other processes competed for the CPUs.
    pub contended_runs: usize,
    /// RSS after this scenario's last run, KiB.
    pub rss_kib_after: u64,
}

/// Kokoa / nginx for one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct RatioRow {
    pub scenario: Scenario,
    pub req_per_s: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// Proxy CPU time per request.
    pub cpu_per_request: Option<f64>,
    pub rss_after: Option<f64>,
}

/// What the edge logged during the run (a log line per request or handshake costs).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogSummary {
    pub path: String,
    pub lines: usize,
    pub bytes: usize,
    pub warn: usize,
    pub error: usize,
    /// The most frequent WARN / ERROR messages (timestamps stripped), with counts.
    pub top: Vec<(usize, String)>,
}

impl LogSummary {
    pub fn of(log: &str, path: String) -> LogSummary {
        let mut counts: Vec<(usize, String)> = Vec::new();
        let mut warn = 0;
        let mut error = 0;
        for line in log.lines() {
            let level = if line.contains(" WARN ") {
                warn += 1;
                true
            } else if line.contains(" ERROR ") {
                error += 1;
                true
            } else {
                false
            };
            if level {
                // Drop the timestamp (first word) so equal messages group.
                let message = line
                    .split_once(' ')
                    .map_or(line, |(_, rest)| rest)
                    .trim()
                    .chars()
                    .take(160)
                    .collect::<String>();
                if let Some((n, _)) = counts.iter_mut().find(|(_, m)| *m == message) {
                    *n += 1;
                } else if counts.len() < 1000 {
                    counts.push((1, message));
                }
            }
        }
        counts.sort_by_key(|c| std::cmp::Reverse(c.0));
        counts.truncate(5);
        LogSummary {
            path,
            lines: log.lines().count(),
            bytes: log.len(),
            warn,
            error,
            top: counts,
        }
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// `48,085`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

impl EdgeReport {
    pub fn new(args: &EdgeArgs, wrk: WrkLoad) -> EdgeReport {
        EdgeReport {
            settings: Settings {
                runs: args.runs,
                wrk,
                scenarios: args.scenarios(),
                warmup_secs: args.warmup_secs,
                pause_ms: args.pause_ms,
                contended_retries: args.contended_retries,
                nginx_workers: args.nginx_workers(),
                kokoa_server_args: args.kokoa_args.clone(),
                kokoa_edge_args: args.edge_args.clone(),
            },
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
                ..Machine::default()
            },
            runs: Vec::new(),
            summaries: Vec::new(),
            ratios: Vec::new(),
            rss_kib_idle: Vec::new(),
            notes: Vec::new(),
            edge_log: None,
        }
    }

    /// Computes the summaries and ratios from the runs.
    pub fn finish(&mut self) {
        self.summaries.clear();
        for &scenario in &self.settings.scenarios {
            for proxy in [Proxy::Nginx, Proxy::Kokoa] {
                let runs: Vec<&RunRow> = self
                    .runs
                    .iter()
                    .filter(|r| r.scenario == scenario && r.proxy == proxy)
                    .collect();
                if let Some(summary) = summarize(scenario, proxy, &runs) {
                    self.summaries.push(summary);
                }
            }
        }
        self.ratios = self
            .settings
            .scenarios
            .iter()
            .filter_map(|&scenario| {
                let nginx = self.summary(scenario, Proxy::Nginx)?;
                let kokoa = self.summary(scenario, Proxy::Kokoa)?;
                let median = |s: Option<Summary>| s.map(|s| s.median);
                Some(RatioRow {
                    scenario,
                    req_per_s: ratio(Some(kokoa.req_per_s.median), Some(nginx.req_per_s.median)),
                    p50: ratio(median(kokoa.p50_ms), median(nginx.p50_ms)),
                    p99: ratio(median(kokoa.p99_ms), median(nginx.p99_ms)),
                    cpu_per_request: ratio(
                        median(kokoa.cpu_us_per_request),
                        median(nginx.cpu_us_per_request),
                    ),
                    rss_after: ratio(
                        Some(kokoa.rss_kib_after as f64),
                        Some(nginx.rss_kib_after as f64),
                    ),
                })
            })
            .collect();
    }

    fn summary(&self, scenario: Scenario, proxy: Proxy) -> Option<&ScenarioSummary> {
        self.summaries
            .iter()
            .find(|s| s.scenario == scenario && s.proxy == proxy)
    }

    fn idle(&self, proxy: Proxy) -> Option<u64> {
        self.rss_kib_idle
            .iter()
            .find(|(p, _)| *p == proxy)
            .map(|(_, kib)| *kib)
    }

    /// Tables, then `RESULT` lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let m = &self.machine;
        let _ = writeln!(
            out,
            "\n== Edge proxy: kokoa edge vs nginx {} (Debian), same upstream, loopback, {} CPUs (load generator included) ==",
            m.nginx_version, m.cpus
        );
        let _ = writeln!(
            out,
            "upstream: nginx `return 200 \"ok\\n\"`, 1 worker, shared by both; every request `Host: bench.example.com`; wrk sends SNI `127.0.0.1` (the URL's IP), so both proxies serve their fallback certificate"
        );
        let _ = writeln!(
            out,
            "nginx proxy: worker_processes {}, upstream keepalive 64, proxy_http_version 1.1, access_log off, ECDSA P-256 self-signed; RSS = master + workers",
            s.nginx_workers
        );
        if let Some(bin) = &m.kokoa_bin {
            let _ = writeln!(
                out,
                "kokoa edge: {bin}, route rate limit 1,000,000/s; RSS = the edge process only (the control-plane replica, {} MiB, is not counted)",
                m.replica_rss_kib.map_or("-".into(), mib)
            );
        }
        if let Some(tls) = &m.tls_nginx {
            let _ = writeln!(out, "TLS nginx (openssl s_client, as wrk): {tls}");
        }
        if let Some(tls) = &m.tls_kokoa {
            let _ = writeln!(out, "TLS kokoa (openssl s_client, as wrk): {tls}");
        }
        let _ = writeln!(
            out,
            "wrk ({}): {} --latency -H 'Host: bench.example.com'; {} s warm-up per proxy and scenario; median (min–max) of {} runs, alternating nginx, kokoa",
            m.wrk_version,
            s.wrk,
            s.warmup_secs,
            s.runs
        );
        if !s.kokoa_server_args.is_empty() || !s.kokoa_edge_args.is_empty() {
            let _ = writeln!(
                out,
                "extra arguments: kokoa server {:?}, kokoa edge {:?}",
                s.kokoa_server_args, s.kokoa_edge_args
            );
        }
        if !m.load.busy_at_start.is_empty() {
            let _ = writeln!(
                out,
                "WARNING: running at the start (figures are skewed): {}",
                m.load.busy_at_start.join(" ")
            );
        }
        if let Some(busy) = m.busy_pct_before {
            let verdict = if busy > super::QUIET_BUSY_PCT {
                "WARNING: not quiet, something else runs; figures are skewed"
            } else {
                "quiet"
            };
            let _ = writeln!(
                out,
                "box busy before the run: {busy:.0}% ({verdict}); load average {} → {}",
                m.load.load_average_start.as_deref().unwrap_or("-"),
                m.load.load_average_end.as_deref().unwrap_or("-")
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "NOTE: {note}");
        }

        for &scenario in &s.scenarios {
            let _ = writeln!(out, "\n-- {scenario}: {} --", scenario.describe());
            let _ = writeln!(
                out,
                "{:<6} {:>8} {:>17} {:>7} {:>7} {:>8} {:>7} {:>6} {:>7} {:>6} {:>6} {:>7} {:>9} {:>9} {:>7} {:>7}",
                "proxy",
                "req/s",
                "(min–max)",
                "p50 ms",
                "p99 ms",
                "max ms",
                "errors",
                "cpu%",
                "µs/req",
                "up%",
                "wrk%",
                "acc/req",
                "RSS idle",
                "RSS after",
                "other%",
                "steal%"
            );
            for proxy in [Proxy::Nginx, Proxy::Kokoa] {
                let Some(r) = self.summary(scenario, proxy) else {
                    continue;
                };
                let median = |s: Option<Summary>, d: usize| opt(s.map(|s| s.median), d);
                let _ = writeln!(
                    out,
                    "{:<6} {:>8} {:>17} {:>7} {:>7} {:>8} {:>7} {:>6.0} {:>7} {:>6.0} {:>6.0} {:>7} {:>9} {:>9} {:>7} {:>7}",
                    proxy.as_str(),
                    thousands(r.req_per_s.median),
                    format!(
                        "({}–{})",
                        thousands(r.req_per_s.min),
                        thousands(r.req_per_s.max)
                    ),
                    median(r.p50_ms, 2),
                    median(r.p99_ms, 2),
                    median(r.max_ms, 1),
                    r.errors,
                    r.proxy_cpu_pct.median,
                    median(r.cpu_us_per_request, 1),
                    r.upstream_cpu_pct.median,
                    r.wrk_cpu_pct.median,
                    median(r.accepted_per_request, 2),
                    self.idle(proxy).map_or("-".into(), mib),
                    mib(r.rss_kib_after),
                    opt(r.other_cpu_pct_max, 0),
                    opt(r.steal_pct_max, 1),
                );
                if r.contended_runs > 0 {
                    let _ = writeln!(
                        out,
                        "       WARNING: {} of {} runs had other processes taking over {OTHER_CPU_WARN_PCT:.0}% of a core even after retries: rerun on a quiet box",
                        r.contended_runs, r.req_per_s.n
                    );
                }
            }
            if let Some(r) = self.ratios.iter().find(|r| r.scenario == scenario) {
                let _ = writeln!(
                    out,
                    "kokoa/nginx: req/s {}  p50 {}  p99 {}  CPU per request {}  RSS after {}",
                    opt(r.req_per_s, 2),
                    opt(r.p50, 2),
                    opt(r.p99, 2),
                    opt(r.cpu_per_request, 2),
                    opt(r.rss_after, 2)
                );
            }
        }
        let _ = writeln!(
            out,
            "\ncpu% = the proxy's processes, µs/req = their CPU time per request, up% = the upstream nginx, wrk% = the load generator, other% = anything else on the box (the worst run), all medians in % of one core; acc/req = TCP connections accepted on the box per request (≈0 keep-alive on both hops, ≈1 one client connection per request, +1 if the proxy dials the upstream per request); RSS in MiB"
        );
        if let Some(log) = &self.edge_log {
            let _ = writeln!(
                out,
                "kokoa edge log: {} lines ({} KiB), {} WARN, {} ERROR ({})",
                log.lines,
                log.bytes / 1024,
                log.warn,
                log.error,
                log.path
            );
            for (n, message) in &log.top {
                let _ = writeln!(out, "  {n} × {message}");
            }
        }

        let _ = writeln!(out);
        for summary in &self.summaries {
            let name = format!(
                "{}_{}",
                summary.proxy.result_name(),
                summary.scenario.label()
            );
            let _ = writeln!(out, "RESULT {name} req/s   {}", stats(summary.req_per_s, 0));
            if let Some(p50) = summary.p50_ms {
                let _ = writeln!(out, "RESULT {name} p50_ms  {}", stats(p50, 2));
            }
            if let Some(p99) = summary.p99_ms {
                let _ = writeln!(out, "RESULT {name} p99_ms  {}", stats(p99, 2));
            }
            if let Some(cpu) = summary.cpu_us_per_request {
                let _ = writeln!(out, "RESULT {name} cpu_us_per_req {}", stats(cpu, 1));
            }
            let _ = writeln!(out, "RESULT {name} errors  {}", summary.errors);
        }
        for proxy in [Proxy::Nginx, Proxy::Kokoa] {
            if let Some(kib) = self.idle(proxy) {
                let _ = writeln!(out, "RESULT {} rss_kb_idle {kib}", proxy.result_name());
            }
            for summary in self.summaries.iter().filter(|s| s.proxy == proxy) {
                let _ = writeln!(
                    out,
                    "RESULT {} rss_kb_after_{} {}",
                    proxy.result_name(),
                    summary.scenario.label(),
                    summary.rss_kib_after
                );
            }
        }
        for r in &self.ratios {
            let _ = writeln!(
                out,
                "RESULT ratio {} req/s(kokoa/nginx)={} p50(kokoa/nginx)={} p99(kokoa/nginx)={} cpu_per_req(kokoa/nginx)={} rss_after(kokoa/nginx)={}",
                r.scenario,
                opt(r.req_per_s, 2),
                opt(r.p50, 2),
                opt(r.p99, 2),
                opt(r.cpu_per_request, 2),
                opt(r.rss_after, 2)
            );
        }
        out
    }
}

/// `median=X min=Y max=Z n=N`, as `shared/peers/lib.sh` prints it.
fn stats(s: Summary, decimals: usize) -> String {
    format!(
        "median={:.d$} min={:.d$} max={:.d$} n={}",
        s.median,
        s.min,
        s.max,
        s.n,
        d = decimals
    )
}

fn summarize(scenario: Scenario, proxy: Proxy, runs: &[&RunRow]) -> Option<ScenarioSummary> {
    let of = |f: &dyn Fn(&RunRow) -> Option<f64>| {
        Summary::of(&runs.iter().filter_map(|r| f(r)).collect::<Vec<f64>>())
    };
    Some(ScenarioSummary {
        scenario,
        proxy,
        req_per_s: of(&|r| Some(r.wrk.requests_per_s))?,
        p50_ms: of(&|r| r.wrk.p50_ms),
        p99_ms: of(&|r| r.wrk.p99_ms),
        max_ms: of(&|r| r.wrk.max_ms),
        errors: runs.iter().map(|r| r.wrk.errors()).sum(),
        proxy_cpu_pct: of(&|r| Some(r.proxy_cpu_pct))?,
        cpu_us_per_request: of(&|r| r.cpu_us_per_request()),
        upstream_cpu_pct: of(&|r| Some(r.upstream_cpu_pct))?,
        accepted_per_request: of(&|r| r.accepted_per_request),
        steal_pct_max: runs
            .iter()
            .filter_map(|r| r.steal_pct)
            .max_by(f64::total_cmp),
        wrk_cpu_pct: of(&|r| Some(r.wrk_cpu_pct))?,
        other_cpu_pct_max: runs
            .iter()
            .filter_map(|r| r.other_cpu_pct)
            .max_by(f64::total_cmp),
        contended_runs: runs.iter().filter(|r| r.contended()).count(),
        rss_kib_after: runs.last()?.rss_kib_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run(proxy: Proxy, n: u32, rps: f64, p99: f64) -> RunRow {
        RunRow {
            scenario: Scenario::Https,
            proxy,
            run: n,
            wrk: WrkOutput {
                requests_per_s: rps,
                requests: rps as u64 * 10,
                p50_ms: Some(1.0),
                p99_ms: Some(p99),
                ..WrkOutput::default()
            },
            proxy_cpu_pct: 100.0,
            upstream_cpu_pct: 50.0,
            wrk_cpu_pct: 40.0,
            other_cpu_pct: Some(2.0),
            busy_pct: Some(99.0),
            steal_pct: Some(0.5),
            accepted_per_request: Some(0.0),
            rss_kib_after: 10_240 * u64::from(n),
        }
    }

    #[test]
    fn medians_and_ratios_are_kokoa_over_nginx() {
        let args = EdgeArgs::try_parse_from(["edge-bench", "--scenarios", "https"]).expect("args");
        let load = args.validate().expect("load");
        let mut report = EdgeReport::new(&args, load);
        for (n, rps) in [(1, 30_000.0), (2, 40_000.0), (3, 35_000.0)] {
            report.runs.push(run(Proxy::Nginx, n, rps, 4.0));
            report.runs.push(run(Proxy::Kokoa, n, rps / 2.0, 8.0));
        }
        report.rss_kib_idle = vec![(Proxy::Nginx, 20_480), (Proxy::Kokoa, 10_240)];
        report.finish();
        let nginx = report
            .summary(Scenario::Https, Proxy::Nginx)
            .expect("nginx");
        assert_eq!(nginx.req_per_s.median, 35_000.0);
        assert_eq!(nginx.rss_kib_after, 30_720);
        let r = &report.ratios[0];
        assert_eq!(
            (r.req_per_s, r.p99, r.rss_after),
            (Some(0.5), Some(2.0), Some(1.0))
        );
        let text = report.render();
        assert!(
            text.contains("RESULT nginx_proxy_https req/s   median=35000 min=30000 max=40000 n=3")
        );
        assert!(text.contains("RESULT kokoa_edge_https p99_ms  median=8.00"));
        assert!(text.contains("RESULT kokoa_edge rss_kb_idle 10240"));
        assert!(text.contains("RESULT ratio https req/s(kokoa/nginx)=0.50 p50(kokoa/nginx)=1.00 p99(kokoa/nginx)=2.00"));
        assert!(text.contains("35,000"));
    }

    #[test]
    fn log_summary_groups_warnings() {
        let log = "2025-01-01T00:00:00Z  WARN edge: handshake failed\n\
                   2025-01-01T00:00:01Z  WARN edge: handshake failed\n\
                   2025-01-01T00:00:02Z  INFO edge: edge listening\n\
                   2025-01-01T00:00:03Z ERROR edge: upstream refused\n";
        let s = LogSummary::of(log, "x".into());
        assert_eq!((s.lines, s.warn, s.error), (4, 2, 1));
        assert_eq!(s.top[0], (2, "WARN edge: handshake failed".to_string()));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(48_085.4), "48,085");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}
