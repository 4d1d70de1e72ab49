//! A small client for the admin API, used by the CLI and `kokoa dev`: bearer auth, JSON in and
//! out, and the API's error JSON turned into one readable line.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::Method;
use serde_json::Value;

use crate::cli::ApiArgs;

/// Timeout of one admin request (membership changes wait for a new replica to catch up).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(180);

/// A client of one replica's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client for `args.server`, authenticated with `args.token`.
    pub fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(ApiClient {
            http,
            base: args.server.trim_end_matches('/').to_string(),
            token: args.token.clone(),
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::DELETE, path, None).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let token = self.token.as_deref().context(
            "no token: set KOKOA_TOKEN (the admin token printed when the cluster was initialised)",
        )?;
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach {}: {}", self.base, root_cause(&e)))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text)
                .with_context(|| format!("{url} answered something that is not JSON"));
        }
        let parsed: Value = serde_json::from_str(&text).unwrap_or_default();
        match parsed["error"]["message"].as_str() {
            Some(msg) => bail!(
                "{msg} ({}, HTTP {})",
                parsed["error"]["code"].as_str().unwrap_or("error"),
                status.as_u16()
            ),
            None => bail!("{url} answered HTTP {status}"),
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
