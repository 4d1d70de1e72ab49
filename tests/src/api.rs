//! A small HTTP client for API v1: bearer token, timeouts, JSON in and out.

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::REQUEST_TIMEOUT;

/// The header carrying a write's raft log index.
pub const INDEX_HEADER: &str = "x-kokoa-index";

/// Talks to one replica's API, as one principal (a token, or none).
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// What came back: status, headers and the body parsed as JSON (`Null` when empty,
/// `Value::String(body)` when not JSON).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl ApiResponse {
    /// The write's log index from `X-Kokoa-Index`, if present and numeric.
    pub fn write_index(&self) -> Option<u64> {
        write_index(&self.headers)
    }

    /// `error.code` of an error body.
    pub fn error_code(&self) -> Option<&str> {
        self.json.pointer("/error/code").and_then(Value::as_str)
    }

    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The `id` field of the body as a string (ids may be strings or numbers).
    pub fn id(&self) -> Option<String> {
        match self.json.get("id")? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// The `X-Kokoa-Index` header as a number.
pub fn write_index(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(INDEX_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An error and its sources, on one line (reqwest hides the interesting part in the sources).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A reqwest client for loopback tests: timeouts, no proxy.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(std::time::Duration::from_secs(3))
        .no_proxy()
        .build()
        .expect("build reqwest client")
}

impl Api {
    /// A client for `base_url` (e.g. `http://127.0.0.1:4000`) authenticating with `token`.
    pub fn new(base_url: &str, token: Option<&str>) -> Api {
        Api::with_http(http_client(), base_url, token)
    }

    /// Same as [`Api::new`] but sharing an existing connection pool.
    pub fn with_http(http: reqwest::Client, base_url: &str, token: Option<&str>) -> Api {
        Api {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
        }
    }

    /// The same replica, another principal.
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET path` (path starts with `/`, may carry a query).
    pub async fn get(&self, path: &str) -> Result<ApiResponse, reqwest::Error> {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<ApiResponse, reqwest::Error> {
        let bytes = serde_json::to_vec(body).expect("serialize JSON body");
        self.send(Method::POST, path, Some(("application/json", bytes)))
            .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> Result<ApiResponse, reqwest::Error> {
        let bytes = serde_json::to_vec(body).expect("serialize JSON body");
        self.send(Method::PUT, path, Some(("application/json", bytes)))
            .await
    }

    /// `POST path` with raw bytes and a chosen content type (for malformed-input tests).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<ApiResponse, reqwest::Error> {
        self.send(Method::POST, path, Some((content_type, body)))
            .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<ApiResponse, reqwest::Error> {
        self.send(Method::DELETE, path, None).await
    }

    /// `POST /api/v1/origins` `{"name", "kind": "tunnel"}`.
    pub async fn create_origin(&self, name: &str) -> Result<ApiResponse, reqwest::Error> {
        self.post_json(
            "/api/v1/origins",
            &serde_json::json!({ "name": name, "kind": "tunnel" }),
        )
        .await
    }

    /// `POST /api/v1/routes` `{"hostname", "origin_id", "target"}`.
    pub async fn create_route(
        &self,
        hostname: &str,
        origin_id: &str,
        target: &str,
    ) -> Result<ApiResponse, reqwest::Error> {
        self.post_json(
            "/api/v1/routes",
            &serde_json::json!({ "hostname": hostname, "origin_id": origin_id, "target": target }),
        )
        .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<ApiResponse, reqwest::Error> {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header(CONTENT_TYPE, content_type).body(bytes);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(ApiResponse {
            status,
            headers,
            json,
        })
    }
}
