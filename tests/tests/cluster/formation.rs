//! Three replicas with static `--peers` form one cluster.

use kokoa_tests::{voter_ids, Cluster};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_agree_on_one_leader_and_three_voters() {
    let cluster = Cluster::start(3).await;

    let mut leaders = Vec::new();
    for i in 0..3 {
        let replica = cluster.replica(i);
        let info = cluster
            .cluster_info(i, false)
            .await
            .unwrap_or_else(|e| panic!("GET /api/v1/cluster: {e}"));
        assert_eq!(
            info.get("node_id").and_then(Value::as_u64),
            Some(replica.id()),
            "node_id of replica {}: {info}",
            replica.id()
        );
        leaders.push(info.get("leader_id").and_then(Value::as_u64));
        let mut voters = voter_ids(&info);
        voters.sort_unstable();
        assert_eq!(
            voters,
            vec![1, 2, 3],
            "voters seen by replica {}: {info}",
            replica.id()
        );

        // Every member is listed with the peer address it was started with.
        for member in info["members"].as_array().into_iter().flatten() {
            let id = member["id"].as_u64().expect("member id");
            let index = cluster.index_of(id).expect("member is one of ours");
            assert_eq!(
                member["peer_addr"].as_str(),
                Some(cluster.replica(index).spec().peer_listen().as_str()),
                "peer_addr of member {id} seen by replica {}: {info}",
                replica.id()
            );
        }

        let anonymous = cluster.client_with_token(i, None);
        let health = anonymous.get("/healthz").await.expect("GET /healthz");
        assert_eq!(health.status.as_u16(), 200, "/healthz: {}", health.json);
        assert_eq!(health.json["status"], "ok", "/healthz: {}", health.json);
        let ready = anonymous.get("/readyz").await.expect("GET /readyz");
        assert_eq!(ready.status.as_u16(), 200, "/readyz: {}", ready.json);
    }
    assert!(leaders[0].is_some(), "no leader named: {leaders:?}");
    assert!(
        leaders.iter().all(|l| *l == leaders[0]),
        "replicas name different leaders: {leaders:?}"
    );
}
