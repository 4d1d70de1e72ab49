//! The DNS benchmark's report: one row per dnsperf run, medians per server, Kokoa / NSD and
//! Kokoa / Knot ratios, the target verdict, `RESULT` lines in the style of
//! `shared/peers/knot.sh` / `nsd.sh`, and the same data as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::dnsperf::DnsperfOutput;
use crate::stats::{percentile, Summary};

/// The target of issue 6: Kokoa answers at least this share of NSD's queries/s.
pub const TARGET_SHARE_OF_NSD: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    Kokoa,
    Nsd,
    Knot,
}

impl Server {
    pub fn as_str(self) -> &'static str {
        match self {
            Server::Kokoa => "kokoa",
            Server::Nsd => "nsd",
            Server::Knot => "knot",
        }
    }
}

/// One measured dnsperf throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub server: Server,
    pub run: u32,
    pub dnsperf: DnsperfOutput,
    /// CPU of the server's processes during the run, % of one core.
    pub server_cpu_pct: f64,
    /// CPU of dnsperf, % of one core.
    pub dnsperf_cpu_pct: f64,
    /// Whole box busy (all CPUs), %, and the CPU left for everything else (% of one core).
    pub box_busy_pct: f64,
    pub other_cpu_pct: f64,
    pub steal_pct: f64,
    pub rss_kib_after: u64,
}

impl RunRow {
    /// Server CPU time per answered query, µs.
    pub fn cpu_us_per_query(&self) -> f64 {
        if self.dnsperf.qps > 0.0 {
            self.server_cpu_pct / 100.0 / self.dnsperf.qps * 1e6
        } else {
            0.0
        }
    }

    pub fn one_line(&self) -> String {
        format!(
            "{} run {}: qps={:.0} avg={:.3}ms sd={:.3}ms max={:.2}ms lost={} server_cpu={:.0}% ({:.1} µs/q) dnsperf_cpu={:.0}% other={:.0}% steal={:.1}% [{}]",
            self.server.as_str(),
            self.run,
            self.dnsperf.qps,
            self.dnsperf.avg_ms,
            self.dnsperf.stddev_ms,
            self.dnsperf.max_ms,
            self.dnsperf.lost,
            self.server_cpu_pct,
            self.cpu_us_per_query(),
            self.dnsperf_cpu_pct,
            self.other_cpu_pct,
            self.steal_pct,
            self.dnsperf.rcodes
        )
    }
}

/// The fixed-rate latency pass of one server.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    pub server: Server,
    pub offered_qps: u32,
    pub achieved_qps: f64,
    pub queries: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub server_cpu_pct: f64,
    pub lost: u64,
}

impl LatencyRow {
    pub fn new(server: Server, offered_qps: u32, out: &DnsperfOutput, cpu: f64) -> LatencyRow {
        let p = |q| percentile(&out.latencies_ms, q).unwrap_or(0.0);
        LatencyRow {
            server,
            offered_qps,
            achieved_qps: out.qps,
            queries: out.latencies_ms.len(),
            p50_ms: p(50.0),
            p99_ms: p(99.0),
            p999_ms: p(99.9),
            max_ms: out.latencies_ms.last().copied().unwrap_or(0.0),
            server_cpu_pct: cpu,
            lost: out.lost,
        }
    }
}

/// Medians over a server's runs.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSummary {
    pub server: Server,
    pub qps: Summary,
    pub avg_ms: Summary,
    pub stddev_ms: Summary,
    pub max_ms: Summary,
    pub server_cpu_pct: Summary,
    pub cpu_us_per_query: Summary,
    pub lost: u64,
    pub rss_kib_after: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub dnsperf_version: String,
    pub knot_version: Option<String>,
    pub nsd_version: Option<String>,
    pub kokoa_bin: String,
    /// `KOKOA_LOG` passed on to the replica (its log filter), if set.
    pub kokoa_log: Option<String>,
    #[serde(flatten)]
    pub load: crate::report::HostLoad,
    pub response_bytes: Vec<(Server, Option<u32>)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    pub runs: u32,
    pub dnsperf: String,
    pub workers: u32,
    pub zone: String,
    pub routes: u32,
    pub edges: u32,
    pub latency_qps: u32,
    pub latency_secs: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DnsReport {
    pub settings: Settings,
    pub machine: Machine,
    pub runs: Vec<RunRow>,
    pub latency: Vec<LatencyRow>,
    pub summaries: Vec<ServerSummary>,
    /// Kokoa / NSD and Kokoa / Knot median queries/s.
    pub ratio_nsd: Option<f64>,
    pub ratio_knot: Option<f64>,
    pub target_met: Option<bool>,
    pub notes: Vec<String>,
}

impl DnsReport {
    pub fn finish(&mut self) {
        self.summaries.clear();
        for server in [Server::Kokoa, Server::Nsd, Server::Knot] {
            let rows: Vec<&RunRow> = self.runs.iter().filter(|r| r.server == server).collect();
            let of = |f: &dyn Fn(&RunRow) -> f64| {
                Summary::of(&rows.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let Some(qps) = of(&|r| r.dnsperf.qps) else {
                continue;
            };
            let zero = Summary {
                median: 0.0,
                min: 0.0,
                max: 0.0,
                n: 0,
            };
            self.summaries.push(ServerSummary {
                server,
                qps,
                avg_ms: of(&|r| r.dnsperf.avg_ms).unwrap_or(zero),
                stddev_ms: of(&|r| r.dnsperf.stddev_ms).unwrap_or(zero),
                max_ms: of(&|r| r.dnsperf.max_ms).unwrap_or(zero),
                server_cpu_pct: of(&|r| r.server_cpu_pct).unwrap_or(zero),
                cpu_us_per_query: of(&RunRow::cpu_us_per_query).unwrap_or(zero),
                lost: rows.iter().map(|r| r.dnsperf.lost).sum(),
                rss_kib_after: rows.last().map_or(0, |r| r.rss_kib_after),
            });
        }
        let median = |s: Server| {
            self.summaries
                .iter()
                .find(|x| x.server == s)
                .map(|x| x.qps.median)
        };
        let ratio = |other: Server| match (median(Server::Kokoa), median(other)) {
            (Some(k), Some(o)) if o > 0.0 => Some(k / o),
            _ => None,
        };
        self.ratio_nsd = ratio(Server::Nsd);
        self.ratio_knot = ratio(Server::Knot);
        self.target_met = self.ratio_nsd.map(|r| r >= TARGET_SHARE_OF_NSD);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let m = &self.machine;
        let _ = writeln!(
            out,
            "\n== Authoritative DNS: kokoa vs NSD {} vs Knot {} (Debian), same zone, loopback, {} CPUs (dnsperf included) ==",
            m.nsd_version.as_deref().unwrap_or("-"),
            m.knot_version.as_deref().unwrap_or("-"),
            m.cpus
        );
        let _ = writeln!(
            out,
            "zone {}: {} route names, each A = {} edge IPs (kokoa's answers exported with kdig into the peers' zone file: same records, TTLs, SOA, NS)",
            s.zone, s.routes, s.edges
        );
        let _ = writeln!(
            out,
            "kokoa: {} (1 replica, UDP socket per CPU, KOKOA_LOG={}); knot udp-workers {w}; nsd server-count {w}, rrl-ratelimit 0 (Debian's default 200/s per name would block this load)",
            m.kokoa_bin,
            m.kokoa_log.as_deref().unwrap_or("unset: default filter"),
            w = s.workers
        );
        let sizes: Vec<String> = m
            .response_bytes
            .iter()
            .map(|(srv, b)| {
                format!(
                    "{} {}",
                    srv.as_str(),
                    b.map_or("-".into(), |b| b.to_string())
                )
            })
            .collect();
        let _ = writeln!(out, "response bytes for one A query: {}", sizes.join(", "));
        let _ = writeln!(
            out,
            "dnsperf {}: {} -l ...; median (min–max) of {} runs, alternating kokoa, nsd, knot",
            m.dnsperf_version, s.dnsperf, s.runs
        );
        m.load.write_with_notes(&mut out, &self.notes);

        let _ = writeln!(
            out,
            "\n{:<6} {:>9} {:>19} {:>8} {:>8} {:>8} {:>6} {:>6} {:>7} {:>8}",
            "server",
            "qps",
            "(min–max)",
            "avg ms",
            "sd ms",
            "max ms",
            "lost",
            "cpu%",
            "µs/q",
            "RSS MiB"
        );
        for x in &self.summaries {
            let _ = writeln!(
                out,
                "{:<6} {:>9.0} {:>19} {:>8.3} {:>8.3} {:>8.2} {:>6} {:>6.0} {:>7.2} {:>8.1}",
                x.server.as_str(),
                x.qps.median,
                format!("({:.0}–{:.0})", x.qps.min, x.qps.max),
                x.avg_ms.median,
                x.stddev_ms.median,
                x.max_ms.median,
                x.lost,
                x.server_cpu_pct.median,
                x.cpu_us_per_query.median,
                x.rss_kib_after as f64 / 1024.0
            );
        }
        if !self.latency.is_empty() {
            let _ = writeln!(
                out,
                "\nlatency at a fixed {} queries/s for {} s (dnsperf -Q -v, per-query):",
                s.latency_qps, s.latency_secs
            );
            let _ = writeln!(
                out,
                "{:<6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}",
                "server", "qps", "p50 ms", "p99 ms", "p99.9", "max ms", "cpu%", "lost"
            );
            for l in &self.latency {
                let _ = writeln!(
                    out,
                    "{:<6} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>8.2} {:>6.0} {:>6}",
                    l.server.as_str(),
                    l.achieved_qps,
                    l.p50_ms,
                    l.p99_ms,
                    l.p999_ms,
                    l.max_ms,
                    l.server_cpu_pct,
                    l.lost
                );
            }
        }
        if let Some(r) = self.ratio_nsd {
            let _ = writeln!(
                out,
                "\nkokoa / nsd queries/s: {r:.2} (target ≥ {TARGET_SHARE_OF_NSD:.2}: {})",
                if r >= TARGET_SHARE_OF_NSD {
                    "MET"
                } else {
                    "NOT MET"
                }
            );
        }
        if let Some(r) = self.ratio_knot {
            let _ = writeln!(out, "kokoa / knot queries/s: {r:.2}");
        }

        let _ = writeln!(out);
        let stats = |x: &Summary, digits: usize| {
            format!(
                "median={:.d$} min={:.d$} max={:.d$} n={}",
                x.median,
                x.min,
                x.max,
                x.n,
                d = digits
            )
        };
        for x in &self.summaries {
            let n = x.server.as_str();
            let _ = writeln!(out, "RESULT {n} qps            {}", stats(&x.qps, 0));
            let _ = writeln!(out, "RESULT {n} avg_latency_ms {}", stats(&x.avg_ms, 3));
            let _ = writeln!(out, "RESULT {n} max_latency_ms {}", stats(&x.max_ms, 3));
            let _ = writeln!(
                out,
                "RESULT {n} cpu_pct        {}",
                stats(&x.server_cpu_pct, 0)
            );
            let _ = writeln!(
                out,
                "RESULT {n} cpu_us_per_q   {}",
                stats(&x.cpu_us_per_query, 2)
            );
            let _ = writeln!(out, "RESULT {n} lost {}", x.lost);
            let _ = writeln!(out, "RESULT {n} rss_kb_after {}", x.rss_kib_after);
        }
        for l in &self.latency {
            let n = l.server.as_str();
            let _ = writeln!(
                out,
                "RESULT {n} fixed_{}qps p50_ms={:.3} p99_ms={:.3} p999_ms={:.3}",
                l.offered_qps, l.p50_ms, l.p99_ms, l.p999_ms
            );
        }
        if let Some(r) = self.ratio_nsd {
            let _ = writeln!(out, "RESULT ratio kokoa/nsd qps {r:.3}");
        }
        if let Some(r) = self.ratio_knot {
            let _ = writeln!(out, "RESULT ratio kokoa/knot qps {r:.3}");
        }
        if let Some(met) = self.target_met {
            let _ = writeln!(
                out,
                "RESULT target kokoa>=0.5*nsd {}",
                if met { "met" } else { "not_met" }
            );
        }
        out
    }
}
