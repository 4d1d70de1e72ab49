//! A run's report: the seed and schedule, every fault with its times, the workload's counts,
//! failover and DNS-removal figures, and the violations found. Written as JSON and summed up
//! for a human.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::check::Violation;
use crate::faults::FaultRecord;
use crate::schedule::Mode;

/// Successes out of attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ratio {
    pub ok: u64,
    pub total: u64,
}

impl Ratio {
    pub fn add(&mut self, ok: bool) {
        self.total += 1;
        self.ok += u64::from(ok);
    }

    /// The success ratio in percent (100 when nothing was tried).
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            self.ok as f64 * 100.0 / self.total as f64
        }
    }
}

/// Minimum, median, maximum of some durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spread {
    pub samples: Vec<u64>,
    pub min: Option<u64>,
    pub median: Option<u64>,
    pub max: Option<u64>,
}

impl Spread {
    pub fn of(mut samples: Vec<u64>) -> Spread {
        samples.sort_unstable();
        Spread {
            min: samples.first().copied(),
            median: samples.get(samples.len() / 2).copied(),
            max: samples.last().copied(),
            samples,
        }
    }

    fn describe(&self) -> String {
        match (self.min, self.median, self.max) {
            (Some(min), Some(median), Some(max)) => format!(
                "min {min} ms, median {median} ms, max {max} ms ({} samples)",
                self.samples.len()
            ),
            _ => "no sample".into(),
        }
    }
}

/// What the workload did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub writes_acknowledged: u64,
    pub writes_unacknowledged: u64,
    pub register_ops: u64,
    pub register_states_explored: u64,
    /// HTTP through the edges while no fault was injected (100% required).
    pub http_quiet: Ratio,
    /// HTTP through the edges during control-plane faults, until the deployment settled
    /// (99.9% required).
    pub http_during_faults: Ratio,
    /// HTTP through the edges during edge and agent faults, until the deployment settled
    /// (measured; requests to a killed edge are set aside, not counted).
    pub http_during_edge_faults: Ratio,
    /// Requests to an edge taken out by a fault (not counted).
    pub http_set_aside: u64,
    /// DNS queries to the replicas that were up.
    pub dns: Ratio,
    pub dns_set_aside: u64,
    /// Config versions read from the edges' and agents' logs.
    pub versions_seen: u64,
}

/// Everything about one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub seed: u64,
    pub mode: Mode,
    pub duration_s: f64,
    pub faults: Vec<FaultRecord>,
    pub counts: Counts,
    /// The first failed HTTP requests through the edges, then DNS queries: when, during which
    /// faults, why.
    pub failures: Vec<String>,
    /// kill -9 of the leader → first acknowledged write.
    pub failover_ms: Spread,
    /// An edge killed → its IP gone from every replica's DNS.
    pub dns_removal_ms: Spread,
    /// Workload stopped → every replica's state equal.
    pub convergence_ms: Option<u64>,
    pub violations: Vec<Violation>,
    /// Where a failed run's recorded history went (a `RecordedHistory` JSON file).
    pub history_file: Option<String>,
    /// Where a failed run's deployment directory (every process's log) was kept.
    pub logs_dir: Option<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// A few lines for a human.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "chaos run, seed {} ({:?}), {:.0} s, {} faults",
            self.seed,
            self.mode,
            self.duration_s,
            self.faults.len()
        );
        for f in &self.faults {
            let _ = writeln!(
                out,
                "  {:>7.1} s  {:?} on {}: healed after {:.1} s, settled after {:.1} s, {} HTTP failures{}{}{}",
                f.start_us as f64 / 1e6,
                f.kind,
                f.target,
                f.healed_us.saturating_sub(f.start_us) as f64 / 1e6,
                f.settled_us.saturating_sub(f.start_us) as f64 / 1e6,
                f.http_failed,
                f.failover_ms
                    .map(|ms| format!(", first write acknowledged {ms} ms after the kill"))
                    .unwrap_or_default(),
                f.dns_removal_ms
                    .map(|ms| format!(", out of DNS on every replica after {ms} ms"))
                    .unwrap_or_default(),
                f.error
                    .as_ref()
                    .map(|e| format!(" [ERROR: {e}]"))
                    .unwrap_or_default(),
            );
        }
        let _ = writeln!(
            out,
            "writes: {} acknowledged, {} not; register: {} operations ({} states searched)",
            c.writes_acknowledged,
            c.writes_unacknowledged,
            c.register_ops,
            c.register_states_explored
        );
        let _ = writeln!(
            out,
            "HTTP through the edges: {}/{} ({:.3}%) with no fault, {}/{} ({:.3}%) during control-plane faults, {}/{} ({:.3}%) during edge and agent faults, {} to a killed edge set aside",
            c.http_quiet.ok,
            c.http_quiet.total,
            c.http_quiet.percent(),
            c.http_during_faults.ok,
            c.http_during_faults.total,
            c.http_during_faults.percent(),
            c.http_during_edge_faults.ok,
            c.http_during_edge_faults.total,
            c.http_during_edge_faults.percent(),
            c.http_set_aside
        );
        let _ = writeln!(
            out,
            "DNS: {}/{} ({:.2}%) answered by the replicas that were up; {} config versions checked",
            c.dns.ok,
            c.dns.total,
            c.dns.percent(),
            c.versions_seen
        );
        for failure in &self.failures {
            let _ = writeln!(out, "  failed: {failure}");
        }
        let _ = writeln!(out, "leader failover: {}", self.failover_ms.describe());
        let _ = writeln!(out, "edge out of DNS: {}", self.dns_removal_ms.describe());
        if let Some(ms) = self.convergence_ms {
            let _ = writeln!(out, "converged {ms} ms after the workload stopped");
        }
        if self.violations.is_empty() {
            let _ = writeln!(out, "no violation");
        } else {
            let _ = writeln!(out, "{} VIOLATIONS:", self.violations.len());
            for v in &self.violations {
                let _ = writeln!(out, "  - {v}");
            }
            if let Some(file) = &self.history_file {
                let _ = writeln!(out, "recorded history: {file}");
            }
            if let Some(dir) = &self.logs_dir {
                let _ = writeln!(out, "logs kept in: {dir}");
            }
            let _ = writeln!(
                out,
                "replay with: kokoa-chaos --seed {} (same mode)",
                self.seed
            );
        }
        out
    }
}
