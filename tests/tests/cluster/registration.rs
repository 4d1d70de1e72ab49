//! Edges register with a bootstrap edge token and agents with a token bound to their origin:
//! each registration spends one use, spent / revoked / expired tokens and tokens of the wrong
//! kind are refused, tunnel addresses are distinct, and a removed edge or agent (or the origin
//! of an agent) loses its token on every replica.

use std::time::Duration;

use kokoa_tests::{wait_until, Cluster};
use serde_json::{json, Value};

use crate::fleet::{
    check_status, expect_status, find, get, is_host_in, list, make_token, new_origin, pull,
    register_agent, register_edge, registered, wait_applied_everywhere, wg_key, AGENT_CONFIG,
    AGENT_REGISTER, EDGE_CONFIG, EDGE_REGISTER,
};

/// Seconds since the Unix epoch on this host (the replicas share its clock).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Asserts a pull of `path` with `token` (of a removed edge or agent) answers 401 on every
/// replica (call it once the removal is applied everywhere).
async fn assert_token_dead_everywhere(cluster: &Cluster, who: &str, token: &str, path: &str) {
    for i in 0..cluster.len() {
        let id = cluster.replica(i).id();
        let response = get(&cluster.client_with_token(i, Some(token)), path).await;
        expect_status(
            &format!("GET {path} on replica {id} with the token of removed {who}"),
            &response,
            401,
            None,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_register_with_bootstrap_tokens_within_their_limits() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.client(0);

    // Two uses, spent through two different replicas; the third is refused on every replica.
    let bootstrap = make_token(&admin, json!({ "role": "edge", "max_uses": 2 })).await;
    assert_eq!(bootstrap.json["role"], "edge", "{}", bootstrap.json);
    assert!(
        bootstrap.json["subject"].is_null(),
        "a bootstrap token has no subject: {}",
        bootstrap.json
    );
    let via = |i: usize| cluster.client_with_token(i, Some(&bootstrap.token));
    let first = registered(
        "register edge-a through replica 2",
        &register_edge(&via(1), "edge-a").await,
    );
    let second_body = json!({
        "name": "edge-b",
        "public_ip": "198.51.100.20",
        "wg_public_key": wg_key(),
        "wg_port": 51999,
    });
    let second = registered(
        "register edge-b through replica 3",
        &via(2)
            .post_json(EDGE_REGISTER, &second_body)
            .await
            .expect("POST register"),
    );
    for i in 0..3 {
        let id = cluster.replica(i).id();
        expect_status(
            &format!("a third registration with a max_uses=2 token through replica {id}"),
            &register_edge(&via(i), &format!("edge-c{i}")).await,
            401,
            None,
        );
    }

    // The records: names, keys, ports, and distinct tunnel addresses from the edge pool.
    assert_eq!(first.json["name"], "edge-a", "{}", first.json);
    assert_eq!(first.json["public_ip"], "203.0.113.7", "{}", first.json);
    assert_eq!(first.json["wg_port"], 51820, "default port: {}", first.json);
    assert_eq!(second.json["wg_port"], 51999, "{}", second.json);
    assert_eq!(
        second.json["wg_public_key"], second_body["wg_public_key"],
        "{}",
        second.json
    );
    let ip_a = first.json["tunnel_ip"].as_str().unwrap_or_default();
    let ip_b = second.json["tunnel_ip"].as_str().unwrap_or_default();
    for (name, ip) in [("edge-a", ip_a), ("edge-b", ip_b)] {
        assert!(
            is_host_in(ip, "100.64.0.0/16"),
            "{name}: tunnel_ip {ip:?} is not a host of the edge pool 100.64.0.0/16"
        );
    }
    assert_ne!(ip_a, ip_b, "two edges got the same tunnel address");
    assert_ne!(first.token, second.token);

    // The admin list: exactly the two edges, never seen yet, health unknown.
    let edges = list(&cluster.client(2), "/api/v1/edge-nodes").await;
    let mut names: Vec<&str> = edges.iter().filter_map(|e| e["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["edge-a", "edge-b"], "edge list: {edges:?}");
    for edge in &edges {
        assert!(
            edge.get("last_seen").is_some_and(Value::is_null),
            "an edge that never pulled has last_seen null: {edge}"
        );
        assert_eq!(edge["health"], "unknown", "{edge}");
    }

    // Its own token pulls its own config, and counts as seen by the replica it pulled from.
    let config = pull(
        &cluster.client_with_token(1, Some(&first.token)),
        EDGE_CONFIG,
    )
    .await;
    assert_eq!(
        config["edge"]["id"].as_str(),
        Some(first.id.as_str()),
        "{config}"
    );
    assert_eq!(config["edge"]["tunnel_ip"].as_str(), Some(ip_a), "{config}");
    let edges = list(&cluster.client(1), "/api/v1/edge-nodes?stale=true").await;
    let seen = find(&edges, "id", &first.id).expect("edge-a listed")["last_seen"].as_u64();
    assert!(
        seen.is_some_and(|s| s.abs_diff(unix_now()) <= 60),
        "last_seen of edge-a after a pull on the same replica: {seen:?} (now {})",
        unix_now()
    );

    // An edge's own token cannot register, and a bootstrap token cannot pull.
    expect_status(
        "register with an edge's own token",
        &register_edge(&cluster.client_with_token(0, Some(&first.token)), "edge-d").await,
        403,
        None,
    );
    let spare = make_token(&admin, json!({ "role": "edge", "max_uses": 5 })).await;
    expect_status(
        "pull config with a bootstrap token",
        &get(
            &cluster.client_with_token(0, Some(&spare.token)),
            EDGE_CONFIG,
        )
        .await,
        403,
        None,
    );

    // A taken name is a conflict.
    expect_status(
        "register a second edge-a",
        &register_edge(&cluster.client_with_token(2, Some(&spare.token)), "edge-a").await,
        409,
        Some("name_taken"),
    );

    // A revoked token is refused on every replica once the revocation is applied there.
    let revoked = make_token(&admin, json!({ "role": "edge" })).await;
    let response = admin
        .delete(&format!("/api/v1/tokens/{}", revoked.id))
        .await
        .expect("DELETE token");
    expect_status("revoke a bootstrap token", &response, 204, None);
    wait_applied_everywhere(
        &cluster,
        response.write_index().expect("index of the revoke"),
    )
    .await;
    for i in 0..3 {
        let id = cluster.replica(i).id();
        let api = cluster.client_with_token(i, Some(&revoked.token));
        expect_status(
            &format!("register with a revoked token through replica {id}"),
            &register_edge(&api, &format!("edge-r{i}")).await,
            401,
            None,
        );
    }

    // An expiring token is refused on every replica once its expiry has passed.
    let expiring = make_token(&admin, json!({ "role": "edge", "ttl_secs": 1 })).await;
    let expires_at = expiring.json["expires_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("no expires_at in {}", expiring.json));
    assert!(
        expires_at.abs_diff(unix_now() + 1) <= 5,
        "expires_at {expires_at} is not about a second from now ({})",
        unix_now()
    );
    wait_until(
        "the clock to pass expires_at",
        Duration::from_secs(10),
        || async { (unix_now() >= expires_at).then_some(()) },
    )
    .await;
    for i in 0..3 {
        let id = cluster.replica(i).id();
        let api = cluster.client_with_token(i, Some(&expiring.token));
        expect_status(
            &format!("register with an expired token through replica {id}"),
            &register_edge(&api, &format!("edge-x{i}")).await,
            401,
            None,
        );
    }

    // None of the refused registrations left an edge behind.
    let edges = list(&admin, "/api/v1/edge-nodes").await;
    let mut names: Vec<&str> = edges.iter().filter_map(|e| e["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["edge-a", "edge-b"], "edge list: {edges:?}");

    // A removed edge's token stops working on every replica; the other edge's keeps working.
    let response = cluster
        .client(1)
        .delete(&format!("/api/v1/edge-nodes/{}", first.id))
        .await
        .expect("DELETE edge");
    expect_status("delete edge-a", &response, 204, None);
    wait_applied_everywhere(
        &cluster,
        response.write_index().expect("index of the delete"),
    )
    .await;
    assert_token_dead_everywhere(&cluster, "edge-a", &first.token, EDGE_CONFIG).await;
    for i in 0..3 {
        pull(
            &cluster.client_with_token(i, Some(&second.token)),
            EDGE_CONFIG,
        )
        .await;
    }
    let edges = list(&admin, "/api/v1/edge-nodes").await;
    assert!(
        find(&edges, "id", &first.id).is_none(),
        "deleted edge still listed: {edges:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_register_for_the_origin_of_their_token() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.client(0);
    let home = new_origin(&admin, "home", "tunnel").await;
    let other = new_origin(&admin, "other", "tunnel").await;
    let lan = new_origin(&admin, "lan", "direct").await;
    let home_id = home["id"].as_str().expect("home id");
    let other_id = other["id"].as_str().expect("other id");
    let lan_id = lan["id"].as_str().expect("lan id");
    let home_subnet = home["subnet"].as_str().expect("home subnet");
    let other_subnet = other["subnet"].as_str().expect("other subnet");

    // Agent tokens need an existing origin; other roles may not have one.
    let ghost = new_origin(&admin, "ghost", "tunnel").await;
    let ghost_id = ghost["id"].as_str().expect("ghost id");
    let response = admin
        .delete(&format!("/api/v1/origins/{ghost_id}"))
        .await
        .expect("DELETE origin");
    expect_status("delete origin ghost", &response, 204, None);
    let mut problems = Vec::new();
    for (body, status, code) in [
        (json!({ "role": "agent" }), 400, "origin_required"),
        (
            json!({ "role": "agent", "origin_id": ghost_id }),
            400,
            "unknown_origin",
        ),
        (
            json!({ "role": "edge", "origin_id": home_id }),
            400,
            "origin_not_allowed",
        ),
        (
            json!({ "role": "admin", "origin_id": home_id }),
            400,
            "origin_not_allowed",
        ),
    ] {
        let response = admin
            .post_json("/api/v1/tokens", &body)
            .await
            .expect("POST token");
        problems.extend(check_status(
            &format!("POST /api/v1/tokens {body}"),
            &response,
            status,
            Some(code),
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Two agents of home through two replicas, one of other: addresses inside their subnets.
    let home_token = make_token(&admin, json!({ "role": "agent", "origin_id": home_id })).await;
    assert!(
        !home_token.json["subject"].is_null(),
        "an agent token is bound to its origin: {}",
        home_token.json
    );
    let a1 = registered(
        "register agent a1 through replica 2",
        &register_agent(&cluster.client_with_token(1, Some(&home_token.token)), "a1").await,
    );
    let a2 = registered(
        "register agent a2 through replica 3",
        &register_agent(&cluster.client_with_token(2, Some(&home_token.token)), "a2").await,
    );
    let other_token = make_token(&admin, json!({ "role": "agent", "origin_id": other_id })).await;
    let b1 = registered(
        "register agent b1",
        &register_agent(
            &cluster.client_with_token(0, Some(&other_token.token)),
            "b1",
        )
        .await,
    );
    for (agent, origin_id, subnet) in [
        (&a1, home_id, home_subnet),
        (&a2, home_id, home_subnet),
        (&b1, other_id, other_subnet),
    ] {
        assert_eq!(
            agent.json["origin_id"].as_str(),
            Some(origin_id),
            "{}",
            agent.json
        );
        let ip = agent.json["tunnel_ip"].as_str().unwrap_or_default();
        assert!(
            is_host_in(ip, subnet),
            "agent {}: tunnel_ip {ip:?} is not a host of its origin's subnet {subnet}",
            agent.json
        );
    }
    assert_ne!(
        a1.json["tunnel_ip"], a2.json["tunnel_ip"],
        "two agents of one origin got the same address"
    );

    // Its own token pulls its config: itself and its origin.
    for i in 0..3 {
        cluster.wait_applied(i, b1.index.max(a2.index)).await;
        let config = pull(&cluster.client_with_token(i, Some(&a1.token)), AGENT_CONFIG).await;
        assert_eq!(
            config["agent"]["agent_id"].as_str(),
            Some(a1.id.as_str()),
            "{config}"
        );
        assert_eq!(
            config["agent"]["tunnel_ip"], a1.json["tunnel_ip"],
            "{config}"
        );
        assert_eq!(config["origin"]["id"].as_str(), Some(home_id), "{config}");
        assert_eq!(
            config["origin"]["subnet"].as_str(),
            Some(home_subnet),
            "{config}"
        );
    }

    // Tokens of the wrong kind.
    let edge_bootstrap = make_token(&admin, json!({ "role": "edge" })).await;
    let lan_token = make_token(&admin, json!({ "role": "agent", "origin_id": lan_id })).await;
    let mut problems = Vec::new();
    for (what, token, path) in [
        ("an agent token", &home_token.token, EDGE_REGISTER),
        (
            "an edge bootstrap token",
            &edge_bootstrap.token,
            AGENT_REGISTER,
        ),
        ("an agent's own token", &a1.token, AGENT_REGISTER),
    ] {
        let api = cluster.client_with_token(1, Some(token));
        let response = if path == EDGE_REGISTER {
            register_edge(&api, "intruder").await
        } else {
            register_agent(&api, "intruder").await
        };
        problems.extend(check_status(
            &format!("POST {path} with {what}"),
            &response,
            403,
            None,
        ));
    }
    let response = register_agent(
        &cluster.client_with_token(2, Some(&lan_token.token)),
        "lan1",
    )
    .await;
    if !response.status.is_client_error() || response.error_code() != Some("not_tunnel") {
        problems.push(format!(
            "POST {AGENT_REGISTER} with a token of direct origin lan: want 4xx not_tunnel, got {} {}",
            response.status, response.json
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let agents = list(&cluster.client(1), "/api/v1/agents").await;
    let mut names: Vec<&str> = agents.iter().filter_map(|a| a["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["a1", "a2", "b1"], "agent list: {agents:?}");
    for agent in &agents {
        assert!(agent.get("last_seen").is_some(), "no last_seen: {agent}");
    }

    // A removed agent's token stops working everywhere; its sibling's keeps working.
    let response = cluster
        .client(2)
        .delete(&format!("/api/v1/agents/{}", a2.id))
        .await
        .expect("DELETE agent");
    expect_status("delete agent a2", &response, 204, None);
    wait_applied_everywhere(
        &cluster,
        response.write_index().expect("index of the delete"),
    )
    .await;
    assert_token_dead_everywhere(&cluster, "agent a2", &a2.token, AGENT_CONFIG).await;
    pull(&cluster.client_with_token(2, Some(&a1.token)), AGENT_CONFIG).await;

    // Removing an origin removes its agents and the agent tokens bound to it.
    let response = cluster
        .client(1)
        .delete(&format!("/api/v1/origins/{other_id}"))
        .await
        .expect("DELETE origin");
    expect_status("delete origin other", &response, 204, None);
    wait_applied_everywhere(
        &cluster,
        response.write_index().expect("index of the delete"),
    )
    .await;
    assert_token_dead_everywhere(&cluster, "origin other's agent b1", &b1.token, AGENT_CONFIG)
        .await;
    let agents = list(&admin, "/api/v1/agents").await;
    let mut names: Vec<&str> = agents.iter().filter_map(|a| a["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["a1"],
        "agents after removing a2 and origin other: {agents:?}"
    );
    let tokens = list(&admin, "/api/v1/tokens").await;
    assert!(
        find(&tokens, "id", &other_token.id).is_none(),
        "the agent token bound to deleted origin other is still listed: {tokens:?}"
    );
    assert!(
        find(&tokens, "id", &home_token.id).is_some(),
        "the agent token of origin home disappeared: {tokens:?}"
    );
    for i in 0..3 {
        let id = cluster.replica(i).id();
        expect_status(
            &format!("register with the token of deleted origin other through replica {id}"),
            &register_agent(
                &cluster.client_with_token(i, Some(&other_token.token)),
                "b2",
            )
            .await,
            401,
            None,
        );
    }
}

/// Registration checks the token before the body: a caller without a valid token gets 401,
/// never a description of the body the endpoint expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_without_a_token_says_nothing_about_the_body() {
    let cluster = kokoa_tests::Cluster::start_single().await;
    let anonymous = cluster.client_with_token(0, None);
    let stranger = cluster.client_with_token(0, Some("kokoa.000000000000.1111"));
    for path in ["/api/v1/edge-nodes/register", "/api/v1/agents/register"] {
        for api in [&anonymous, &stranger] {
            let r = api
                .post_json(path, &serde_json::json!({"bogus": true}))
                .await
                .expect("request");
            assert_eq!(r.status.as_u16(), 401, "{path}: {}", r.json);
            assert_eq!(r.error_code(), Some("unauthorized"), "{path}: {}", r.json);
        }
    }
}
