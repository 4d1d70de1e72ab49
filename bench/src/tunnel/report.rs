//! The tunnel benchmark's report: one row per throughput run, medians per path and stream
//! count, the added latency, Kokoa / wireguard-go ratios, `RESULT` lines in the style of
//! `shared/peers/wireguard-go.sh`, and the same data as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::load::LatencySamples;
use crate::stats::{percentile, Summary};

/// What carried the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// iperf3 through wireguard-go between two namespaces.
    WireguardGo,
    /// iperf3 over the plain veth under it.
    VethPlain,
    /// HTTP downloads: edge → Kokoa tunnel → agent → origin app.
    KokoaTunnel,
    /// HTTP downloads: edge → origin app (direct origin).
    KokoaDirect,
}

impl Path {
    pub const ALL: [Path; 4] = [
        Path::WireguardGo,
        Path::KokoaTunnel,
        Path::KokoaDirect,
        Path::VethPlain,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Path::WireguardGo => "wireguard_go",
            Path::VethPlain => "veth_plain",
            Path::KokoaTunnel => "kokoa_tunnel",
            Path::KokoaDirect => "kokoa_direct",
        }
    }

    /// Whether processes of its own carry it (wireguard-go daemons; the edge and the agent),
    /// whose CPU is measured; the plain veth is the kernel's.
    pub fn has_tunnel_processes(self) -> bool {
        !matches!(self, Path::VethPlain)
    }

    /// What the figure is.
    pub fn describe(self) -> &'static str {
        match self {
            Path::WireguardGo => "iperf3 TCP through wireguard-go, namespace A → B",
            Path::VethPlain => "iperf3 TCP over the plain veth A → B",
            Path::KokoaTunnel => "HTTP downloads: client → edge → WireGuard → agent → origin",
            Path::KokoaDirect => "HTTP downloads: client → edge → origin (direct, no tunnel)",
        }
    }
}

/// One measured throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub path: Path,
    pub streams: u32,
    pub run: u32,
    pub gbit_s: f64,
    /// CPU of the processes carrying the tunnel (both wireguard-go daemons; the edge and the
    /// agent), % of one core.
    pub tunnel_cpu_pct: f64,
    pub busy_pct: f64,
    pub steal_pct: f64,
    /// iperf3 retransmits, or downloads completed / errors.
    pub detail: String,
}

impl RunRow {
    pub fn one_line(&self) -> String {
        format!(
            "{} streams={} run {}: {:.3} Gbit/s tunnel_cpu={:.0}% busy={:.0}% steal={:.1}% {}",
            self.path.label(),
            self.streams,
            self.run,
            self.gbit_s,
            self.tunnel_cpu_pct,
            self.busy_pct,
            self.steal_pct,
            self.detail
        )
    }
}

/// Medians of one path at one stream count.
#[derive(Debug, Clone, Serialize)]
pub struct PathSummary {
    pub path: Path,
    pub streams: u32,
    pub gbit_s: Summary,
    pub tunnel_cpu_pct: Summary,
}

/// Small-GET latency on one path.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    /// `tunnel` or `direct`.
    pub path: String,
    pub requests: usize,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyRow {
    pub fn new(samples: &LatencySamples) -> LatencyRow {
        let p = |q| percentile(&samples.ms, q).unwrap_or(0.0);
        LatencyRow {
            path: samples.label.clone(),
            requests: samples.ms.len(),
            errors: samples.errors,
            p50_ms: p(50.0),
            p90_ms: p(90.0),
            p99_ms: p(99.0),
            max_ms: samples.ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// Kokoa through the tunnel / wireguard-go, at one stream count (median Gbit/s).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub streams: u32,
    pub kokoa_gbit_s: f64,
    pub wireguard_go_gbit_s: f64,
    pub ratio: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    pub runs: u32,
    pub secs: u64,
    pub streams: Vec<u32>,
    pub warmup_secs: u64,
    pub download_mib: u64,
    pub max_downloads: u64,
    pub latency_requests: u32,
    pub latency_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub iperf_version: Option<String>,
    pub wireguard_go_version: Option<String>,
    pub kokoa_bin: Option<String>,
    pub kokoa_log: Option<String>,
    /// `veth=1500 wg=1420`.
    pub wireguard_go_mtus: Option<String>,
    #[serde(flatten)]
    pub load: crate::report::HostLoad,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TunnelReport {
    pub settings: Settings,
    pub machine: Machine,
    pub runs: Vec<RunRow>,
    pub summaries: Vec<PathSummary>,
    pub latency: Vec<LatencyRow>,
    /// Tunnel minus direct, p50 and p99, ms.
    pub added_p50_ms: Option<f64>,
    pub added_p99_ms: Option<f64>,
    pub ratios: Vec<Ratio>,
    pub notes: Vec<String>,
}

fn streams_label(streams: u32) -> String {
    if streams == 1 {
        "1_stream".into()
    } else {
        format!("{streams}_streams")
    }
}

impl TunnelReport {
    /// Medians, added latency and ratios from the rows.
    pub fn finish(&mut self) {
        self.summaries.clear();
        for path in Path::ALL {
            for &streams in &self.settings.streams {
                let rows: Vec<&RunRow> = self
                    .runs
                    .iter()
                    .filter(|r| r.path == path && r.streams == streams)
                    .collect();
                let of = |f: fn(&RunRow) -> f64| {
                    Summary::of(&rows.iter().map(|r| f(r)).collect::<Vec<_>>())
                };
                if let (Some(gbit_s), Some(cpu)) = (of(|r| r.gbit_s), of(|r| r.tunnel_cpu_pct)) {
                    self.summaries.push(PathSummary {
                        path,
                        streams,
                        gbit_s,
                        tunnel_cpu_pct: cpu,
                    });
                }
            }
        }
        let row = |path: &str| self.latency.iter().find(|l| l.path == path);
        if let (Some(t), Some(d)) = (row("tunnel"), row("direct")) {
            self.added_p50_ms = Some(t.p50_ms - d.p50_ms);
            self.added_p99_ms = Some(t.p99_ms - d.p99_ms);
        }
        self.ratios.clear();
        for &streams in &self.settings.streams {
            let median = |path: Path| {
                self.summaries
                    .iter()
                    .find(|s| s.path == path && s.streams == streams)
                    .map(|s| s.gbit_s.median)
            };
            if let (Some(k), Some(w)) = (median(Path::KokoaTunnel), median(Path::WireguardGo)) {
                if w > 0.0 {
                    self.ratios.push(Ratio {
                        streams,
                        kokoa_gbit_s: k,
                        wireguard_go_gbit_s: w,
                        ratio: k / w,
                    });
                }
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let m = &self.machine;
        let _ = writeln!(
            out,
            "\n== Tunnel throughput: kokoa (edge → WireGuard → agent → origin, HTTP) vs {} (iperf3 TCP, two namespaces), {} CPUs (load generators included) ==",
            m.wireguard_go_version.as_deref().unwrap_or("wireguard-go"),
            m.cpus
        );
        for path in Path::ALL {
            if self.runs.iter().any(|r| r.path == path) {
                let _ = writeln!(out, "{:<13} {}", path.label(), path.describe());
            }
        }
        let _ = writeln!(
            out,
            "runs of {} s, median (min–max) of {} runs per path and stream count, alternating; \
             kokoa downloads {} MiB each (≤ {} per client per run), plain HTTP, routes with allow_http",
            s.secs, s.runs, s.download_mib, s.max_downloads
        );
        let _ = writeln!(
            out,
            "{}; wireguard-go MTUs {}; kokoa: {} (KOKOA_LOG={})",
            m.iperf_version.as_deref().unwrap_or("iperf3: -"),
            m.wireguard_go_mtus.as_deref().unwrap_or("-"),
            m.kokoa_bin.as_deref().unwrap_or("-"),
            m.kokoa_log.as_deref().unwrap_or("unset: default filter")
        );
        m.load.write_with_notes(&mut out, &self.notes);
        if !self.summaries.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<13} {:>7} {:>8} {:>17} {:>11}",
                "path", "streams", "Gbit/s", "(min–max)", "tunnel cpu%"
            );
        }
        for x in &self.summaries {
            let cpu = if x.path.has_tunnel_processes() {
                format!("{:.0}", x.tunnel_cpu_pct.median)
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "{:<13} {:>7} {:>8.3} {:>17} {:>11}",
                x.path.label(),
                x.streams,
                x.gbit_s.median,
                format!("({:.3}–{:.3})", x.gbit_s.min, x.gbit_s.max),
                cpu
            );
        }
        if !self.latency.is_empty() {
            let _ = writeln!(
                out,
                "\nsmall GETs ({} bytes), one at a time, keep-alive, through the edge:",
                s.latency_bytes
            );
            let _ = writeln!(
                out,
                "{:<8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8}",
                "path", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
            );
            for l in &self.latency {
                let _ = writeln!(
                    out,
                    "{:<8} {:>8} {:>7} {:>8.3} {:>8.3} {:>8.3} {:>8.2}",
                    l.path, l.requests, l.errors, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
                );
            }
            if let (Some(p50), Some(p99)) = (self.added_p50_ms, self.added_p99_ms) {
                let _ = writeln!(
                    out,
                    "added by the tunnel (tunnel − direct): p50 {p50:+.3} ms, p99 {p99:+.3} ms"
                );
            }
        }
        for r in &self.ratios {
            let _ = writeln!(
                out,
                "kokoa / wireguard-go, {} stream(s): {:.3} / {:.3} Gbit/s = {:.2}",
                r.streams, r.kokoa_gbit_s, r.wireguard_go_gbit_s, r.ratio
            );
        }

        let _ = writeln!(out);
        let stats = |x: &Summary| {
            format!(
                "median={:.3} min={:.3} max={:.3} n={}",
                x.median, x.min, x.max, x.n
            )
        };
        for x in &self.summaries {
            let what = match x.path {
                Path::WireguardGo | Path::VethPlain => "tcp_gbit_s",
                Path::KokoaTunnel | Path::KokoaDirect => "http_gbit_s",
            };
            let n = streams_label(x.streams);
            let _ = writeln!(
                out,
                "RESULT {} {what}_{n} {}",
                x.path.label(),
                stats(&x.gbit_s)
            );
            if x.path.has_tunnel_processes() {
                let _ = writeln!(
                    out,
                    "RESULT {} tunnel_cpu_pct_{n} {}",
                    x.path.label(),
                    stats(&x.tunnel_cpu_pct)
                );
            }
        }
        for l in &self.latency {
            let _ = writeln!(
                out,
                "RESULT kokoa_{} small_get_ms p50={:.3} p90={:.3} p99={:.3} n={} errors={}",
                l.path, l.p50_ms, l.p90_ms, l.p99_ms, l.requests, l.errors
            );
        }
        if let (Some(p50), Some(p99)) = (self.added_p50_ms, self.added_p99_ms) {
            let _ = writeln!(
                out,
                "RESULT kokoa_tunnel added_latency_ms p50={p50:.3} p99={p99:.3}"
            );
        }
        for r in &self.ratios {
            let _ = writeln!(
                out,
                "RESULT ratio kokoa/wireguard_go {} {:.3}",
                streams_label(r.streams),
                r.ratio
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: Path, streams: u32, gbit_s: f64) -> RunRow {
        RunRow {
            path,
            streams,
            run: 1,
            gbit_s,
            tunnel_cpu_pct: 100.0,
            busy_pct: 90.0,
            steal_pct: 0.0,
            detail: String::new(),
        }
    }

    #[test]
    fn ratios_and_added_latency() {
        let mut report = TunnelReport {
            settings: Settings {
                streams: vec![1, 8],
                ..Settings::default()
            },
            ..TunnelReport::default()
        };
        report.runs = vec![
            row(Path::WireguardGo, 1, 0.5),
            row(Path::WireguardGo, 1, 0.6),
            row(Path::KokoaTunnel, 1, 1.1),
            row(Path::KokoaTunnel, 1, 1.1),
            row(Path::WireguardGo, 8, 0.3),
        ];
        let samples = |label: &str, base: f64| LatencySamples {
            label: label.into(),
            ms: (1..=100).map(|i| base + f64::from(i) / 100.0).collect(),
            ..LatencySamples::default()
        };
        report.latency = vec![
            LatencyRow::new(&samples("tunnel", 1.0)),
            LatencyRow::new(&samples("direct", 0.5)),
        ];
        report.finish();
        assert_eq!(report.ratios.len(), 1, "no kokoa row at 8 streams");
        assert!((report.ratios[0].ratio - 1.1 / 0.55).abs() < 1e-9);
        assert!((report.added_p50_ms.expect("p50") - 0.5).abs() < 1e-9);
        let text = report.render();
        assert!(
            text.contains("RESULT wireguard_go tcp_gbit_s_1_stream median=0.550"),
            "{text}"
        );
        assert!(
            text.contains("RESULT wireguard_go tcp_gbit_s_8_streams median=0.300"),
            "{text}"
        );
        assert!(
            text.contains("RESULT ratio kokoa/wireguard_go 1_stream 2.000"),
            "{text}"
        );
        assert!(
            text.contains("RESULT kokoa_tunnel added_latency_ms p50=0.500"),
            "{text}"
        );
    }
}
