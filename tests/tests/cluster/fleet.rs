//! Helpers shared by the edge / agent files: tokens, WireGuard keys, registering edges and
//! agents, pulling their configs, and checking an answer's status.

use kokoa_tests::{random_hex, Api, ApiResponse, Cluster};
use serde_json::{json, Value};

use crate::common::{created, items};

/// Where an edge pulls its config.
pub const EDGE_CONFIG: &str = "/api/v1/edge-nodes/me/config";
/// Where an agent pulls its config.
pub const AGENT_CONFIG: &str = "/api/v1/agents/me/config";
/// Where edges register.
pub const EDGE_REGISTER: &str = "/api/v1/edge-nodes/register";
/// Where agents register.
pub const AGENT_REGISTER: &str = "/api/v1/agents/register";

/// A fresh WireGuard public key: base64 of 32 random bytes.
pub fn wg_key() -> String {
    let hex = random_hex(32);
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("random_hex is hex"))
        .collect();
    base64(&bytes)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A token made through the API: its id, the secret shown once, the write's index and the
/// whole answer.
#[derive(Debug, Clone)]
pub struct MadeToken {
    pub id: String,
    pub token: String,
    pub index: u64,
    pub json: Value,
}

/// `POST /api/v1/tokens` with `body`; asserts a 201 carrying the token.
pub async fn make_token(admin: &Api, body: Value) -> MadeToken {
    let response = admin
        .post_json("/api/v1/tokens", &body)
        .await
        .unwrap_or_else(|e| panic!("POST /api/v1/tokens {body}: {e}"));
    let (id, index) = created(&format!("POST /api/v1/tokens {body}"), &response);
    let token = response.json["token"]
        .as_str()
        .unwrap_or_else(|| panic!("POST /api/v1/tokens {body}: no token in {}", response.json))
        .to_string();
    MadeToken {
        id,
        token,
        index,
        json: response.json,
    }
}

/// An edge or agent that registered: its id, its own token, the write's index and the answer.
#[derive(Debug, Clone)]
pub struct Registered {
    pub id: String,
    pub token: String,
    pub index: u64,
    pub json: Value,
}

/// Asserts a registration answer is a 201 with an id, an index and the registrant's token.
pub fn registered(what: &str, response: &ApiResponse) -> Registered {
    let (id, index) = created(what, response);
    let token = response.json["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no token in {}", response.json))
        .to_string();
    Registered {
        id,
        token,
        index,
        json: response.json.clone(),
    }
}

/// `POST /api/v1/edge-nodes/register` as `api`'s principal, a fresh key, the default port.
pub async fn register_edge(api: &Api, name: &str) -> ApiResponse {
    let body = json!({ "name": name, "public_ip": "203.0.113.7", "wg_public_key": wg_key() });
    api.post_json(EDGE_REGISTER, &body)
        .await
        .unwrap_or_else(|e| panic!("POST {EDGE_REGISTER} {name} on {}: {e}", api.base_url()))
}

/// `POST /api/v1/agents/register` as `api`'s principal, with a fresh key.
pub async fn register_agent(api: &Api, name: &str) -> ApiResponse {
    let body = json!({ "name": name, "wg_public_key": wg_key() });
    api.post_json(AGENT_REGISTER, &body)
        .await
        .unwrap_or_else(|e| panic!("POST {AGENT_REGISTER} {name} on {}: {e}", api.base_url()))
}

/// Makes a one-use bootstrap edge token and registers edge `name` with it, both through
/// replica `via`.
pub async fn new_edge(cluster: &Cluster, via: usize, name: &str) -> Registered {
    let bootstrap = make_token(
        &cluster.client(via),
        json!({ "role": "edge", "max_uses": 1 }),
    )
    .await;
    let api = cluster.client_with_token(via, Some(&bootstrap.token));
    registered(
        &format!("register edge {name}"),
        &register_edge(&api, name).await,
    )
}

/// Makes a one-use agent token for `origin_id` and registers agent `name` with it, both through
/// replica `via`.
pub async fn new_agent(cluster: &Cluster, via: usize, origin_id: &str, name: &str) -> Registered {
    let bootstrap = make_token(
        &cluster.client(via),
        json!({ "role": "agent", "origin_id": origin_id, "max_uses": 1 }),
    )
    .await;
    let api = cluster.client_with_token(via, Some(&bootstrap.token));
    registered(
        &format!("register agent {name}"),
        &register_agent(&api, name).await,
    )
}

/// `POST /api/v1/origins` `{"name", "kind"}`; asserts a 201 and returns the origin.
pub async fn new_origin(admin: &Api, name: &str, kind: &str) -> Value {
    let response = admin
        .post_json("/api/v1/origins", &json!({ "name": name, "kind": kind }))
        .await
        .unwrap_or_else(|e| panic!("POST /api/v1/origins {name}: {e}"));
    created(&format!("origin {name} ({kind})"), &response);
    response.json
}

/// Creates a route; asserts a 201 and returns its index.
pub async fn new_route(admin: &Api, hostname: &str, origin_id: &str, target: &str) -> u64 {
    let response = admin
        .create_route(hostname, origin_id, target)
        .await
        .unwrap_or_else(|e| panic!("POST /api/v1/routes {hostname}: {e}"));
    created(&format!("route {hostname}"), &response).1
}

/// `GET path` (a config pull, maybe with a query) as `api`'s principal.
pub async fn get(api: &Api, path: &str) -> ApiResponse {
    api.get(path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", api.base_url()))
}

/// A config pulled from `path` without `after`: asserts a 200 with a version; returns the body.
pub async fn pull(api: &Api, path: &str) -> Value {
    let response = get(api, path).await;
    assert_eq!(
        response.status.as_u16(),
        200,
        "GET {path} on {}: want 200, got {} {}",
        api.base_url(),
        response.status,
        response.json
    );
    version_of(&response.json);
    response.json
}

/// The `version` of a pulled config.
pub fn version_of(config: &Value) -> u64 {
    config["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no numeric version in {config}"))
}

/// What is wrong with `response` for `request`, if anything: not `status`, or (given `code`)
/// not that `error.code`.
pub fn check_status(
    request: &str,
    response: &ApiResponse,
    status: u16,
    code: Option<&str>,
) -> Option<String> {
    let status_ok = response.status.as_u16() == status;
    let code_ok = code.is_none_or(|c| response.error_code() == Some(c));
    (!status_ok || !code_ok).then(|| {
        format!(
            "{request}: want {status}{}, got {} {}",
            code.map(|c| format!(" {c}")).unwrap_or_default(),
            response.status,
            response.json
        )
    })
}

/// Asserts `response` to `request` has `status` (and `error.code`, when given).
pub fn expect_status(request: &str, response: &ApiResponse, status: u16, code: Option<&str>) {
    if let Some(problem) = check_status(request, response, status, code) {
        panic!("{problem}");
    }
}

/// Waits until every replica has applied `index`.
pub async fn wait_applied_everywhere(cluster: &Cluster, index: u64) {
    for i in cluster.running() {
        cluster.wait_applied(i, index).await;
    }
}

/// The admin list at `path` (e.g. `/api/v1/edge-nodes`) on `admin`; asserts a 200.
pub async fn list(admin: &Api, path: &str) -> Vec<Value> {
    let response = get(admin, path).await;
    expect_status(&format!("GET {path}"), &response, 200, None);
    items(&response.json)
}

/// The item of `list` whose `key` is `value`.
pub fn find<'a>(list: &'a [Value], key: &str, value: &str) -> Option<&'a Value> {
    list.iter().find(|item| item[key].as_str() == Some(value))
}

/// Parses `a.b.c.d/len` into (network, prefix length).
pub fn parse_net(net: &str) -> (std::net::Ipv4Addr, u32) {
    let (addr, len) = net
        .split_once('/')
        .unwrap_or_else(|| panic!("{net:?} is not a.b.c.d/len"));
    (
        addr.parse()
            .unwrap_or_else(|_| panic!("{net:?}: bad address")),
        len.parse()
            .unwrap_or_else(|_| panic!("{net:?}: bad prefix length")),
    )
}

/// Whether `ip` is a usable host address of `net` (not its network or broadcast address).
pub fn is_host_in(ip: &str, net: &str) -> bool {
    let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    let (network, len) = parse_net(net);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let (ip, network) = (u32::from(ip), u32::from(network));
    ip & mask == network && ip != network && ip != network | !mask
}
