//! Checking a proxy answers what wrk will count as a success before loading it: wrk counts only
//! statuses above 399 as errors, so a redirect (e.g. plain HTTP sent to HTTPS) or a wrong body
//! would otherwise be measured as if it were proxied.

use std::time::{Duration, Instant};

use reqwest::header::{CONNECTION, HOST};

/// The hostname every request carries (`Host`) and the route Kokoa serves.
pub const HOSTNAME: &str = "bench.example.com";
/// What the upstream answers.
pub const BODY: &str = "ok\n";
/// How often a condition is re-checked while waiting.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// A client for probes: no proxy, no redirects followed, any certificate accepted (both
/// proxies serve self-signed ones), HTTP/1.1 only (as wrk), a fresh connection per request.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()?)
}

/// One `GET url` with `Host: bench.example.com` (and `Connection: close` when `close`) that
/// must answer 200 `ok\n` (and, when `close`, say `Connection: close`).
pub async fn expect_ok(http: &reqwest::Client, url: &str, close: bool) -> Result<(), String> {
    let mut request = http.get(url).header(HOST, HOSTNAME);
    if close {
        request = request.header(CONNECTION, "close");
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let connection = response
        .headers()
        .get(CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let body = response
        .text()
        .await
        .map_err(|e| format!("GET {url}: body: {e}"))?;
    if status != reqwest::StatusCode::OK || body != BODY {
        let mut why = format!(
            "GET {url} (Host: {HOSTNAME}): want 200 {BODY:?}, got {status} {:?}",
            body.chars().take(200).collect::<String>()
        );
        if let Some(location) = location {
            why.push_str(&format!(" (Location: {location})"));
        }
        return Err(why);
    }
    if close && connection.as_deref() != Some("close") {
        return Err(format!(
            "GET {url} with `Connection: close`: the answer does not say `Connection: close` \
             (got {connection:?}), so wrk might reuse the connection"
        ));
    }
    Ok(())
}

/// Polls `expect_ok(url)` until it succeeds or `timeout` passes (then the last reason).
pub async fn wait_ok(http: &reqwest::Client, url: &str, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        match expect_ok(http, url, false).await {
            Ok(()) => return Ok(()),
            Err(why) if started.elapsed() >= timeout => {
                anyhow::bail!("no good answer within {timeout:?}; last: {why}")
            }
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}
