//! Bad input gets a 4xx with the error shape and changes nothing (the state version stays).

use kokoa_tests::{random_hex, ApiResponse, Cluster};
use serde_json::{json, Value};

use crate::common::{create_origin, created, route_hostnames};

/// The problems found with one answer, if any.
fn check(case: &str, response: &ApiResponse, status: u16, code: Option<&str>) -> Option<String> {
    let mut problems = Vec::new();
    if response.status.as_u16() != status {
        problems.push(format!("status {} (want {status})", response.status));
    }
    let error = response.json.get("error");
    let got_code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
    let message = error.and_then(|e| e.get("message")).and_then(Value::as_str);
    match (got_code, code) {
        (None, _) => problems.push("no error.code string".into()),
        (Some(got), Some(want)) if got != want => {
            problems.push(format!("code {got:?} (want {want:?})"))
        }
        _ => {}
    }
    if message.is_none_or(|m| m.trim().is_empty()) {
        problems.push("no error.message".into());
    }
    if let Some(retryable) = error.and_then(|e| e.get("retryable")) {
        if retryable != &Value::Bool(false) {
            problems.push(format!("retryable is {retryable}"));
        }
    }
    (!problems.is_empty())
        .then(|| format!("{case}: {} — body {}", problems.join(", "), response.json))
}

async fn version(cluster: &Cluster, i: usize) -> u64 {
    let info = cluster
        .cluster_info(i, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    info.get("version")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no version in {info}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_with_a_clear_error_and_changes_nothing() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(None).await;
    let follower = cluster.followers().await[0];
    // Through a follower: validation must hold on the forwarding path too.
    let api = cluster.client(follower);

    let (origin_id, _) = create_origin(&api, "home").await;
    let (in_use_id, _) = create_origin(&api, "busy").await;
    // A well-formed id that names no origin: create one, then delete it.
    let (ghost_id, _) = create_origin(&api, "ghost").await;
    let deleted = api
        .delete(&format!("/api/v1/origins/{ghost_id}"))
        .await
        .expect("DELETE origin");
    assert_eq!(
        deleted.status.as_u16(),
        204,
        "delete origin: {}",
        deleted.json
    );
    let gone = api
        .create_route("gone.example.com", &origin_id, "localhost:8080")
        .await
        .expect("POST route");
    let (gone_id, _) = created("route gone.example.com", &gone);
    let deleted = api
        .delete(&format!("/api/v1/routes/{gone_id}"))
        .await
        .expect("DELETE route");
    assert_eq!(
        deleted.status.as_u16(),
        204,
        "delete route: {}",
        deleted.json
    );
    let taken = api
        .create_route("taken.example.com", &in_use_id, "localhost:8080")
        .await
        .expect("POST route");
    let (_, last_index) = created("route taken.example.com", &taken);
    cluster.wait_applied(follower, last_index).await;

    let before = version(&cluster, leader).await;
    let routes_before = route_hostnames(&api, false).await;

    let route = |hostname: &str, origin: &str, target: &str| json!({ "hostname": hostname, "origin_id": origin, "target": target });
    let wrong_token =
        cluster.client_with_token(follower, Some(&format!("kokoa_{}", random_hex(24))));
    let no_token = cluster.client_with_token(follower, None);
    let oversized = route(&"a".repeat(70 * 1024), &origin_id, "localhost:8080");
    let mut unknown_field = route("fresh.example.com", &origin_id, "localhost:8080");
    unknown_field["colour"] = json!("blue");
    let valid = route("fresh.example.com", &origin_id, "localhost:8080");

    let mut problems = Vec::new();
    let mut expect =
        |case: &str, result: Result<ApiResponse, reqwest::Error>, status, code| match result {
            Ok(response) => problems.extend(check(case, &response, status, code)),
            Err(e) => problems.push(format!("{case}: request failed: {e}")),
        };
    let post = |body: Value| {
        let api = api.clone();
        async move { api.post_json("/api/v1/routes", &body).await }
    };

    expect(
        "invalid hostname",
        post(route("not a host!", &origin_id, "localhost:8080")).await,
        400,
        Some("invalid_hostname"),
    );
    expect(
        "hostname with an empty label",
        post(route("a..example.com", &origin_id, "localhost:8080")).await,
        400,
        Some("invalid_hostname"),
    );
    expect(
        "unknown origin",
        post(route("ghost.example.com", &ghost_id, "localhost:8080")).await,
        400,
        Some("unknown_origin"),
    );
    expect(
        "duplicate hostname",
        post(route("taken.example.com", &origin_id, "localhost:8080")).await,
        409,
        Some("hostname_taken"),
    );
    expect(
        "target without a port",
        post(route("noport.example.com", &origin_id, "localhost")).await,
        400,
        Some("invalid_target"),
    );
    expect(
        "target port out of range",
        post(route("bigport.example.com", &origin_id, "localhost:70000")).await,
        400,
        Some("invalid_target"),
    );
    expect(
        "oversized body",
        api.post_json("/api/v1/routes", &oversized).await,
        413,
        Some("body_too_large"),
    );
    expect(
        "unknown JSON field",
        post(unknown_field).await,
        400,
        Some("invalid_json"),
    );
    expect(
        "malformed JSON",
        api.post_raw(
            "/api/v1/routes",
            "application/json",
            b"{\"hostname\":".to_vec(),
        )
        .await,
        400,
        Some("invalid_json"),
    );
    expect(
        "wrong content type",
        api.post_raw(
            "/api/v1/routes",
            "text/plain",
            serde_json::to_vec(&valid).expect("json"),
        )
        .await,
        415,
        None,
    );
    expect(
        "wrong token",
        wrong_token.post_json("/api/v1/routes", &valid).await,
        401,
        Some("unauthorized"),
    );
    expect(
        "no token",
        no_token.post_json("/api/v1/routes", &valid).await,
        401,
        Some("unauthorized"),
    );
    expect(
        "wrong token on a read",
        wrong_token.get("/api/v1/routes").await,
        401,
        Some("unauthorized"),
    );
    expect(
        "invalid origin name",
        api.post_json(
            "/api/v1/origins",
            &json!({ "name": "bad name/!", "kind": "tunnel" }),
        )
        .await,
        400,
        Some("invalid_name"),
    );
    expect(
        "duplicate origin name",
        api.post_json(
            "/api/v1/origins",
            &json!({ "name": "home", "kind": "tunnel" }),
        )
        .await,
        409,
        Some("name_taken"),
    );
    expect(
        "origin in use",
        api.delete(&format!("/api/v1/origins/{in_use_id}")).await,
        409,
        Some("origin_in_use"),
    );
    expect(
        "unknown route id",
        api.get(&format!("/api/v1/routes/{gone_id}")).await,
        404,
        Some("not_found"),
    );

    let after = version(&cluster, leader).await;
    assert!(
        problems.is_empty(),
        "bad input handled wrongly:\n{}",
        problems.join("\n")
    );
    assert_eq!(before, after, "rejected writes moved the state version");
    assert_eq!(
        routes_before,
        route_hostnames(&api, false).await,
        "routes changed"
    );
}
