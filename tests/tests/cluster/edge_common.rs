//! What every edge test starts from: three replicas, a `direct` origin, a test CA, and one edge
//! on its own loopback address that has pulled its first config; plus helpers to add routes
//! and certificates and to request through the edge.

use std::path::PathBuf;
use std::time::Duration;

use kokoa_tests::{
    edge_client, wait_until_ok, Api, ClientOptions, Cluster, Edge, IssuedCert, TestCa,
};
use serde_json::{json, Value};

use crate::common::{created, retry_write};

/// A per-route limit no test reaches: the default (10 r/s, burst 20 per client IP) would turn
/// polling into 429s.
pub fn unlimited() -> Value {
    json!({ "per_second": 100_000, "burst": 100_000 })
}

/// How long an edge may take to serve a write once it is committed (it is claimed to take
/// under a second; this bound only keeps a broken edge from hanging a test).
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// A cluster, a direct origin, a CA and an edge serving the cluster's config.
#[derive(Debug)]
pub struct EdgeSetup {
    pub edge: Edge,
    pub ca: TestCa,
    /// The CA certificate on disk, for `curl --cacert`.
    pub ca_file: PathBuf,
    /// A `direct` origin (the edge dials each route's target itself).
    pub origin_id: String,
    pub admin: Api,
    pub cluster: Cluster,
}

impl EdgeSetup {
    /// Three replicas, origin `apps` (direct), and edge `edge-1` pulling from all three.
    pub async fn start() -> EdgeSetup {
        let cluster = Cluster::start(3).await;
        let admin = cluster.client(0);
        let body = json!({ "name": "apps", "kind": "direct" });
        let response = retry_write("create origin apps", |_| {
            admin.post_json("/api/v1/origins", &body)
        })
        .await;
        let (origin_id, index) = created("create origin apps", &response);
        let edge = cluster.start_edge("edge-1").await;
        edge.wait_version(index, SERVE_TIMEOUT).await;
        let ca = TestCa::new();
        let ca_file = ca.write_pem(cluster.root());
        EdgeSetup {
            edge,
            ca,
            ca_file,
            origin_id,
            admin,
            cluster,
        }
    }

    /// `POST /api/v1/routes` with `body` (plus this setup's origin when it names none), retried
    /// through elections; asserts a 201 and returns (route id, index).
    pub async fn add_route(&self, mut body: Value) -> (String, u64) {
        if body.get("origin_id").is_none() {
            body["origin_id"] = json!(self.origin_id);
        }
        let what = format!("POST /api/v1/routes {body}");
        let response = retry_write(&what, |_| self.admin.post_json("/api/v1/routes", &body)).await;
        created(&what, &response)
    }

    /// A route `hostname` → `target` without a rate limit in the way; returns its index.
    pub async fn route(&self, hostname: &str, target: &str) -> u64 {
        self.add_route(json!({ "hostname": hostname, "target": target, "rate_limit": unlimited() }))
            .await
            .1
    }

    /// `DELETE /api/v1/routes/{id}`; asserts a 204 and returns its index.
    pub async fn delete_route(&self, id: &str) -> u64 {
        let path = format!("/api/v1/routes/{id}");
        let response = retry_write(&format!("DELETE {path}"), |_| self.admin.delete(&path)).await;
        assert_eq!(
            response.status.as_u16(),
            204,
            "DELETE {path}: {} {}",
            response.status,
            response.json
        );
        response
            .write_index()
            .unwrap_or_else(|| panic!("DELETE {path}: no X-Kokoa-Index"))
    }

    /// Uploads `cert`; asserts a 201 whose names and fingerprint are the certificate's and
    /// returns its index.
    pub async fn upload(&self, cert: &IssuedCert) -> u64 {
        let what = format!("upload the certificate for {:?}", cert.names);
        let body = cert.upload_body();
        let response = retry_write(&what, |_| {
            self.admin.post_json("/api/v1/certificates", &body)
        })
        .await;
        let (_, index) = created(&what, &response);
        let names: Vec<&str> = response.json["names"]
            .as_array()
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(names, cert.names, "{what}: {}", response.json);
        let fingerprint = response.json["fingerprint"].as_str().unwrap_or_default();
        assert!(
            fingerprint.eq_ignore_ascii_case(&cert.fingerprint())
                || fingerprint
                    .replace(':', "")
                    .eq_ignore_ascii_case(&cert.fingerprint()),
            "{what}: fingerprint {fingerprint:?}, want the SHA-256 of the leaf {}",
            cert.fingerprint()
        );
        index
    }

    /// Issues and uploads a certificate for `names`; returns it and the upload's index.
    pub async fn certificate(&self, names: &[&str]) -> (IssuedCert, u64) {
        let cert = self.ca.issue(names);
        let index = self.upload(&cert).await;
        (cert, index)
    }

    /// Waits until the edge serves config version `index` or newer.
    pub async fn served(&self, index: u64) -> u64 {
        self.edge.wait_version(index, SERVE_TIMEOUT).await
    }

    /// A client of the edge that trusts the test CA only.
    pub fn client(&self) -> reqwest::Client {
        edge_client(
            self.edge.ip(),
            &ClientOptions {
                ca: Some(&self.ca),
                ..ClientOptions::default()
            },
        )
    }
}

/// What came back through the edge.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The `origin` an origin app put in its answer, if it is one.
    pub fn origin(&self) -> Option<String> {
        self.json()["origin"].as_str().map(str::to_string)
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `GET url` with `client`: status, headers, body; `Err` on a transport error.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<Answer, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|e| format!("GET {url}: reading the body: {}", error_chain(&e)))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

pub use kokoa_tests::error_chain;

/// Waits (up to [`SERVE_TIMEOUT`]) until `GET url` answers 200 from origin app `origin`.
pub async fn wait_origin(client: &reqwest::Client, url: &str, origin: &str) -> Answer {
    wait_origin_within(client, url, origin, SERVE_TIMEOUT).await
}

/// Waits up to `timeout` until `GET url` answers 200 from origin app `origin`.
pub async fn wait_origin_within(
    client: &reqwest::Client,
    url: &str,
    origin: &str,
    timeout: Duration,
) -> Answer {
    wait_until_ok(
        &format!("GET {url} served by {origin}"),
        timeout,
        || async {
            let answer = fetch(client, url).await?;
            if answer.status == 200 && answer.origin().as_deref() == Some(origin) {
                Ok(answer)
            } else {
                Err(format!("{} {}", answer.status, answer.body))
            }
        },
    )
    .await
}

/// Asserts `answer` (to `request`) is a 200 from origin app `origin`.
pub fn assert_from(request: &str, answer: &Answer, origin: &str) {
    assert!(
        answer.status == 200 && answer.origin().as_deref() == Some(origin),
        "{request}: want 200 from origin app {origin}, got {} {}",
        answer.status,
        answer.body
    );
}
