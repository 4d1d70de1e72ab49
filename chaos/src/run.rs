//! One chaos run: start the deployment and the workload, inject the scheduled faults one after
//! another (each healed and settled before the next), stop, let the cluster converge, and check
//! every invariant on what was recorded.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use crate::check::{self, Violation};
use crate::deployment::Deployment;
use crate::faults::{FaultRecord, Injector};
use crate::history::VersionObs;
use crate::report::{Counts, Report, Spread};
use crate::schedule::{FaultKind, Mode, Schedule};
use crate::targets::Targets;
use crate::workload::{self, Clock, Recorded, Workload, WorkloadTargets};
use kokoa_tests::try_wait_until_ok;

/// Quiet time before the first fault and after the last.
const QUIET: Duration = Duration::from_secs(10);
/// Quiet time between two faults, once the deployment settled.
const GAP: Duration = Duration::from_secs(3);
/// How long the deployment may take to serve normally again after a fault is healed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the replicas may take to reach equal states once the workload stops.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Required success ratios.
const HTTP_QUIET_REQUIRED: f64 = 1.0;
const HTTP_FAULTS_REQUIRED: f64 = 0.999;
const DNS_REQUIRED: f64 = 0.995;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub seed: u64,
    pub mode: Mode,
}

/// Runs the suite once; `Err` only when the deployment cannot even be set up.
pub async fn run(options: RunOptions) -> Result<Report, String> {
    let began = Instant::now();
    let schedule = Schedule::new(options.seed, options.mode);
    eprintln!(
        "chaos: seed {} ({:?}): {} faults: {:?}",
        options.seed,
        options.mode,
        schedule.faults.len(),
        schedule.faults.iter().map(|p| p.kind).collect::<Vec<_>>()
    );
    let mut dep = Deployment::start().await?;
    eprintln!("chaos: deployment serving; workload starts");
    let clock = Clock::start();
    let targets = workload_targets(&dep);
    let load = Workload::start(targets.clone(), clock, options.seed);
    let mut rng = StdRng::seed_from_u64(options.seed.wrapping_add(1));
    let mut violations = Vec::new();
    let mut faults: Vec<FaultRecord> = Vec::new();

    tokio::time::sleep(QUIET).await;
    for (n, planned) in schedule.faults.iter().enumerate() {
        eprintln!(
            "chaos: fault {}/{}: {:?} for {} ms",
            n + 1,
            schedule.faults.len(),
            planned.kind,
            planned.hold_ms
        );
        let mut injector = Injector {
            dep: &mut dep,
            targets: &targets,
            clock,
            rng: StdRng::from_rng(&mut rng).unwrap_or_else(|_| StdRng::seed_from_u64(n as u64)),
        };
        let mut record = injector.inject(planned).await;
        if let Some(e) = &record.error {
            violations.push(Violation::NotConverged {
                reason: format!("{:?} on {}: {e}", record.kind, record.target),
            });
        }
        if let Err(e) = settle(&dep).await {
            violations.push(Violation::NotConverged {
                reason: format!("after {:?} on {}: {e}", record.kind, record.target),
            });
        }
        record.settled_us = clock.now_us();
        eprintln!(
            "chaos: {:?} on {}: settled {:.1} s after it began{}",
            record.kind,
            record.target,
            record.settled_us.saturating_sub(record.start_us) as f64 / 1e6,
            record
                .error
                .as_ref()
                .map(|e| format!(" (error: {e})"))
                .unwrap_or_default()
        );
        faults.push(record);
        tokio::time::sleep(GAP).await;
    }
    tokio::time::sleep(QUIET).await;
    let recorded = load.stop().await;
    let stopped = Instant::now();
    let convergence_ms = match converge(&dep).await {
        Ok(()) => Some(stopped.elapsed().as_millis() as u64),
        Err(e) => {
            violations.push(Violation::NotConverged { reason: e });
            None
        }
    };

    let mut counts = Counts::default();
    violations.extend(check_writes(&dep, &recorded, &mut counts).await);
    violations.extend(check_register(&dep, &recorded, &mut counts));
    violations.extend(check_versions(&dep, &mut counts));
    let (availability, failures) = check_availability(&recorded, &mut faults, &mut counts);
    violations.extend(availability);
    for f in &mut faults {
        if f.kind == FaultKind::KillLeader {
            // The first write sent after the kill that was acknowledged.
            f.failover_ms = recorded
                .acks
                .iter()
                .filter(|a| a.sent_us > f.start_us)
                .map(|a| a.at_us)
                .min()
                .map(|t| (t - f.start_us) / 1000);
        }
    }
    // A failed run keeps its acknowledgements and register history, to be checked again
    // (`RecordedHistory::check`) or turned into a test.
    let history_file = (!violations.is_empty())
        .then(|| save_history(&dep, &recorded, options.seed))
        .flatten();
    let logs_dir = (!violations.is_empty()).then(|| dep.cluster.keep_dir().display().to_string());
    Ok(Report {
        history_file,
        logs_dir,
        seed: options.seed,
        mode: options.mode,
        duration_s: began.elapsed().as_secs_f64(),
        failover_ms: Spread::of(faults.iter().filter_map(|f| f.failover_ms).collect()),
        dns_removal_ms: Spread::of(faults.iter().filter_map(|f| f.dns_removal_ms).collect()),
        faults,
        counts,
        failures,
        convergence_ms,
        violations,
    })
}

/// Writes the run's acknowledgements and register history as a [`check::RecordedHistory`] to
/// the temporary directory; its path.
fn save_history(dep: &Deployment, recorded: &Recorded, seed: u64) -> Option<String> {
    let history = check::RecordedHistory {
        acks: recorded.acks.clone(),
        replicas: Default::default(),
        register_initial: initial_register(dep),
        register: recorded.register.clone(),
        versions: Vec::new(),
        availability: Vec::new(),
    };
    let path = std::env::temp_dir().join(format!("kokoa-chaos-history-{seed}.json"));
    let json = serde_json::to_vec(&history).ok()?;
    std::fs::write(&path, json).ok()?;
    Some(path.display().to_string())
}

/// The register's value before the workload began.
fn initial_register(dep: &Deployment) -> Option<u32> {
    dep.settings["dns_ttl"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
}

/// A seed from the clock, for runs not given one (printed, so that a failure can be replayed).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// The workload's view of the deployment: every replica's DNS, every edge's HTTP address.
fn workload_targets(dep: &Deployment) -> WorkloadTargets {
    let dns = Targets::default();
    for (id, addr) in dep.dns_addrs() {
        dns.insert(id, addr);
    }
    let edges = Targets::default();
    for (i, edge) in dep.edges.iter().enumerate() {
        edges.insert(i as u64 + 1, edge.http_addr());
    }
    WorkloadTargets {
        api: dep.urls.clone(),
        dns,
        edges,
        admin_token: dep.cluster.admin_token().to_string(),
        direct_origin_id: dep.direct_origin_id.clone(),
        direct_target: dep.direct_app.target(),
        settings: dep.settings.clone(),
        apps: workload::hosts(dep.direct_app.name(), dep.tunnel_app.name()),
    }
}

/// Waits until the deployment serves normally: 3 voters and one leader on every replica, both
/// routes through every edge, every edge in every replica's DNS.
async fn settle(dep: &Deployment) -> Result<(), String> {
    dep.wait_voters(3, SETTLE_TIMEOUT).await?;
    dep.wait_serving().await
}

/// Waits until every running replica's local state is the same.
async fn converge(dep: &Deployment) -> Result<(), String> {
    try_wait_until_ok("equal state on every replica", CONVERGE_TIMEOUT, || async {
        let mut first: Option<Value> = None;
        for i in dep.cluster.running() {
            let state = dep.cluster.local_state(i).await?;
            match &first {
                None => first = Some(state),
                Some(f) if *f != state => {
                    return Err(format!(
                        "replica {} differs (version {} vs {})",
                        dep.cluster.replica(i).id(),
                        state["version"],
                        f["version"]
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    })
    .await
}

/// Every acknowledged write on every running replica.
async fn check_writes(
    dep: &Deployment,
    recorded: &Recorded,
    counts: &mut Counts,
) -> Vec<Violation> {
    counts.writes_acknowledged = recorded.acks.len() as u64;
    counts.writes_unacknowledged = recorded.writes_unacknowledged;
    let mut replicas = Vec::new();
    for i in dep.cluster.running() {
        let id = dep.cluster.replica(i).id();
        match dep.cluster.local_state(i).await {
            Ok(state) => replicas.push((id.to_string(), written_keys(&state))),
            Err(e) => {
                return vec![Violation::NotConverged {
                    reason: format!("cannot read replica {id}'s state: {e}"),
                }]
            }
        }
    }
    check::lost_writes(&recorded.acks, &replicas)
}

/// `route:ID` and `dns:ID` for everything in a state dump.
fn written_keys(state: &Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (field, kind) in [("routes", "route"), ("dns_records", "dns")] {
        let items: Vec<&Value> = match &state[field] {
            Value::Array(a) => a.iter().collect(),
            Value::Object(m) => m.values().collect(),
            _ => Vec::new(),
        };
        keys.extend(
            items
                .iter()
                .filter_map(|r| r["id"].as_str())
                .map(|id| format!("{kind}:{id}")),
        );
    }
    keys
}

fn check_register(dep: &Deployment, recorded: &Recorded, counts: &mut Counts) -> Vec<Violation> {
    counts.register_ops = recorded.register.len() as u64;
    match check::linearizable(&recorded.register, initial_register(dep)) {
        Ok(stats) => {
            counts.register_states_explored = stats.states_explored;
            Vec::new()
        }
        Err(v) => vec![v],
    }
}

/// Every config version the edges and agents logged, in order.
fn check_versions(dep: &Deployment, counts: &mut Counts) -> Vec<Violation> {
    let mut seen = Vec::new();
    for edge in &dep.edges {
        seen.extend(versions_in(&format!("edge:{}", edge.name()), &edge.log()));
    }
    for agent in &dep.agents {
        seen.extend(versions_in(
            &format!("agent:{}", agent.name()),
            &agent.log(),
        ));
    }
    counts.versions_seen = seen.len() as u64;
    check::monotonic_versions(&seen)
}

/// The lines of a log that say a config was put in service, with their `version=`.
pub fn versions_in(who: &str, log: &str) -> Vec<VersionObs> {
    const MARKERS: [&str; 3] = [
        "serving a new config",
        "serving the config saved on disk",
        "config applied",
    ];
    kokoa_tests::strip_ansi(log)
        .lines()
        .enumerate()
        .filter(|(_, line)| MARKERS.iter().any(|m| line.contains(m)))
        .filter_map(|(n, line)| {
            let version = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("version="))?;
            Some(VersionObs {
                who: who.to_string(),
                version: version.trim_matches('"').parse().ok()?,
                line: n + 1,
            })
        })
        .collect()
}

/// The most failed requests a report describes.
const FAILURES_SHOWN: usize = 20;

/// One failed request, for the report: what, when (seconds into the run), during which faults,
/// and why.
fn describe_failure(
    what: &str,
    (start_us, end_us): (u64, u64),
    during: &[String],
    error: Option<&str>,
) -> String {
    let when = if during.is_empty() {
        "no fault".to_string()
    } else {
        during.join(", ")
    };
    format!(
        "{what} at {:.1}-{:.1} s ({when}): {}",
        start_us as f64 / 1e6,
        end_us as f64 / 1e6,
        error.unwrap_or_default()
    )
}

/// HTTP with no fault: all must succeed; during faults: 99.9%; DNS to replicas that were up.
/// Also counts each fault's failed requests and describes the first few failures.
fn check_availability(
    recorded: &Recorded,
    faults: &mut [FaultRecord],
    counts: &mut Counts,
) -> (Vec<Violation>, Vec<String>) {
    let mut failures = Vec::new();
    for sample in &recorded.http {
        let mut during = Vec::new();
        let mut data_plane_fault = false;
        for f in faults.iter_mut() {
            if f.overlaps(sample.start_us, sample.end_us) {
                f.http_failed += u64::from(!sample.ok);
                during.push(format!("{:?}", f.kind));
                data_plane_fault |= !f.kind.is_control_plane();
            }
        }
        if data_plane_fault {
            counts.http_during_edge_faults.add(sample.ok);
        } else if during.is_empty() {
            counts.http_quiet.add(sample.ok);
        } else {
            counts.http_during_faults.add(sample.ok);
        }
        if !sample.ok && failures.len() < FAILURES_SHOWN {
            failures.push(describe_failure(
                &format!("edge {} {}", sample.edge, sample.host),
                (sample.start_us, sample.end_us),
                &during,
                sample.error.as_deref(),
            ));
        }
    }
    counts.http_set_aside = recorded.http_set_aside;
    for sample in &recorded.dns {
        counts.dns.add(sample.ok);
        if !sample.ok && failures.len() < FAILURES_SHOWN {
            let during: Vec<String> = faults
                .iter()
                .filter(|f| f.overlaps(sample.start_us, sample.end_us))
                .map(|f| format!("{:?}", f.kind))
                .collect();
            failures.push(describe_failure(
                &format!("DNS of replica {}", sample.replica),
                (sample.start_us, sample.end_us),
                &during,
                sample.error.as_deref(),
            ));
        }
    }
    counts.dns_set_aside = recorded.dns_set_aside;
    let required = [
        (
            "HTTP through the edges with no fault injected",
            counts.http_quiet,
            HTTP_QUIET_REQUIRED,
        ),
        (
            "HTTP through the edges during control-plane faults",
            counts.http_during_faults,
            HTTP_FAULTS_REQUIRED,
        ),
        (
            "DNS answers from the replicas that were up",
            counts.dns,
            DNS_REQUIRED,
        ),
    ];
    let violations = required
        .into_iter()
        .filter_map(|(what, ratio, needed)| {
            check::availability(what, ratio.ok, ratio.total, needed)
        })
        .collect();
    (violations, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_config_lines_only() {
        let log = "2026 INFO kokoa_pull::follow: serving the config saved on disk version=7\n\
                   2026 INFO kokoa_edge::live: serving a new config version=9 routes=2 certificates=0\n\
                   2026 INFO kokoa: edge listening http=127.0.0.2:80\n\
                   2026 INFO kokoa::agent: config applied version=12 edges=2 targets=1\n";
        let seen = versions_in("edge:e", log);
        let versions: Vec<(u64, usize)> = seen.iter().map(|o| (o.version, o.line)).collect();
        assert_eq!(versions, [(7, 1), (9, 2), (12, 4)]);
    }
}
