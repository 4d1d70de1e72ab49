//! The whole control plane killed with -9 right after acknowledged writes: once it is back, no
//! linearizable read on any replica shows a value older than the last acknowledged one.
//!
//! The state database commits most applies without an fsync (the raft log is the durable
//! record), so a replica restarts with an older state and catches up from its log. A leader
//! whose vote was committed restarts as the leader of the same term; its reads must wait for
//! everything in its log, not for the older commit position it reloaded.

use std::time::{Duration, Instant};

use kokoa_tests::{Api, Cluster, CONVERGE_TIMEOUT};
use serde_json::{json, Value};
use tokio::task::JoinSet;

const ROUNDS: u64 = 3;
/// Writes acknowledged in each round before the crash (the last few are still unflushed).
const WRITES_PER_ROUND: u64 = 25;
/// Successful linearizable reads wanted from each replica after each restart.
const READS_PER_REPLICA: usize = 20;

/// Writes `dns_ttl = value`; panics unless it is acknowledged.
async fn write_ttl(api: &Api, settings: &Value, value: u64) {
    let mut body = settings.clone();
    body["dns_ttl"] = json!(value);
    let response = api
        .put_json("/api/v1/settings", &body)
        .await
        .unwrap_or_else(|e| panic!("PUT dns_ttl={value}: {e}"));
    assert!(
        response.is_success(),
        "PUT dns_ttl={value}: {} {}",
        response.status,
        response.json
    );
}

/// Reads `dns_ttl` linearizably from `api` until `READS_PER_REPLICA` reads succeed; returns
/// every value read, in order.
async fn read_ttls(api: Api) -> Vec<u64> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut seen = Vec::new();
    while seen.len() < READS_PER_REPLICA {
        assert!(
            Instant::now() < deadline,
            "{}: only {} linearizable reads succeeded after the restart",
            api.base_url(),
            seen.len()
        );
        match api.get("/api/v1/settings").await {
            Ok(r) if r.is_success() => {
                let ttl = r.json["dns_ttl"].as_u64().expect("dns_ttl is a number");
                seen.push(ttl);
            }
            // Not serving yet (no leader, not caught up, refused): ask again soon.
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_the_whole_control_plane_is_killed_show_every_acknowledged_write() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(None).await;
    let settings = cluster
        .client(leader)
        .get("/api/v1/settings")
        .await
        .expect("GET /api/v1/settings")
        .json;

    for round in 0..ROUNDS {
        let leader = cluster.wait_for_leader(None).await;
        let api = cluster.client(leader);
        let first = 1000 + round * 100;
        let last = first + WRITES_PER_ROUND - 1;
        for value in first..=last {
            write_ttl(&api, &settings, value).await;
        }
        for i in 0..cluster.len() {
            cluster.replica_mut(i).kill9();
        }
        // The old leader first: it comes back as the leader of the same term and answers reads
        // once a follower is back, racing its own catch-up of the commit position.
        let mut readers = JoinSet::new();
        cluster
            .replica_mut(leader)
            .restart()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        readers.spawn(read_ttls(cluster.client(leader)));
        // Its first read attempt has failed for want of a quorum: its replication to the
        // followers is backing off now, its reads are retried sooner.
        cluster
            .replica_mut(leader)
            .wait_for_line("confirming leadership for read request", CONVERGE_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for i in (0..cluster.len()).filter(|&i| i != leader) {
            cluster
                .replica_mut(i)
                .restart()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            readers.spawn(read_ttls(cluster.client(i)));
        }
        while let Some(seen) = readers.join_next().await {
            let seen = seen.expect("reader panicked");
            assert!(
                seen.iter().all(|&v| v == last),
                "round {round}: the last acknowledged write set dns_ttl={last}, \
                 but linearizable reads after the restart saw {seen:?}"
            );
        }
    }
}
