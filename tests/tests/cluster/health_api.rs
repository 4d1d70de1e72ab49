//! The zones API (`/api/v1/dns/zones`) and the health fields of the edge list.

use kokoa_tests::Cluster;
use serde_json::json;

use crate::common::{items, retry_write};

#[tokio::test]
async fn zones_are_normalised_listed_and_removed() {
    let cluster = Cluster::start(3).await;
    let admin = cluster.client(0);
    let body = json!({ "name": "Example.COM." });
    let response = retry_write("POST /api/v1/dns/zones", |_| {
        admin.post_json("/api/v1/dns/zones", &body)
    })
    .await;
    assert_eq!(response.status.as_u16(), 201, "{}", response.json);
    assert_eq!(response.json["name"], "example.com");
    assert!(
        response.json["created_at"].as_u64().is_some(),
        "{}",
        response.json
    );
    assert!(response.write_index().is_some(), "no X-Kokoa-Index");

    let again = admin
        .post_json("/api/v1/dns/zones", &json!({ "name": "example.com" }))
        .await
        .expect("POST again");
    assert_eq!(again.status.as_u16(), 409, "{}", again.json);
    for bad in [
        json!({ "name": "*.example.com" }),
        json!({ "name": "a..b" }),
        json!({ "name": "x", "extra": 1 }),
    ] {
        let response = admin
            .post_json("/api/v1/dns/zones", &bad)
            .await
            .expect("POST bad");
        assert_eq!(response.status.as_u16(), 400, "{bad}: {}", response.json);
    }

    for i in 0..cluster.len() {
        let list = cluster
            .client(i)
            .get("/api/v1/dns/zones")
            .await
            .expect("GET");
        assert_eq!(list.status.as_u16(), 200, "{}", list.json);
        let names: Vec<_> = items(&list.json)
            .iter()
            .map(|z| z["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("example.com")], "replica {i}");
    }

    let response = cluster
        .client(1)
        .delete("/api/v1/dns/zones/EXAMPLE.com")
        .await
        .expect("DELETE");
    assert_eq!(response.status.as_u16(), 204, "{}", response.json);
    let response = admin
        .delete("/api/v1/dns/zones/example.com")
        .await
        .expect("DELETE again");
    assert_eq!(response.status.as_u16(), 404, "{}", response.json);
    let list = admin.get("/api/v1/dns/zones").await.expect("GET");
    assert!(items(&list.json).is_empty(), "{}", list.json);
}

#[tokio::test]
async fn an_edge_without_a_verdict_is_unknown_and_health_settings_are_validated() {
    let cluster = Cluster::start(1).await;
    let admin = cluster.client(0);
    let settings = admin.get("/api/v1/settings").await.expect("GET settings");
    assert_eq!(settings.json["health_fail_after"], 3, "{}", settings.json);
    let mut body = settings.json.clone();
    body["health_timeout_secs"] = json!(10);
    body["health_interval_secs"] = json!(5);
    let response = admin
        .put_json("/api/v1/settings", &body)
        .await
        .expect("PUT");
    assert_eq!(
        response.status.as_u16(),
        400,
        "timeout above the interval: {}",
        response.json
    );

    // An edge registered by hand never answers probes: unknown until 3 failures, then unhealthy.
    let token = cluster.edge_token(0).await;
    let response = admin
        .with_token(Some(&token))
        .post_json(
            "/api/v1/edge-nodes/register",
            &json!({
                "name": "ghost",
                "public_ip": "127.0.0.1",
                "wg_public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "http_port": kokoa_tests::free_port(),
            }),
        )
        .await
        .expect("register");
    assert_eq!(response.status.as_u16(), 201, "{}", response.json);
    let list = admin.get("/api/v1/edge-nodes").await.expect("GET");
    let edge = &items(&list.json)[0];
    assert!(
        edge["health"] == "unknown" || edge["health"] == "unhealthy",
        "{edge}"
    );
    let mut body = settings.json.clone();
    body["health_interval_secs"] = json!(1);
    body["health_timeout_secs"] = json!(1);
    retry_write("PUT settings", |_| {
        admin.put_json("/api/v1/settings", &body)
    })
    .await;
    let edge = kokoa_tests::wait_until_ok(
        "the ghost edge to be unhealthy",
        std::time::Duration::from_secs(15),
        || async {
            let list = admin
                .get("/api/v1/edge-nodes?stale=true")
                .await
                .map_err(|e| e.to_string())?;
            let edge = items(&list.json).first().cloned().ok_or("no edge")?;
            if edge["health"] == "unhealthy" {
                Ok(edge)
            } else {
                Err(edge.to_string())
            }
        },
    )
    .await;
    let reason = edge["health_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("cannot connect"), "{edge}");

    // The dashboard's edge table shows the verdict and why.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = cluster.replica(0).api_url();
    let resp = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", cluster.admin_token()))
        .send()
        .await
        .expect("POST /ui/login");
    assert_eq!(resp.status().as_u16(), 303);
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("kokoa_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let page = http
        .get(format!("{base}/"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("page");
    let row = page
        .split("<tr data-name=\"ghost\">")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no ghost row in the dashboard: {page}"));
    assert!(
        row.contains("unhealthy") && row.contains("failed probes"),
        "{row}"
    );
}
