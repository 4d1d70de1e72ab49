//! Helpers shared by the topic files: reading lists, creating things, retrying writes.

use std::future::Future;
use std::time::{Duration, Instant};

use kokoa_tests::{Api, ApiResponse, CONVERGE_TIMEOUT};
use serde_json::Value;

/// The `items` of a list answer (or the answer itself when it is an array).
pub fn items(json: &Value) -> Vec<Value> {
    collection(json.get("items").unwrap_or(json))
}

/// The elements of an array, or the values of an object keyed by id.
pub fn collection(json: &Value) -> Vec<Value> {
    match json {
        Value::Array(values) => values.clone(),
        Value::Object(map) => map.values().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The route hostnames in a `GET /api/v1/state` dump.
pub fn state_hostnames(state: &Value) -> Vec<String> {
    hostnames(&Value::Array(collection(&state["routes"])))
}

/// The hostnames of a routes list, in the order given.
pub fn hostnames(json: &Value) -> Vec<String> {
    items(json)
        .iter()
        .filter_map(|r| {
            r.get("hostname")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// `GET /api/v1/routes` (linearizable, or the local state with `stale`) → hostnames.
pub async fn route_hostnames(api: &Api, stale: bool) -> Vec<String> {
    let path = if stale {
        "/api/v1/routes?stale=true"
    } else {
        "/api/v1/routes"
    };
    let response = api
        .get(path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", api.base_url()));
    assert_eq!(
        response.status.as_u16(),
        200,
        "GET {path} on {}: {}",
        api.base_url(),
        response.json
    );
    hostnames(&response.json)
}

/// Asserts a 201 with an `X-Kokoa-Index` and an `id`; returns (id, index).
pub fn created(what: &str, response: &ApiResponse) -> (String, u64) {
    assert_eq!(
        response.status.as_u16(),
        201,
        "{what}: want 201, got {} {}",
        response.status,
        response.json
    );
    let index = response
        .write_index()
        .unwrap_or_else(|| panic!("{what}: no X-Kokoa-Index header in {:?}", response.headers));
    let id = response
        .id()
        .unwrap_or_else(|| panic!("{what}: no id in {}", response.json));
    (id, index)
}

/// Creates an origin through `api`; returns (id, index).
pub async fn create_origin(api: &Api, name: &str) -> (String, u64) {
    let response = retry_write(&format!("create origin {name}"), |_| {
        api.create_origin(name)
    })
    .await;
    created(&format!("create origin {name}"), &response)
}

/// Whether an answer says "try again": a 5xx, or `retryable: true`.
pub fn is_retryable(response: &ApiResponse) -> bool {
    response.status.is_server_error()
        || response
            .json
            .pointer("/error/retryable")
            .and_then(Value::as_bool)
            == Some(true)
}

/// Runs a write until it gets a 2xx, retrying transport errors and retryable answers (an
/// election in progress) for up to [`CONVERGE_TIMEOUT`]. `attempt` counts from 0 so callers can
/// use a fresh name per attempt when an earlier one may have been committed.
///
/// # Panics
/// On a non-retryable error answer, or when the deadline passes.
pub async fn retry_write<F, Fut>(what: &str, mut write: F) -> ApiResponse
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<ApiResponse, reqwest::Error>>,
{
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        let last = match write(attempt).await {
            Ok(response) if response.is_success() => return response,
            Ok(response) if is_retryable(&response) => {
                format!("{} {}", response.status, response.json)
            }
            Ok(response) => panic!("{what}: {} {}", response.status, response.json),
            Err(e) => e.to_string(),
        };
        assert!(
            started.elapsed() < CONVERGE_TIMEOUT,
            "{what}: still failing after {CONVERGE_TIMEOUT:?}; last: {last}"
        );
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
