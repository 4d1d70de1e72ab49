//! Static DNS records (create, normalise, list, delete, refuse bad ones) and the address-pool
//! settings: validated, and used by the tunnel origins and edges made after a change; direct
//! origins get no subnet and a deleted origin's subnet is given out again.

use kokoa_tests::{ApiResponse, Cluster};
use serde_json::{json, Value};

use crate::fleet::{
    check_status, expect_status, find, list, new_edge, new_origin, wait_applied_everywhere,
};

/// The state version as replica `i` answers it linearizably.
async fn cluster_version(cluster: &Cluster, i: usize) -> u64 {
    let info = cluster
        .cluster_info(i, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    info["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no version in {info}"))
}

/// `POST /api/v1/dns/records` with `body`.
async fn post_record(cluster: &Cluster, i: usize, body: &Value) -> ApiResponse {
    cluster
        .client(i)
        .post_json("/api/v1/dns/records", body)
        .await
        .unwrap_or_else(|e| panic!("POST /api/v1/dns/records {body}: {e}"))
}

/// `GET /api/v1/settings` on replica `i`; asserts a 200.
async fn settings(cluster: &Cluster, i: usize) -> Value {
    let response = cluster
        .client(i)
        .get("/api/v1/settings")
        .await
        .expect("GET /api/v1/settings");
    expect_status("GET /api/v1/settings", &response, 200, None);
    response.json
}

/// The subnet of an origin answer (`None` for null or missing).
fn subnet(origin: &Value) -> Option<&str> {
    origin["subnet"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_records_are_validated_listed_and_deleted() {
    let cluster = Cluster::start(3).await;

    // Valid records through a follower: names lowercased, values normalised, ttl 30 by default.
    let follower = cluster.followers().await[0];
    let cases = [
        (
            json!({ "name": "App1", "type": "A", "value": "192.0.2.10" }),
            "app1",
            "192.0.2.10",
            30,
        ),
        (
            json!({ "name": "app1", "type": "AAAA", "value": "2001:DB8:0:0::1", "ttl": 300 }),
            "app1",
            "2001:db8::1",
            300,
        ),
        (
            json!({ "name": "www", "type": "CNAME", "value": "App1.Example.com." }),
            "www",
            "app1.example.com",
            30,
        ),
        (
            json!({ "name": "@", "type": "TXT", "value": "v=spf1 -all" }),
            "@",
            "v=spf1 -all",
            30,
        ),
    ];
    let mut ids = Vec::new();
    let mut last = 0;
    for (body, name, value, ttl) in &cases {
        let response = post_record(&cluster, follower, body).await;
        let (id, index) = crate::common::created(&format!("DNS record {body}"), &response);
        let record = &response.json;
        assert_eq!(record["name"], *name, "{body} -> {record}");
        assert_eq!(record["type"], body["type"], "{body} -> {record}");
        assert_eq!(record["value"], *value, "{body} -> {record}");
        assert_eq!(record["ttl"], *ttl, "{body} -> {record}");
        ids.push(id);
        last = index;
    }
    wait_applied_everywhere(&cluster, last).await;

    // Bad records: 400 invalid_dns_record (or invalid_json for a type that does not exist),
    // and nothing changes.
    let before = cluster_version(&cluster, 0).await;
    let mut problems = Vec::new();
    for (body, code) in [
        (
            json!({ "name": "bad", "type": "A", "value": "300.1.1.1" }),
            "invalid_dns_record",
        ),
        (
            json!({ "name": "bad", "type": "A", "value": "2001:db8::1" }),
            "invalid_dns_record",
        ),
        (
            json!({ "name": "bad", "type": "AAAA", "value": "192.0.2.1" }),
            "invalid_dns_record",
        ),
        (
            json!({ "name": "bad name!", "type": "A", "value": "192.0.2.1" }),
            "invalid_dns_record",
        ),
        (
            json!({ "name": "-bad", "type": "A", "value": "192.0.2.1" }),
            "invalid_dns_record",
        ),
        (
            json!({ "name": "a..b", "type": "A", "value": "192.0.2.1" }),
            "invalid_dns_record",
        ),
        (
            json!({ "name": "bad", "type": "A", "value": "192.0.2.1", "ttl": 0 }),
            "invalid_dns_record",
        ),
        (
            json!({ "name": "bad", "type": "CNAME", "value": "not a name" }),
            "invalid_dns_record",
        ),
        (
            json!({ "name": "bad", "type": "TXT", "value": "" }),
            "invalid_dns_record",
        ),
        (
            json!({ "name": "bad", "type": "MX", "value": "mail.example.com" }),
            "invalid_json",
        ),
    ] {
        let response = post_record(&cluster, 2, &body).await;
        problems.extend(check_status(
            &format!("POST /api/v1/dns/records {body}"),
            &response,
            400,
            Some(code),
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        cluster_version(&cluster, 0).await,
        before,
        "refused DNS records changed the state"
    );

    // Listed on every replica, exactly the four.
    for i in 0..3 {
        let records = list(&cluster.client(i), "/api/v1/dns/records").await;
        let mut listed: Vec<&str> = records.iter().filter_map(|r| r["id"].as_str()).collect();
        listed.sort_unstable();
        let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(
            listed,
            want,
            "replica {}: {records:?}",
            cluster.replica(i).id()
        );
    }

    // Delete one: gone everywhere; deleting it again is 404.
    let path = format!("/api/v1/dns/records/{}", ids[0]);
    let response = cluster
        .client(1)
        .delete(&path)
        .await
        .expect("DELETE record");
    expect_status(&format!("DELETE {path}"), &response, 204, None);
    for i in 0..3 {
        let records = list(&cluster.client(i), "/api/v1/dns/records").await;
        assert!(
            find(&records, "id", &ids[0]).is_none() && records.len() == 3,
            "replica {} after the delete: {records:?}",
            cluster.replica(i).id()
        );
    }
    let response = cluster
        .client(2)
        .delete(&path)
        .await
        .expect("DELETE record");
    expect_status(
        &format!("DELETE {path} again"),
        &response,
        404,
        Some("not_found"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_subnets_come_from_the_pool_in_the_settings() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.client(0);
    let defaults = json!({
        "tunnel_pool": "100.96.0.0/12",
        "edge_pool": "100.64.0.0/16",
        "dns_ttl": 30,
        "dns_ns": [],
        "health_interval_secs": 5,
        "health_timeout_secs": 2,
        "health_fail_after": 3,
        "health_pass_after": 2,
        "edge_stale_secs": 180,
    });
    assert_eq!(settings(&cluster, 1).await, defaults, "default settings");

    // Tunnel origins take /24s in order; direct ones take none; a freed /24 is given out again.
    let t1 = new_origin(&admin, "t1", "tunnel").await;
    let t2 = new_origin(&cluster.client(1), "t2", "tunnel").await;
    let d1 = new_origin(&cluster.client(2), "d1", "direct").await;
    let t3 = new_origin(&admin, "t3", "tunnel").await;
    let plain = admin
        .post_json("/api/v1/origins", &json!({ "name": "plain" }))
        .await
        .expect("POST origin");
    crate::common::created("origin without a kind", &plain);
    assert_eq!(subnet(&t1), Some("100.96.0.0/24"), "{t1}");
    assert_eq!(subnet(&t2), Some("100.96.1.0/24"), "{t2}");
    assert!(
        d1.get("subnet").is_some_and(Value::is_null),
        "a direct origin has subnet null: {d1}"
    );
    assert_eq!(subnet(&t3), Some("100.96.2.0/24"), "{t3}");
    assert_eq!(
        plain.json["kind"], "tunnel",
        "the default kind: {}",
        plain.json
    );
    assert_eq!(subnet(&plain.json), Some("100.96.3.0/24"), "{}", plain.json);

    let t2_id = t2["id"].as_str().expect("t2 id");
    let response = cluster
        .client(2)
        .delete(&format!("/api/v1/origins/{t2_id}"))
        .await
        .expect("DELETE origin");
    expect_status("delete origin t2", &response, 204, None);
    let t4 = new_origin(&cluster.client(1), "t4", "tunnel").await;
    assert_eq!(
        subnet(&t4),
        Some("100.96.1.0/24"),
        "the subnet of deleted t2 is not reused: {t4}"
    );
    let d2 = new_origin(&admin, "d2", "direct").await;
    assert!(d2["subnet"].is_null(), "{d2}");

    // Bad settings are refused with 400 and change nothing.
    let before = cluster_version(&cluster, 0).await;
    let mut problems = Vec::new();
    for (body, code) in [
        (
            json!({ "tunnel_pool": "10.0.0.0/25", "edge_pool": "100.64.0.0/16" }),
            "invalid_pool",
        ),
        (
            json!({ "tunnel_pool": "10.0.0.1/16", "edge_pool": "100.64.0.0/16" }),
            "invalid_pool",
        ),
        (
            json!({ "tunnel_pool": "not-a-pool", "edge_pool": "100.64.0.0/16" }),
            "invalid_pool",
        ),
        (
            json!({ "tunnel_pool": "10.0.0.0/33", "edge_pool": "100.64.0.0/16" }),
            "invalid_pool",
        ),
        (
            json!({ "tunnel_pool": "2001:db8::/48", "edge_pool": "100.64.0.0/16" }),
            "invalid_pool",
        ),
        (
            json!({ "tunnel_pool": "10.0.0.0/16", "edge_pool": "100.64.0.0/30" }),
            "invalid_pool",
        ),
        (
            json!({ "tunnel_pool": "10.0.0.0/16", "edge_pool": "banana" }),
            "invalid_pool",
        ),
        (
            json!({ "tunnel_pool": "10.0.0.0/16", "edge_pool": "100.64.0.0/16", "dns": 1 }),
            "invalid_json",
        ),
    ] {
        let response = cluster
            .client(1)
            .put_json("/api/v1/settings", &body)
            .await
            .expect("PUT /api/v1/settings");
        problems.extend(check_status(
            &format!("PUT /api/v1/settings {body}"),
            &response,
            400,
            Some(code),
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        cluster_version(&cluster, 0).await,
        before,
        "refused settings changed the state"
    );
    assert_eq!(settings(&cluster, 2).await, defaults, "after refused PUTs");

    // New pools: read back everywhere; existing origins keep their subnets, new ones and new
    // edges take from the new pools.
    let new = json!({ "tunnel_pool": "10.200.0.0/16", "edge_pool": "100.65.0.0/24" });
    let response = cluster
        .client(2)
        .put_json("/api/v1/settings", &new)
        .await
        .expect("PUT /api/v1/settings");
    expect_status(&format!("PUT /api/v1/settings {new}"), &response, 200, None);
    wait_applied_everywhere(&cluster, response.write_index().expect("index of the PUT")).await;
    for i in 0..3 {
        // Fields left out of a PUT take their defaults.
        let mut expected = defaults.clone();
        expected["tunnel_pool"] = new["tunnel_pool"].clone();
        expected["edge_pool"] = new["edge_pool"].clone();
        assert_eq!(
            settings(&cluster, i).await,
            expected,
            "replica {}",
            cluster.replica(i).id()
        );
    }
    let t5 = new_origin(&cluster.client(1), "t5", "tunnel").await;
    assert_eq!(
        subnet(&t5),
        Some("10.200.0.0/24"),
        "the first origin after the pool change: {t5}"
    );
    let t6 = new_origin(&admin, "t6", "tunnel").await;
    assert_eq!(subnet(&t6), Some("10.200.1.0/24"), "{t6}");
    let origins = list(&admin, "/api/v1/origins").await;
    let t1_id = t1["id"].as_str().expect("t1 id");
    assert_eq!(
        find(&origins, "id", t1_id).and_then(|o| o["subnet"].as_str()),
        Some("100.96.0.0/24"),
        "an existing origin kept its subnet: {origins:?}"
    );
    let edge = new_edge(&cluster, 2, "edge-1").await;
    let ip = edge.json["tunnel_ip"].as_str().unwrap_or_default();
    assert!(
        crate::fleet::is_host_in(ip, "100.65.0.0/24"),
        "an edge after the edge pool change got tunnel_ip {ip:?}: {}",
        edge.json
    );
}
