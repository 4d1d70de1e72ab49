//! A follower that missed more than a snapshot's worth of log catches up by installing a
//! snapshot (`--snapshot-every 50`).

use kokoa_tests::Cluster;

use crate::common::{create_origin, created, retry_write, route_hostnames, state_hostnames};

const ROUTES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_through_a_snapshot() {
    let mut cluster = Cluster::start_with(3, &["--snapshot-every", "50"]).await;
    let leader = cluster.wait_for_leader(None).await;
    let follower = cluster.followers().await[0];
    let follower_id = cluster.replica(follower).id();

    cluster.replica_mut(follower).kill9();
    let api = cluster.client(leader);
    let (origin_id, _) = create_origin(&api, "home").await;
    let mut max_index = 0;
    for n in 0..ROUTES {
        let response = retry_write(&format!("route {n}"), |attempt| {
            let host = format!("r{n}-{attempt}.snap.example.com");
            let api = api.clone();
            let origin_id = origin_id.clone();
            async move { api.create_route(&host, &origin_id, "localhost:8080").await }
        })
        .await;
        max_index = max_index.max(created("route", &response).1);
    }

    cluster
        .replica_mut(follower)
        .restart()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let state = cluster.wait_states_equal(max_index).await;
    assert_eq!(
        state_hostnames(&state).len(),
        ROUTES,
        "routes in the converged state"
    );
    let local = route_hostnames(&cluster.client(follower), true).await;
    assert_eq!(
        local.len(),
        ROUTES,
        "routes on the restarted follower {follower_id}"
    );

    let log = cluster.replica(follower).log_since_start();
    assert!(
        log.contains("installed snapshot"),
        "replica {follower_id} caught up without logging `installed snapshot` (log: {})",
        cluster.replica(follower).log_path().display()
    );
}
