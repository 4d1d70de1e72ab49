//! Growing a cluster with `--join`, refusing a wrong join token, removing a replica.

use std::time::Duration;

use kokoa_tests::{random_hex, voter_ids, wait_until_ok, Cluster, CONVERGE_TIMEOUT};
use serde_json::{json, Value};

use crate::common::{create_origin, created, retry_write};

fn member_ids(info: &Value) -> Vec<u64> {
    info["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_join_with_a_server_token_and_can_be_removed() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(None).await;
    let follower = cluster.followers().await[0];

    let token = cluster
        .client(leader)
        .post_json("/api/v1/tokens", &json!({ "role": "server" }))
        .await
        .expect("POST /api/v1/tokens");
    assert_eq!(
        token.status.as_u16(),
        201,
        "create server token: {}",
        token.json
    );
    assert_eq!(token.json["role"], "server", "{}", token.json);
    let token = token.json["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {}", token.json))
        .to_string();

    // A 4th replica joins through a follower's API and becomes a voter.
    let join_url = cluster.replica(follower).api_url();
    let fourth = cluster
        .join_replica(4, &join_url, &token)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cluster.wait_formed(4).await;
    let (origin_id, _) = create_origin(&cluster.client(fourth), "home").await;

    // A 5th with a wrong token never becomes a member.
    let mut intruder = cluster.launch_joiner(5, &join_url, &format!("kokoa_{}", random_hex(24)));
    let exit = intruder.wait_exit(Duration::from_secs(30)).await;
    if let Some(status) = exit {
        assert!(
            !status.success(),
            "the joiner with a wrong token exited with {status}"
        );
    }
    eprintln!("joiner with a wrong token: exit {exit:?}");
    let log = intruder.log().to_lowercase();
    assert!(
        log.contains("error") || log.contains("unauthorized") || log.contains("denied"),
        "the joiner with a wrong token logged no error line (running: {}):\n{}",
        exit.is_none(),
        intruder.log_tail(20)
    );
    let info = cluster
        .cluster_info(leader, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !member_ids(&info).contains(&5),
        "replica 5 became a member: {info}"
    );
    assert_eq!(
        voter_ids(&info).len(),
        4,
        "voters after the refused join: {info}"
    );
    drop(intruder);

    // Remove a replica that is not the leader; the other three keep committing.
    let leader = cluster.wait_for_leader(None).await;
    let victim = (0..cluster.len())
        .find(|&i| i != leader && i != fourth)
        .expect("a follower to remove");
    let victim_id = cluster.replica(victim).id();
    let removed = cluster
        .client(leader)
        .delete(&format!("/api/v1/cluster/nodes/{victim_id}"))
        .await
        .expect("DELETE /api/v1/cluster/nodes/{id}");
    assert!(
        removed.is_success(),
        "remove replica {victim_id}: {} {}",
        removed.status,
        removed.json
    );
    wait_until_ok(
        &format!("replica {victim_id} gone from the membership"),
        CONVERGE_TIMEOUT,
        || async {
            let info = cluster.cluster_info(leader, false).await?;
            if member_ids(&info).contains(&victim_id) {
                Err(format!("still listed: {info}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
    cluster.replica_mut(victim).kill9();
    cluster.wait_formed(3).await;

    for i in cluster.running() {
        let id = cluster.replica(i).id();
        let api = cluster.client(i);
        let response = retry_write(&format!("route through replica {id}"), |attempt| {
            let api = api.clone();
            let origin_id = origin_id.clone();
            let host = format!("after-removal-{id}-{attempt}.example.com");
            async move { api.create_route(&host, &origin_id, "localhost:8080").await }
        })
        .await;
        created("route after the removal", &response);
    }
}
