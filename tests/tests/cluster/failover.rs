//! kill -9 of the leader: a new leader is elected, writes go on, and the killed replica comes
//! back from its data dir with the same state as the others. SIGSTOP of the leader: the same,
//! and once resumed the old leader follows the new one.

use crate::common::{create_origin, created, retry_write, state_hostnames};
use kokoa_tests::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_and_catches_up_after_restart() {
    let mut cluster = Cluster::start(3).await;
    let old_leader = cluster.wait_for_leader(None).await;
    let old_term = cluster.cluster_info(old_leader, false).await.expect("info")["term"]
        .as_u64()
        .expect("term");
    let leader_api = cluster.client(old_leader);
    let (origin_id, _) = create_origin(&leader_api, "home").await;
    let before = leader_api
        .create_route("before.example.com", &origin_id, "localhost:8080")
        .await
        .expect("POST route");
    created("route before the kill", &before);

    cluster.replica_mut(old_leader).kill9();
    let new_leader = cluster.wait_for_leader(Some(old_leader)).await;
    assert_ne!(new_leader, old_leader);
    let new_term = cluster.cluster_info(new_leader, false).await.expect("info")["term"]
        .as_u64()
        .expect("term");
    assert!(
        new_term > old_term,
        "term did not grow: {old_term} -> {new_term}"
    );

    // Writes through each survivor (one of them forwards to the new leader).
    let mut max_index = 0;
    let mut written = vec!["before.example.com".to_string()];
    for i in cluster.running() {
        let api = cluster.client(i);
        let id = cluster.replica(i).id();
        let response = retry_write(&format!("route through replica {id}"), |attempt| {
            let host = format!("after-{id}-{attempt}.example.com");
            let api = api.clone();
            let origin_id = origin_id.clone();
            async move { api.create_route(&host, &origin_id, "localhost:8080").await }
        })
        .await;
        let (_, index) = created("route after failover", &response);
        max_index = max_index.max(index);
        written.push(
            response.json["hostname"]
                .as_str()
                .expect("hostname")
                .to_string(),
        );
    }

    cluster
        .replica_mut(old_leader)
        .restart()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let state = cluster.wait_states_equal(max_index).await;
    let routes = state_hostnames(&state);
    for host in &written {
        assert!(
            routes.contains(host),
            "{host} missing from the converged state: {routes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_is_replaced_and_follows_after_resume() {
    let cluster = Cluster::start(3).await;
    let old_leader = cluster.wait_for_leader(None).await;
    let (origin_id, _) = create_origin(&cluster.client(old_leader), "home").await;

    cluster.replica(old_leader).sigstop();
    let new_leader = cluster.wait_for_leader(Some(old_leader)).await;
    assert_ne!(new_leader, old_leader);
    let api = cluster.client(new_leader);
    let response = retry_write("route while the old leader is paused", |attempt| {
        let host = format!("paused-{attempt}.example.com");
        let api = api.clone();
        let origin_id = origin_id.clone();
        async move { api.create_route(&host, &origin_id, "localhost:8080").await }
    })
    .await;
    let (_, index) = created("route while the old leader is paused", &response);
    let host = response.json["hostname"]
        .as_str()
        .expect("hostname")
        .to_string();

    cluster.replica(old_leader).sigcont();
    // Every replica, the resumed one included, agrees on a single leader again.
    cluster.wait_formed(3).await;
    let state = cluster.wait_states_equal(index).await;
    assert!(
        state_hostnames(&state).contains(&host),
        "{host} missing from the converged state"
    );
    // The resumed replica serves linearizable reads that include the write.
    let hosts = crate::common::route_hostnames(&cluster.client(old_leader), false).await;
    assert!(
        hosts.contains(&host),
        "resumed replica's linearizable read: {hosts:?}"
    );
}
