//! 16 concurrent writers while the leader, then a follower, is killed with -9 and restarted:
//! every acknowledged write survives on every replica, exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kokoa_tests::{wait_until, Api, Cluster, CONVERGE_TIMEOUT};
use tokio::task::JoinSet;

use crate::common::{create_origin, is_retryable, route_hostnames};

const WRITERS: usize = 16;
/// Acknowledged writes required in each phase (before the kill, while down, after restart).
const ACKS_PER_PHASE: usize = 150;

/// What one writer saw: acknowledged (hostname, index), and contract violations.
#[derive(Default)]
struct WriterReport {
    acked: Vec<(String, u64)>,
    violations: Vec<String>,
}

async fn writer(
    n: usize,
    apis: Vec<Api>,
    origin_id: String,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> WriterReport {
    let mut report = WriterReport::default();
    let mut seq = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let api = &apis[(n + seq) % apis.len()];
        let host = format!("w{n}-{seq}.burst.example.com");
        seq += 1;
        match api.create_route(&host, &origin_id, "127.0.0.1:8080").await {
            Ok(response) if response.is_success() => match response.write_index() {
                Some(index) => {
                    report.acked.push((host, index));
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                None => report
                    .violations
                    .push(format!("{host}: {} without X-Kokoa-Index", response.status)),
            },
            Ok(response) if is_retryable(&response) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(response) => report.violations.push(format!(
                "{host}: unexpected {} {}",
                response.status, response.json
            )),
            // Connection refused / reset / timed out: not acknowledged, back off briefly.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    report
}

async fn wait_acks(acks: &AtomicUsize, target: usize, phase: &str) {
    wait_until(
        &format!("{target} acknowledged writes ({phase})"),
        CONVERGE_TIMEOUT,
        || async { (acks.load(Ordering::Relaxed) >= target).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_leader_and_follower_crashes_under_load() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(None).await;
    let (origin_id, _) = create_origin(&cluster.client(leader), "home").await;

    let apis: Vec<Api> = (0..cluster.len()).map(|i| cluster.client(i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let mut writers = JoinSet::new();
    for n in 0..WRITERS {
        writers.spawn(writer(
            n,
            apis.clone(),
            origin_id.clone(),
            stop.clone(),
            acks.clone(),
        ));
    }

    wait_acks(&acks, ACKS_PER_PHASE, "before the crash").await;
    cluster.replica_mut(leader).kill9();
    let at_kill = acks.load(Ordering::Relaxed);
    wait_acks(&acks, at_kill + ACKS_PER_PHASE, "with the old leader down").await;
    cluster
        .replica_mut(leader)
        .restart()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let at_restart = acks.load(Ordering::Relaxed);
    wait_acks(&acks, at_restart + ACKS_PER_PHASE, "after the restart").await;

    // Then a follower, the same way.
    let follower = cluster.followers().await[0];
    cluster.replica_mut(follower).kill9();
    let at_kill = acks.load(Ordering::Relaxed);
    wait_acks(&acks, at_kill + ACKS_PER_PHASE, "with a follower down").await;
    cluster
        .replica_mut(follower)
        .restart()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let at_restart = acks.load(Ordering::Relaxed);
    wait_acks(
        &acks,
        at_restart + ACKS_PER_PHASE,
        "after the follower's restart",
    )
    .await;
    stop.store(true, Ordering::Relaxed);

    let mut acked: Vec<(String, u64)> = Vec::new();
    let mut violations = Vec::new();
    while let Some(report) = writers.join_next().await {
        let report = report.expect("writer task panicked");
        acked.extend(report.acked);
        violations.extend(report.violations);
    }
    assert!(
        violations.is_empty(),
        "contract violations: {violations:#?}"
    );

    // Concurrent writes may share a log index (the leader batches them into one entry), but
    // one hostname is acknowledged once, at one index.
    let mut by_host: HashMap<&str, u64> = HashMap::new();
    for (host, index) in &acked {
        if let Some(other) = by_host.insert(host, *index) {
            panic!("{host} was acknowledged twice, at {other} and {index}");
        }
    }

    let max_index = acked.iter().map(|(_, i)| *i).max().expect("some acks");
    eprintln!(
        "{} acknowledged writes, highest index {max_index}",
        acked.len()
    );
    cluster.wait_states_equal(max_index).await;
    for i in 0..cluster.len() {
        let id = cluster.replica(i).id();
        for stale in [true, false] {
            let hosts = route_hostnames(&cluster.client(i), stale).await;
            let unique: HashSet<&String> = hosts.iter().collect();
            assert_eq!(
                unique.len(),
                hosts.len(),
                "replica {id} (stale={stale}) lists a hostname twice"
            );
            let missing: Vec<&String> = acked
                .iter()
                .map(|(h, _)| h)
                .filter(|h| !unique.contains(h))
                .collect();
            assert!(
                missing.is_empty(),
                "replica {id} (stale={stale}) lost {} of {} acknowledged writes: {missing:?}",
                missing.len(),
                acked.len()
            );
        }
    }
}
