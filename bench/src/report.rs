//! The figures of a run: tables for people, `RESULT` lines for scripts (the format of
//! `shared/peers/*.sh`), and the same data as JSON (`--json`).
//!
//! Ratios are Kokoa / etcd: a throughput ratio above 1 and a latency or failover ratio below 1
//! favour Kokoa.

use std::fmt::Write as _;

use serde::Serialize;

use crate::failover::Round;
use crate::load::{StepOutcome, StepSpec};
use crate::stats::{percentile, Summary};
use crate::system::System;
use crate::Args;

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub machine: Machine,
    pub body_bytes: BodyBytes,
    pub load: Vec<LoadRow>,
    pub ratios: Vec<RatioRow>,
    pub failover: Vec<FailoverReport>,
    /// Kokoa median / etcd median of kill → first acknowledged write.
    pub failover_median_ratio: Option<f64>,
}

/// The flags of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub duration_secs: u64,
    pub warmup_ms: u64,
    pub clients: Vec<u16>,
    pub max_requests: u64,
    pub failover_runs: u32,
    pub skip_etcd: bool,
    /// Extra `kokoa server` arguments (empty: Kokoa's defaults).
    pub kokoa_args: Vec<String>,
}

/// Where it ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub kokoa_bin: String,
    pub kokoa_data: String,
    pub etcd_version: Option<String>,
    pub etcd_data: Option<String>,
}

/// Request body sizes in bytes (equal by construction).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BodyBytes {
    pub kokoa: usize,
    pub etcd: usize,
}

/// One load step.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRow {
    pub system: System,
    pub clients: usize,
    pub ok: usize,
    pub errors: u64,
    pub elapsed_s: f64,
    pub writes_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub steal_pct: Option<f64>,
    /// Established connections to the target's port after the step (≈ clients).
    pub connections: usize,
    pub error_samples: Vec<String>,
}

/// Kokoa / etcd at one client count.
#[derive(Debug, Clone, Serialize)]
pub struct RatioRow {
    pub clients: usize,
    pub throughput_ratio: Option<f64>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
}

/// All failover rounds of one system.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub system: System,
    /// Kill → first acknowledged write, over the rounds that got one.
    pub ack_ms: Option<Summary>,
    /// Rounds without an acknowledged write before the give-up time.
    pub failed: usize,
    pub rounds: Vec<Round>,
}

impl FailoverReport {
    pub fn new(system: System, rounds: Vec<Round>) -> FailoverReport {
        let acked: Vec<f64> = rounds.iter().filter_map(|r| r.ack_ms).collect();
        FailoverReport {
            system,
            ack_ms: Summary::of(&acked),
            failed: rounds.len() - acked.len(),
            rounds,
        }
    }
}

fn us_to_ms(us: Option<u32>) -> Option<f64> {
    us.map(|us| f64::from(us) / 1000.0)
}

impl LoadRow {
    pub fn new(system: System, spec: &StepSpec, outcome: &StepOutcome) -> LoadRow {
        let lat = &outcome.latencies_us;
        let elapsed_s = outcome.elapsed.as_secs_f64();
        LoadRow {
            system,
            clients: spec.clients,
            ok: lat.len(),
            errors: outcome.errors,
            elapsed_s,
            writes_per_s: if elapsed_s > 0.0 {
                lat.len() as f64 / elapsed_s
            } else {
                0.0
            },
            p50_ms: us_to_ms(percentile(lat, 50.0)),
            p90_ms: us_to_ms(percentile(lat, 90.0)),
            p99_ms: us_to_ms(percentile(lat, 99.0)),
            max_ms: us_to_ms(lat.last().copied()),
            steal_pct: outcome.steal_pct,
            connections: outcome.connections,
            error_samples: outcome.error_samples.clone(),
        }
    }

    /// `RESULT kokoa c=64 writes/s=… p50_ms=… p99_ms=… …`.
    pub fn one_line(&self) -> String {
        format!(
            "RESULT {} c={} writes/s={:.0} p50_ms={} p99_ms={} max_ms={} ok={} errors={} secs={:.2} conns={} steal_pct={}",
            self.system,
            self.clients,
            self.writes_per_s,
            opt(self.p50_ms, 2),
            opt(self.p99_ms, 2),
            opt(self.max_ms, 2),
            self.ok,
            self.errors,
            self.elapsed_s,
            self.connections,
            opt(self.steal_pct, 1)
        )
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

impl Report {
    /// An empty report for this run's flags.
    pub fn new(args: &Args) -> Report {
        Report {
            settings: Settings {
                duration_secs: args.duration_secs,
                warmup_ms: args.warmup_ms,
                clients: args.clients.clone(),
                max_requests: args.max_requests,
                failover_runs: args.failover_runs,
                skip_etcd: args.skip_etcd,
                kokoa_args: args.kokoa_args.clone(),
            },
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
                kokoa_bin: String::new(),
                kokoa_data: String::new(),
                etcd_version: None,
                etcd_data: None,
            },
            body_bytes: BodyBytes::default(),
            load: Vec::new(),
            ratios: Vec::new(),
            failover: Vec::new(),
            failover_median_ratio: None,
        }
    }

    /// Computes the ratios from the rows.
    pub fn finish(&mut self) {
        let row = |system: System, clients: usize| {
            self.load
                .iter()
                .find(|r| r.system == system && r.clients == clients)
        };
        let mut ratios = Vec::new();
        for kokoa in self.load.iter().filter(|r| r.system == System::Kokoa) {
            if let Some(etcd) = row(System::Etcd, kokoa.clients) {
                ratios.push(RatioRow {
                    clients: kokoa.clients,
                    throughput_ratio: ratio(Some(kokoa.writes_per_s), Some(etcd.writes_per_s)),
                    p50_ratio: ratio(kokoa.p50_ms, etcd.p50_ms),
                    p99_ratio: ratio(kokoa.p99_ms, etcd.p99_ms),
                });
            }
        }
        self.ratios = ratios;
        let median = |system: System| {
            self.failover
                .iter()
                .find(|f| f.system == system)
                .and_then(|f| f.ack_ms)
                .map(|s| s.median)
        };
        self.failover_median_ratio = ratio(median(System::Kokoa), median(System::Etcd));
    }

    /// Tables, then `RESULT` lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "\n== Write load: 3 replicas each on loopback, fsync on; C closed-loop clients over HTTP/1.1 keep-alive; {} ms warm-up, then {} s (or {} writes) per step ==",
            s.warmup_ms, s.duration_secs, s.max_requests
        );
        let _ = writeln!(
            out,
            "kokoa: POST /api/v1/routes to the leader ({} B body), ok = 201 | etcd {}: POST /v3/kv/put to the leader ({} B body), ok = 200",
            self.body_bytes.kokoa,
            self.machine.etcd_version.as_deref().unwrap_or("-"),
            self.body_bytes.etcd
        );
        if !s.kokoa_args.is_empty() {
            let _ = writeln!(
                out,
                "kokoa server extra arguments: {}",
                s.kokoa_args.join(" ")
            );
        }
        let _ = writeln!(
            out,
            "{:<6} {:>4} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7}",
            "system",
            "C",
            "ok",
            "errors",
            "writes/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "conns",
            "steal%"
        );
        for r in &self.load {
            let _ = writeln!(
                out,
                "{:<6} {:>4} {:>9} {:>7} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7}",
                r.system.as_str(),
                r.clients,
                r.ok,
                r.errors,
                r.writes_per_s,
                opt(r.p50_ms, 2),
                opt(r.p90_ms, 2),
                opt(r.p99_ms, 2),
                opt(r.max_ms, 1),
                r.connections,
                opt(r.steal_pct, 1)
            );
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(
                out,
                "\n== Kokoa / etcd (throughput: >1 favours Kokoa; latency: <1 favours Kokoa) =="
            );
            let _ = writeln!(
                out,
                "{:>4} {:>17} {:>10} {:>10}",
                "C", "throughput ratio", "p50 ratio", "p99 ratio"
            );
            for r in &self.ratios {
                let _ = writeln!(
                    out,
                    "{:>4} {:>17} {:>10} {:>10}",
                    r.clients,
                    opt(r.throughput_ratio, 2),
                    opt(r.p50_ratio, 2),
                    opt(r.p99_ratio, 2)
                );
            }
        }
        if !self.failover.is_empty() {
            let _ = writeln!(
                out,
                "\n== Leader failover: kill -9 the leader → first acknowledged write through a survivor (alternating, {} ms per try) ==",
                crate::FAILOVER_TRY_TIMEOUT.as_millis()
            );
            let _ = writeln!(
                out,
                "{:<6} {:>10} {:>8} {:>8} {:>7}  {:<32} recovered after (ms)",
                "system", "median ms", "min ms", "max ms", "failed", "rounds (ms)"
            );
            for f in &self.failover {
                let rounds: Vec<String> = f.rounds.iter().map(|r| opt(r.ack_ms, 0)).collect();
                let recovered: Vec<String> = f
                    .rounds
                    .iter()
                    .map(|r| format!("{:.0}", r.recovered_ms))
                    .collect();
                let _ = writeln!(
                    out,
                    "{:<6} {:>10} {:>8} {:>8} {:>7}  {:<32} {}",
                    f.system.as_str(),
                    opt(f.ack_ms.map(|s| s.median), 0),
                    opt(f.ack_ms.map(|s| s.min), 0),
                    opt(f.ack_ms.map(|s| s.max), 0),
                    f.failed,
                    rounds.join(" "),
                    recovered.join(" ")
                );
            }
            if let Some(kokoa) = self.failover.iter().find(|f| f.system == System::Kokoa) {
                let verdict = match kokoa.ack_ms {
                    Some(s) if s.median < 1000.0 && kokoa.failed == 0 => "met",
                    _ => "NOT met",
                };
                let _ = writeln!(out, "target for Kokoa: median under 1000 ms — {verdict}");
            }
        }

        let _ = writeln!(out);
        for r in &self.load {
            let _ = writeln!(out, "{}", r.one_line());
        }
        for r in &self.ratios {
            let _ = writeln!(
                out,
                "RESULT ratio c={} throughput(kokoa/etcd)={} p50(kokoa/etcd)={} p99(kokoa/etcd)={}",
                r.clients,
                opt(r.throughput_ratio, 2),
                opt(r.p50_ratio, 2),
                opt(r.p99_ratio, 2)
            );
        }
        for f in &self.failover {
            let _ = match f.ack_ms {
                Some(s) => writeln!(
                    out,
                    "RESULT {} failover_ms (kill -9 leader -> first acknowledged write) median={:.0} min={:.0} max={:.0} n={} failed={}",
                    f.system, s.median, s.min, s.max, s.n, f.failed
                ),
                None => writeln!(
                    out,
                    "RESULT {} failover_ms (kill -9 leader -> first acknowledged write) none acknowledged, failed={}",
                    f.system, f.failed
                ),
            };
        }
        if let Some(r) = self.failover_median_ratio {
            let _ = writeln!(out, "RESULT ratio failover_median(kokoa/etcd)={r:.2}");
        }
        out
    }
}

/// The host's load around a peer benchmark's run, to read its figures against (flattened into
/// each report's machine section).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostLoad {
    pub load_average_start: Option<String>,
    pub load_average_end: Option<String>,
    /// Compilers or benchmarks found running at the start (they skew every figure).
    pub busy_at_start: Vec<String>,
}

impl HostLoad {
    /// The load average and what is running now; a progress note warns when something busy is.
    pub fn at_start() -> HostLoad {
        let load = HostLoad {
            load_average_start: crate::host::load_average(),
            load_average_end: None,
            busy_at_start: crate::edge::procs::busy_processes(),
        };
        if !load.busy_at_start.is_empty() {
            crate::note!(
                "WARNING: {} running: figures will be skewed",
                load.busy_at_start.join(" ")
            );
        }
        load
    }

    /// Records the load average at the end of the run.
    pub fn finish(&mut self) {
        self.load_average_end = crate::host::load_average();
    }

    /// The report lines a peer benchmark ends its header with: the load average over the run,
    /// a warning naming what was busy at the start, and the run's notes.
    pub fn write_with_notes(&self, out: &mut String, notes: &[String]) {
        let busy = if self.busy_at_start.is_empty() {
            String::new()
        } else {
            format!(
                "; WARNING: running at the start (figures skewed): {}",
                self.busy_at_start.join(" ")
            )
        };
        let _ = writeln!(
            out,
            "load average {} → {}{busy}",
            self.load_average_start.as_deref().unwrap_or("-"),
            self.load_average_end.as_deref().unwrap_or("-"),
        );
        for note in notes {
            let _ = writeln!(out, "NOTE: {note}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn row(system: System, clients: usize, latencies_us: Vec<u32>) -> LoadRow {
        let spec = StepSpec {
            step: 1,
            clients,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            max_requests: 10,
        };
        let outcome = StepOutcome {
            latencies_us,
            elapsed: Duration::from_secs(1),
            ..StepOutcome::default()
        };
        LoadRow::new(system, &spec, &outcome)
    }

    #[test]
    fn ratios_are_kokoa_over_etcd() {
        let args = Args {
            duration_secs: 1,
            clients: vec![4],
            warmup_ms: 0,
            max_requests: 10,
            failover_runs: 0,
            skip_etcd: false,
            kokoa_args: Vec::new(),
            json: None,
        };
        let mut report = Report::new(&args);
        report.load.push(row(System::Kokoa, 4, vec![1000; 300]));
        report.load.push(row(System::Etcd, 4, vec![4000; 100]));
        report.finish();
        let r = &report.ratios[0];
        assert_eq!(r.throughput_ratio, Some(3.0));
        assert_eq!(r.p99_ratio, Some(0.25));
        let text = report.render();
        assert!(text.contains("RESULT kokoa c=4 writes/s=300 p50_ms=1.00 p99_ms=1.00"));
        assert!(text.contains("RESULT ratio c=4 throughput(kokoa/etcd)=3.00"));
    }
}
