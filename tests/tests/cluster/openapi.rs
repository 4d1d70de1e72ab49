//! The OpenAPI document and `/metrics`: the document lists every route served and real answers
//! match it (schemathesis fuzzes a replica through it), and every replica's metrics say who
//! leads.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use kokoa_tests::{random_hex, wait_until_ok, Api, Cluster, CONVERGE_TIMEOUT};
use serde_json::{json, Value};

use crate::common::{create_origin, created};

/// Every route `kokoa_web::router` serves, as `METHOD path` (path templates as in the document),
/// but the browser UI's HTML pages (`/`, `/ui/*`), which are not part of the API. A route added
/// to the router must be added here and to the document.
const ROUTES: &[&str] = &[
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /api/v1/openapi.json",
    "GET /api/v1/cluster",
    "POST /api/v1/cluster/nodes",
    "DELETE /api/v1/cluster/nodes/{id}",
    "POST /api/v1/cluster/join",
    "GET /api/v1/origins",
    "POST /api/v1/origins",
    "GET /api/v1/origins/{id}",
    "DELETE /api/v1/origins/{id}",
    "GET /api/v1/routes",
    "POST /api/v1/routes",
    "GET /api/v1/routes/{id}",
    "DELETE /api/v1/routes/{id}",
    "GET /api/v1/tokens",
    "POST /api/v1/tokens",
    "DELETE /api/v1/tokens/{id}",
    "GET /api/v1/state",
    "GET /api/v1/edge-nodes",
    "DELETE /api/v1/edge-nodes/{id}",
    "POST /api/v1/edge-nodes/register",
    "GET /api/v1/edge-nodes/me/config",
    "GET /api/v1/agents",
    "DELETE /api/v1/agents/{id}",
    "POST /api/v1/agents/register",
    "GET /api/v1/agents/me/config",
    "GET /api/v1/dns/records",
    "POST /api/v1/dns/records",
    "DELETE /api/v1/dns/records/{id}",
    "GET /api/v1/dns/zones",
    "POST /api/v1/dns/zones",
    "DELETE /api/v1/dns/zones/{name}",
    "GET /api/v1/certificates",
    "POST /api/v1/certificates",
    "GET /api/v1/certificates/{id}",
    "DELETE /api/v1/certificates/{id}",
    "GET /api/v1/settings",
    "PUT /api/v1/settings",
];

/// Metric families every replica reports.
const METRICS: &[&str] = &[
    "kokoa_raft_term",
    "kokoa_raft_leader_id",
    "kokoa_raft_is_leader",
    "kokoa_raft_applied_index",
    "kokoa_state_version",
    "kokoa_raft_members",
    "kokoa_raft_voters",
    "kokoa_pulls_waiting",
    "kokoa_http_requests_total",
    "kokoa_http_request_duration_seconds",
];

/// `GET /api/v1/openapi.json` without a token.
async fn document(api: &Api) -> Value {
    let response = api
        .with_token(None)
        .get("/api/v1/openapi.json")
        .await
        .expect("GET /api/v1/openapi.json");
    assert_eq!(response.status.as_u16(), 200, "{}", response.json);
    assert!(
        response.json.is_object(),
        "the document is not a JSON object: {}",
        response.json
    );
    response.json
}

/// `GET /metrics` without a token: the exposition text.
pub(crate) async fn metrics(api: &Api) -> Result<String, String> {
    let response = api
        .with_token(None)
        .get("/metrics")
        .await
        .map_err(|e| format!("GET /metrics on {}: {e}", api.base_url()))?;
    let content_type = response
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match response.json {
        Value::String(text)
            if response.status.is_success() && content_type.contains("version=0.0.4") =>
        {
            Ok(text)
        }
        other => Err(format!(
            "GET /metrics on {}: {} ({content_type}) {other}",
            api.base_url(),
            response.status
        )),
    }
}

/// The value of an unlabelled sample `name` in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The `METHOD path` of every operation in the document.
fn documented_routes(doc: &Value) -> BTreeSet<String> {
    let paths = doc["paths"].as_object().expect("paths object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item object")
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect()
}

/// The property names of component schema `name`, following `$ref` and `allOf`.
fn schema_keys(doc: &Value, schema: &Value) -> BTreeSet<String> {
    if let Some(name) = schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        return schema_keys(doc, &doc["components"]["schemas"][name]);
    }
    let mut keys: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        keys.extend(schema_keys(doc, part));
    }
    keys
}

/// Checks that `value`'s keys are exactly those of the documented `schema`, and recursively so
/// for the object-valued fields listed in `nested`.
fn assert_matches(doc: &Value, schema_name: &str, value: &Value, nested: &[(&str, &str)]) {
    let schema = &doc["components"]["schemas"][schema_name];
    let documented = schema_keys(doc, schema);
    let got: BTreeSet<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("{schema_name}: not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        got, documented,
        "{schema_name}: the answer's fields differ from the document's"
    );
    for (field, nested_schema) in nested {
        assert_matches(doc, nested_schema, &value[*field], &[]);
    }
}

/// A canonical base64 WireGuard public key (32 bytes).
fn wg_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let hex = random_hex(42);
    let mut key: String = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let byte =
                u8::from_str_radix(std::str::from_utf8(pair).expect("hex"), 16).expect("hex byte");
            ALPHABET[usize::from(byte) % 64] as char
        })
        .collect();
    key.push_str("A=");
    key
}

/// Makes a token of `role` (and origin); returns its secret.
async fn token(api: &Api, body: Value) -> String {
    let response = api
        .post_json("/api/v1/tokens", &body)
        .await
        .expect("POST /api/v1/tokens");
    created("create token", &response);
    response.json["token"]
        .as_str()
        .expect("token in answer")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route_and_metrics_name_one_leader() {
    let cluster = Cluster::start(3).await;
    cluster.wait_for_leader(None).await;
    let api = cluster.client(0);

    let doc = document(&api).await;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document: {}",
        doc["openapi"]
    );
    let want: BTreeSet<String> = ROUTES.iter().map(|r| r.to_string()).collect();
    let got = documented_routes(&doc);
    assert_eq!(
        got.difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented but not served"
    );
    assert_eq!(
        want.difference(&got).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "served but not documented"
    );
    assert!(
        doc.pointer("/components/securitySchemes/bearer").is_some(),
        "no bearer security scheme"
    );
    // Every replica serves the same document.
    for i in 1..cluster.len() {
        assert_eq!(document(&cluster.client(i)).await, doc, "replica {i}");
    }

    // A request for a record is counted under the route template, never the raw path.
    let missing = api
        .get("/api/v1/origins/no-such-origin")
        .await
        .expect("GET an origin");
    assert_eq!(missing.status.as_u16(), 404, "{}", missing.json);
    let text = metrics(&api).await.unwrap_or_else(|e| panic!("{e}"));
    for name in METRICS {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no {name} in:\n{text}"
        );
    }
    assert!(
        text.contains(
            r#"kokoa_http_requests_total{method="GET",route="/api/v1/origins/{id}",status="4xx"} 1"#
        ),
        "the 404 is not counted under its route template:\n{text}"
    );
    assert!(
        !text.contains("no-such-origin"),
        "a raw path leaked:\n{text}"
    );
    assert!(
        text.contains(r#"kokoa_http_request_duration_seconds_bucket{method="GET",route="/api/v1/openapi.json",le="+Inf"}"#),
        "no latency histogram for the document:\n{text}"
    );
    assert_eq!(sample(&text, "kokoa_raft_members"), Some(3.0), "{text}");

    // Exactly one replica says it leads, and all name it.
    wait_until_ok("one leader in /metrics", CONVERGE_TIMEOUT, || async {
        let mut leaders = Vec::new();
        let mut named = BTreeSet::new();
        for i in 0..cluster.len() {
            let text = metrics(&cluster.client(i)).await?;
            let is_leader = sample(&text, "kokoa_raft_is_leader")
                .ok_or_else(|| format!("replica {i}: no kokoa_raft_is_leader"))?;
            if is_leader == 1.0 {
                leaders.push(cluster.replica(i).id());
            }
            named.insert(sample(&text, "kokoa_raft_leader_id").unwrap_or(-1.0) as i64);
        }
        match (leaders.as_slice(), named.len()) {
            ([leader], 1) if named.contains(&(*leader as i64)) => Ok(()),
            _ => Err(format!("leaders {leaders:?}, named {named:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_waiting_are_counted_and_pulled_configs_match_the_document() {
    let cluster = Cluster::start_single().await;
    let api = cluster.client(0);
    let doc = document(&api).await;

    let (origin_id, _) = create_origin(&api, "home").await;
    let agent_token = token(&api, json!({"role": "agent", "origin_id": origin_id})).await;
    let agent = api
        .with_token(Some(&agent_token))
        .post_json(
            "/api/v1/agents/register",
            &json!({"name": "agent-1", "wg_public_key": wg_key()}),
        )
        .await
        .expect("register an agent");
    created("register agent", &agent);
    assert_matches(&doc, "Registered_Agent", &agent.json, &[]);
    let edge_token = token(&api, json!({"role": "edge"})).await;
    let edge = api
        .with_token(Some(&edge_token))
        .post_json(
            "/api/v1/edge-nodes/register",
            &json!({"name": "edge-1", "public_ip": "192.0.2.1", "wg_public_key": wg_key()}),
        )
        .await
        .expect("register an edge");
    created("register edge", &edge);
    assert_matches(&doc, "Registered_EdgeNode", &edge.json, &[]);

    let agent_api = api.with_token(agent.json["token"].as_str());
    let pulled = agent_api
        .get("/api/v1/agents/me/config")
        .await
        .expect("agent pull");
    assert_eq!(pulled.status.as_u16(), 200, "{}", pulled.json);
    assert_matches(
        &doc,
        "AgentConfig",
        &pulled.json,
        &[("agent", "AgentPeer"), ("origin", "OriginView")],
    );
    let edge_api = api.with_token(edge.json["token"].as_str());
    let pulled = edge_api
        .get("/api/v1/edge-nodes/me/config")
        .await
        .expect("edge pull");
    assert_eq!(pulled.status.as_u16(), 200, "{}", pulled.json);
    assert_matches(&doc, "EdgeConfig", &pulled.json, &[("edge", "EdgePeer")]);
    let version = pulled.json["version"].as_u64().expect("version");

    // A long-poll counts as waiting while it waits, and stops counting when its client goes
    // away (the handler is dropped mid-wait).
    let waiting = |want: f64| {
        let api = api.clone();
        async move {
            let text = metrics(&api).await?;
            match sample(&text, "kokoa_pulls_waiting") {
                Some(n) if n == want => Ok(()),
                other => Err(format!("kokoa_pulls_waiting {other:?}")),
            }
        }
    };
    let poll = tokio::spawn(async move {
        edge_api
            .get(&format!(
                "/api/v1/edge-nodes/me/config?after={version}&wait=60"
            ))
            .await
    });
    wait_until_ok("a waiting pull", CONVERGE_TIMEOUT, || waiting(1.0)).await;
    poll.abort();
    wait_until_ok("no waiting pull", CONVERGE_TIMEOUT, || waiting(0.0)).await;
}

/// Where scripts/test installs schemathesis.
fn schemathesis_bin() -> PathBuf {
    let venv = std::env::var_os("KOKOA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/kokoa-venv")
        });
    venv.join("bin/schemathesis")
}

/// Test cases per operation and phase; ~2,000 requests in all, about a minute on 2 cores.
const SCHEMATHESIS_EXAMPLES: u32 = 50;
/// Far above a normal run, for a loaded machine.
const SCHEMATHESIS_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    let bin = schemathesis_bin();
    assert!(
        bin.exists(),
        "schemathesis is not installed at {}: run scripts/test (it installs it into a venv \
         there), or set KOKOA_VENV to a venv that has schemathesis 4",
        bin.display()
    );
    // One replica: a run must not fail on an election's 503s, which are retryable answers
    // rather than bugs, and two cores cannot promise a 3-replica cluster none under this load.
    let cluster = Cluster::start_single().await;
    let api = cluster.client(0);
    let url = format!("{}/api/v1/openapi.json", api.base_url());
    let seed = std::env::var("KOKOA_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let mut command = tokio::process::Command::new(&bin);
    command
        .arg("run")
        .arg(&url)
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", cluster.admin_token()),
        ])
        .args(["--max-examples", &SCHEMATHESIS_EXAMPLES.to_string()])
        .args(["--seed", &seed])
        .args(["--request-timeout", "30"])
        // Removing or adding replicas would break the cluster under test (an added voter that
        // does not exist costs the quorum), so membership changes stay out.
        .args(["--exclude-operation-id", "remove_replica"])
        .args(["--exclude-operation-id", "add_replica"])
        // Schemathesis reuses ids from answers, and `GET /api/v1/tokens` lists the admin token
        // it authenticates with: revoking it would turn the rest of the run into 401s.
        .args(["--exclude-operation-id", "revoke_token"])
        // Long-polls are not excluded: with the admin token the pulls answer 403 (or 400 for a
        // bad query) before waiting, so no `wait` is ever spent.
        .env("NO_COLOR", "1")
        .current_dir(cluster.root())
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCHEMATHESIS_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran longer than {SCHEMATHESIS_TIMEOUT:?}"))
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout
        .lines()
        .find(|l| l.contains(" generated,"))
        .unwrap_or("(no summary line)")
        .trim();
    eprintln!("schemathesis (seed {seed}): {summary}");
    assert!(
        output.status.success(),
        "schemathesis found problems ({}; seed {seed}):\n{stdout}\n{stderr}",
        output.status
    );
    // The run must have reached the API: the admin token still works and writes happened.
    let state = api.get("/api/v1/state").await.expect("GET /api/v1/state");
    assert_eq!(state.status.as_u16(), 200, "{}", state.json);
    let text = metrics(&api).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.contains(r#"{method="POST",route="/api/v1/origins",status="2xx"}"#),
        "schemathesis created no origin:\n{text}"
    );
}
