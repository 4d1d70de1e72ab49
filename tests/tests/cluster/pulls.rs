//! Config pulls: who may pull what (and who may not touch the admin API), an agent sees only
//! its own origin, a waiting pull on any replica wakes within a second of a write through
//! another, an idle pull ends in 304, a replica never answers with a version below the one the
//! client has, and `config_hash` follows the config, not the replica or the version.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kokoa_tests::{wait_until_ok, Api, ApiResponse, Cluster};
use serde_json::{json, Value};

use crate::fleet::{
    check_status, expect_status, find, get, make_token, new_agent, new_edge, new_origin, new_route,
    pull, version_of, wait_applied_everywhere, AGENT_CONFIG, AGENT_REGISTER, EDGE_CONFIG,
    EDGE_REGISTER,
};

/// How soon a waiting pull must answer after a write: a stated requirement.
const WAKE_WITHIN: Duration = Duration::from_secs(1);

/// `METHOD path` with an optional JSON body as `api`'s principal.
async fn send(api: &Api, method: &str, path: &str, body: &Value) -> ApiResponse {
    let result = match method {
        "GET" => api.get(path).await,
        "POST" => api.post_json(path, body).await,
        "PUT" => api.put_json(path, body).await,
        "DELETE" => api.delete(path).await,
        other => panic!("unknown method {other}"),
    };
    result.unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", api.base_url()))
}

/// `GET path` in the background; the answer and when it came back.
fn spawn_get(api: Api, path: String) -> tokio::task::JoinHandle<(ApiResponse, Instant)> {
    tokio::spawn(async move {
        let response = get(&api, &path).await;
        (response, Instant::now())
    })
}

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

/// The string values of a JSON object, by key.
fn string_map(json: &Value) -> BTreeMap<String, String> {
    json.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_and_admin_endpoints_refuse_the_wrong_principal() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.client(0);
    let alpha = new_origin(&admin, "alpha", "tunnel").await;
    let beta = new_origin(&admin, "beta", "tunnel").await;
    let alpha_id = alpha["id"].as_str().expect("alpha id");
    let beta_id = beta["id"].as_str().expect("beta id");
    new_route(&admin, "a1.example.com", alpha_id, "10.1.0.1:8080").await;
    new_route(&admin, "a2.example.com", alpha_id, "10.1.0.2:8080").await;
    new_route(&admin, "b1.example.com", beta_id, "10.2.0.1:9090").await;
    let edge = new_edge(&cluster, 1, "edge-1").await;
    let agent_a = new_agent(&cluster, 2, alpha_id, "agent-a").await;
    let agent_b = new_agent(&cluster, 0, beta_id, "agent-b").await;
    let edge_bootstrap = make_token(&admin, json!({ "role": "edge" })).await;
    let agent_bootstrap =
        make_token(&admin, json!({ "role": "agent", "origin_id": alpha_id })).await;
    wait_applied_everywhere(&cluster, agent_bootstrap.index).await;
    let before = cluster_version(&cluster, 0).await;

    let admin_requests: Vec<(&str, String, Value)> = vec![
        ("GET", "/api/v1/routes".into(), Value::Null),
        (
            "POST",
            "/api/v1/routes".into(),
            json!({ "hostname": "sneaky.example.com", "origin_id": alpha_id, "target": "10.9.9.9:80" }),
        ),
        (
            "POST",
            "/api/v1/origins".into(),
            json!({ "name": "sneaky", "kind": "tunnel" }),
        ),
        ("GET", "/api/v1/origins".into(), Value::Null),
        ("GET", "/api/v1/tokens".into(), Value::Null),
        ("POST", "/api/v1/tokens".into(), json!({ "role": "admin" })),
        ("GET", "/api/v1/edge-nodes".into(), Value::Null),
        (
            "DELETE",
            format!("/api/v1/edge-nodes/{}", edge.id),
            Value::Null,
        ),
        ("GET", "/api/v1/agents".into(), Value::Null),
        (
            "DELETE",
            format!("/api/v1/agents/{}", agent_a.id),
            Value::Null,
        ),
        ("GET", "/api/v1/dns/records".into(), Value::Null),
        (
            "POST",
            "/api/v1/dns/records".into(),
            json!({ "name": "sneaky", "type": "A", "value": "192.0.2.1" }),
        ),
        ("GET", "/api/v1/settings".into(), Value::Null),
        (
            "PUT",
            "/api/v1/settings".into(),
            json!({ "tunnel_pool": "10.0.0.0/16", "edge_pool": "10.1.0.0/24" }),
        ),
        ("GET", "/api/v1/state".into(), Value::Null),
        ("GET", "/api/v1/cluster".into(), Value::Null),
    ];
    let no_body = Value::Null;
    let edge_registration = json!({
        "name": "nobody",
        "public_ip": "203.0.113.9",
        "wg_public_key": crate::fleet::wg_key(),
    });
    let agent_registration = json!({ "name": "nobody", "wg_public_key": crate::fleet::wg_key() });
    let principals: [(&str, Option<&str>); 6] = [
        ("no token", None),
        ("an unknown token", Some("kokoa.000000000000.000000")),
        ("edge-1's own token", Some(&edge.token)),
        ("an edge bootstrap token", Some(&edge_bootstrap.token)),
        ("agent-a's own token", Some(&agent_a.token)),
        ("an agent token of alpha", Some(&agent_bootstrap.token)),
    ];
    let mut problems = Vec::new();
    for i in 0..3 {
        let id = cluster.replica(i).id();
        for (who, token) in principals {
            let api = cluster.client_with_token(i, token);
            // Admin endpoints: 401 without a valid token, 403 with a valid one of another role.
            let admin_status = if token.is_none() || who == "an unknown token" {
                401
            } else {
                403
            };
            for (method, path, body) in &admin_requests {
                let response = send(&api, method, path, body).await;
                problems.extend(check_status(
                    &format!("{method} {path} on replica {id} with {who}"),
                    &response,
                    admin_status,
                    None,
                ));
            }
            // Pulls: only an edge's or agent's own token, each on its own endpoint.
            for (path, owner) in [
                (EDGE_CONFIG, "edge-1's own token"),
                (AGENT_CONFIG, "agent-a's own token"),
            ] {
                let want = match token {
                    _ if who == owner => 200,
                    None => 401,
                    _ if who == "an unknown token" => 401,
                    _ => 403,
                };
                let response = send(&api, "GET", path, &no_body).await;
                problems.extend(check_status(
                    &format!("GET {path} on replica {id} with {who}"),
                    &response,
                    want,
                    None,
                ));
            }
        }
        // Registration without a token.
        let api = cluster.client_with_token(i, None);
        for (path, body) in [
            (EDGE_REGISTER, &edge_registration),
            (AGENT_REGISTER, &agent_registration),
        ] {
            let response = send(&api, "POST", path, body).await;
            problems.extend(check_status(
                &format!("POST {path} on replica {id} with no token"),
                &response,
                401,
                None,
            ));
        }
        // The admin token is not an edge or an agent.
        for path in [EDGE_CONFIG, AGENT_CONFIG] {
            let response = send(&cluster.client(i), "GET", path, &no_body).await;
            problems.extend(check_status(
                &format!("GET {path} on replica {id} with the admin token"),
                &response,
                403,
                None,
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "wrong principals handled wrongly:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        cluster_version(&cluster, 0).await,
        before,
        "refused requests changed the state"
    );

    // An agent sees its own origin's routes and nothing of the other origin.
    let b_wg_key = agent_b.json["wg_public_key"].as_str().expect("wg key");
    let a_wg_key = agent_a.json["wg_public_key"].as_str().expect("wg key");
    let want_a = BTreeMap::from([
        ("a1.example.com".to_string(), "10.1.0.1:8080".to_string()),
        ("a2.example.com".to_string(), "10.1.0.2:8080".to_string()),
    ]);
    let want_b = BTreeMap::from([("b1.example.com".to_string(), "10.2.0.1:9090".to_string())]);
    let other_b = ["b1.example.com", "10.2.0.1", beta_id, b_wg_key];
    let other_a = [
        "a1.example.com",
        "a2.example.com",
        "10.1.0.1",
        "10.1.0.2",
        alpha_id,
        a_wg_key,
    ];
    for i in 0..3 {
        let id = cluster.replica(i).id();
        for (agent, origin_id, want, others) in [
            (&agent_a, alpha_id, &want_a, &other_b[..]),
            (&agent_b, beta_id, &want_b, &other_a[..]),
        ] {
            let config = pull(
                &cluster.client_with_token(i, Some(&agent.token)),
                AGENT_CONFIG,
            )
            .await;
            assert_eq!(
                &string_map(&config["routes"]),
                want,
                "replica {id}: routes of agent {}: {config}",
                agent.id
            );
            let targets: Vec<&str> = config["targets"]
                .as_array()
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let want_targets: Vec<&str> = want.values().map(String::as_str).collect();
            assert_eq!(targets, want_targets, "replica {id}: targets: {config}");
            assert_eq!(config["origin"]["id"].as_str(), Some(origin_id), "{config}");
            assert!(
                find(
                    config["edges"].as_array().map_or(&[][..], Vec::as_slice),
                    "id",
                    &edge.id
                )
                .is_some(),
                "replica {id}: the agent does not see edge-1: {config}"
            );
            let text = config.to_string();
            for other in others {
                assert!(
                    !text.contains(other),
                    "replica {id}: the config of agent {} mentions {other:?} of the other \
                     origin: {config}",
                    agent.id
                );
            }
        }

        // The edge sees every route and both agents, each allowed only its own address.
        let config = pull(
            &cluster.client_with_token(i, Some(&edge.token)),
            EDGE_CONFIG,
        )
        .await;
        assert_eq!(
            config["hostnames"],
            json!(["a1.example.com", "a2.example.com", "b1.example.com"]),
            "replica {id}: {config}"
        );
        let b1 = &config["routes"]["b1.example.com"];
        assert_eq!(b1["origin_id"].as_str(), Some(beta_id), "{config}");
        assert_eq!(b1["origin"], "beta", "{config}");
        assert_eq!(b1["kind"], "tunnel", "{config}");
        assert_eq!(b1["target"], "10.2.0.1:9090", "{config}");
        let peers = config["peers"].as_array().map_or(&[][..], Vec::as_slice);
        for agent in [&agent_a, &agent_b] {
            let peer = find(peers, "agent_id", &agent.id)
                .unwrap_or_else(|| panic!("replica {id}: no peer {}: {config}", agent.id));
            let ip = agent.json["tunnel_ip"].as_str().expect("tunnel_ip");
            assert_eq!(peer["allowed_ips"], json!([format!("{ip}/32")]), "{peer}");
            assert_eq!(peer["wg_public_key"], agent.json["wg_public_key"], "{peer}");
        }
    }

    // A change elsewhere wakes agent-a's pull, but still shows it nothing of beta.
    let a_config = pull(
        &cluster.client_with_token(1, Some(&agent_a.token)),
        AGENT_CONFIG,
    )
    .await;
    let v = version_of(&a_config);
    let waiting = spawn_get(
        cluster.client_with_token(1, Some(&agent_a.token)),
        format!("{AGENT_CONFIG}?after={v}&wait=10"),
    );
    new_route(
        &cluster.client(2),
        "b2.example.com",
        beta_id,
        "10.2.0.2:9090",
    )
    .await;
    let (response, _) = waiting.await.expect("pull task");
    expect_status("agent-a's pull after a route of beta", &response, 200, None);
    assert_eq!(
        string_map(&response.json["routes"]),
        want_a,
        "{}",
        response.json
    );
    assert!(
        !response.json.to_string().contains("b2.example.com"),
        "{}",
        response.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_pull_on_every_replica_wakes_within_a_second_of_a_write_elsewhere() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.client(0);
    let origin = new_origin(&admin, "home", "tunnel").await;
    let origin_id = origin["id"].as_str().expect("origin id");
    let observer = new_edge(&cluster, 0, "observer").await;
    let mut watchers = Vec::new();
    for i in 0..3 {
        watchers.push(new_edge(&cluster, i, &format!("watch-{i}")).await);
    }
    let last = watchers.iter().map(|w| w.index).max().unwrap_or_default();
    wait_applied_everywhere(&cluster, last).await;

    for (i, watcher) in watchers.iter().enumerate() {
        let id = cluster.replica(i).id();
        let writer = (i + 1) % 3;
        let writer_id = cluster.replica(writer).id();
        let v = version_of(
            &pull(
                &cluster.client_with_token(i, Some(&observer.token)),
                EDGE_CONFIG,
            )
            .await,
        );

        let path = format!("{EDGE_CONFIG}?after={v}&wait=30");
        let waiting = spawn_get(
            cluster.client_with_token(i, Some(&watcher.token)),
            path.clone(),
        );
        // The replica notes the pull as it arrives: once listed as seen, the pull is waiting.
        let list_path = "/api/v1/edge-nodes?stale=true";
        wait_until_ok(
            &format!("replica {id} to receive the waiting pull"),
            Duration::from_secs(10),
            || async {
                let edges = crate::fleet::list(&cluster.client(i), list_path).await;
                let seen = find(&edges, "id", &watcher.id).map(|e| e["last_seen"].clone());
                match seen {
                    Some(Value::Number(_)) => Ok(()),
                    other => Err(format!("last_seen {other:?}")),
                }
            },
        )
        .await;
        assert!(
            !waiting.is_finished(),
            "GET {path} on replica {id} answered before any write"
        );

        let hostname = format!("wake-{i}.example.com");
        let response = cluster
            .client(writer)
            .create_route(&hostname, origin_id, "10.0.0.1:8080")
            .await
            .expect("POST route");
        let written = Instant::now();
        expect_status(
            &format!("route {hostname} through replica {writer_id}"),
            &response,
            201,
            None,
        );

        let (pulled, answered) = tokio::time::timeout(Duration::from_secs(15), waiting)
            .await
            .unwrap_or_else(|_| {
                panic!("GET {path} on replica {id}: no answer 15 s after a write on replica {writer_id}")
            })
            .expect("pull task");
        let lag = answered.saturating_duration_since(written);
        expect_status(&format!("GET {path} on replica {id}"), &pulled, 200, None);
        let version = version_of(&pulled.json);
        assert!(
            version > v,
            "GET {path} on replica {id}: version {version} is not above {v}"
        );
        let hostnames: Vec<&str> = pulled.json["hostnames"]
            .as_array()
            .map(|h| h.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            hostnames.contains(&hostname.as_str())
                && pulled.json["routes"].get(&hostname).is_some(),
            "GET {path} on replica {id} woke without {hostname}: {}",
            pulled.json
        );
        assert!(
            lag <= WAKE_WITHIN,
            "GET {path} on replica {id} answered {lag:?} after the write's 201 on replica \
             {writer_id}; the requirement is {WAKE_WITHIN:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pull_answers_304_once_its_wait_is_over() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.client(0);
    let origin = new_origin(&admin, "home", "tunnel").await;
    let origin_id = origin["id"].as_str().expect("origin id");
    new_route(&admin, "app.example.com", origin_id, "10.0.0.1:8080").await;
    let edge = new_edge(&cluster, 1, "edge-1").await;
    let agent = new_agent(&cluster, 2, origin_id, "agent-1").await;
    wait_applied_everywhere(&cluster, agent.index).await;

    // Every replica, both kinds of pull, at once.
    let mut waiting = Vec::new();
    for i in 0..3 {
        for (path, token) in [(EDGE_CONFIG, &edge.token), (AGENT_CONFIG, &agent.token)] {
            let api = cluster.client_with_token(i, Some(token));
            let v = version_of(&pull(&api, path).await);
            let path = format!("{path}?after={v}&wait=1");
            let started = Instant::now();
            let what = format!("GET {path} on replica {}", cluster.replica(i).id());
            waiting.push((what, v, started, spawn_get(api, path)));
        }
    }
    let mut problems = Vec::new();
    for (what, v, started, task) in waiting {
        let (response, answered) = task.await.expect("pull task");
        let took = answered.duration_since(started);
        problems.extend(check_status(&what, &response, 304, None));
        let header = response
            .headers
            .get("x-kokoa-version")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<u64>().ok());
        if header != Some(v) {
            problems.push(format!("{what}: x-kokoa-version {header:?}, want {v}"));
        }
        if !(Duration::from_millis(900)..Duration::from_secs(10)).contains(&took) {
            problems.push(format!("{what}: answered after {took:?}, want about 1 s"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_ahead_of_the_replica_is_refused_as_retryable() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.client(0);
    let origin = new_origin(&admin, "home", "tunnel").await;
    let origin_id = origin["id"].as_str().expect("origin id");
    new_route(&admin, "app.example.com", origin_id, "10.0.0.1:8080").await;
    let edge = new_edge(&cluster, 1, "edge-1").await;
    let agent = new_agent(&cluster, 2, origin_id, "agent-1").await;
    wait_applied_everywhere(&cluster, agent.index).await;

    // A version the cluster does not have: at once, and after waiting a second for it.
    let mut waiting = Vec::new();
    for i in 0..3 {
        for (path, token) in [(EDGE_CONFIG, &edge.token), (AGENT_CONFIG, &agent.token)] {
            let api = cluster.client_with_token(i, Some(token));
            let ahead = version_of(&pull(&api, path).await) + 1000;
            for query in [format!("after={ahead}"), format!("after={ahead}&wait=1")] {
                let path = format!("{path}?{query}");
                let what = format!("GET {path} on replica {}", cluster.replica(i).id());
                waiting.push((what, ahead, spawn_get(api.clone(), path)));
            }
        }
    }
    let mut problems = Vec::new();
    for (what, ahead, task) in waiting {
        let (response, _) = task.await.expect("pull task");
        if response.status.as_u16() == 200 {
            let version = response.json["version"].as_u64().unwrap_or_default();
            problems.push(format!(
                "{what}: 200 with version {version}, below the {ahead} the client has"
            ));
            continue;
        }
        problems.extend(check_status(&what, &response, 503, None));
        let retryable = response.json.pointer("/error/retryable");
        if retryable != Some(&Value::Bool(true)) {
            problems.push(format!(
                "{what}: want retryable true, got {retryable:?} in {}",
                response.json
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_hash_follows_the_config_not_the_replica() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.client(0);
    let origin = new_origin(&admin, "home", "tunnel").await;
    let origin_id = origin["id"].as_str().expect("origin id");
    new_route(&admin, "app.example.com", origin_id, "10.0.0.1:8080").await;
    let edge = new_edge(&cluster, 1, "edge-1").await;
    let agent = new_agent(&cluster, 2, origin_id, "agent-1").await;
    wait_applied_everywhere(&cluster, agent.index).await;

    let pulls = [(EDGE_CONFIG, &edge.token), (AGENT_CONFIG, &agent.token)];
    // (version, config_hash) of each pull on every replica, all at one version.
    let snapshot = || async {
        let mut out = Vec::new();
        for (path, token) in pulls {
            let mut seen: Vec<(u64, String)> = Vec::new();
            for i in 0..3 {
                let config = pull(&cluster.client_with_token(i, Some(token)), path).await;
                let hash = config["config_hash"]
                    .as_str()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| panic!("no config_hash in {config}"))
                    .to_string();
                seen.push((version_of(&config), hash));
            }
            let id = |i: usize| cluster.replica(i).id();
            for i in 1..3 {
                assert_eq!(
                    seen[i].0,
                    seen[0].0,
                    "GET {path}: replicas {} and {} at different versions after applying the \
                     same writes",
                    id(0),
                    id(i)
                );
                assert_eq!(
                    seen[i].1,
                    seen[0].1,
                    "GET {path}: replicas {} and {} at version {} give different config_hash",
                    id(0),
                    id(i),
                    seen[0].0
                );
            }
            out.push(seen.swap_remove(0));
        }
        out
    };
    let first = snapshot().await;

    // A route of the origin: both configs change.
    let index = new_route(
        &cluster.client(1),
        "new.example.com",
        origin_id,
        "10.0.0.2:8080",
    )
    .await;
    wait_applied_everywhere(&cluster, index).await;
    let second = snapshot().await;
    for ((path, _), (before, after)) in pulls.iter().zip(first.iter().zip(&second)) {
        assert!(
            after.0 > before.0,
            "GET {path}: version did not move: {before:?} {after:?}"
        );
        assert_ne!(
            after.1, before.1,
            "GET {path}: a new route left config_hash as it was"
        );
    }

    // A write that concerns neither edge nor agent: the version moves, the hash stays.
    let token = make_token(&admin, json!({ "role": "admin" })).await;
    wait_applied_everywhere(&cluster, token.index).await;
    let third = snapshot().await;
    for ((path, _), (before, after)) in pulls.iter().zip(second.iter().zip(&third)) {
        assert!(
            after.0 > before.0,
            "GET {path}: version did not move: {before:?} {after:?}"
        );
        assert_eq!(
            after.1, before.1,
            "GET {path}: a new admin token changed config_hash"
        );
    }

    // Removing the route again gives back the first config, and so the first hash.
    let routes = crate::fleet::list(&admin, "/api/v1/routes").await;
    let route_id = find(&routes, "hostname", "new.example.com")
        .and_then(|r| r["id"].as_str())
        .expect("route new.example.com listed")
        .to_string();
    let response = admin
        .delete(&format!("/api/v1/routes/{route_id}"))
        .await
        .expect("DELETE route");
    expect_status("delete route new.example.com", &response, 204, None);
    wait_applied_everywhere(&cluster, response.write_index().expect("index")).await;
    let fourth = snapshot().await;
    for (((path, _), (before, after)), (previous, _)) in
        pulls.iter().zip(first.iter().zip(&fourth)).zip(&third)
    {
        assert!(
            after.0 > *previous,
            "GET {path}: version did not move: {previous} -> {}",
            after.0
        );
        assert_eq!(
            after.1, before.1,
            "GET {path}: the same config as at version {} has another config_hash",
            before.0
        );
    }
}
