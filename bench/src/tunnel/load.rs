//! The Kokoa half's load, plain HTTP/1.1 through an edge to the `kokoa-tests` origin app
//! (`GET /download?bytes=N`: its byte pattern, streamed):
//!
//! * [`downloads`]: N parallel clients, each with its own connection, download large files
//!   back to back for a fixed window (and at most a bounded count each); the figure is the
//!   bytes received inside the window, in Gbit/s, as iperf3 counts its received bytes.
//! * [`latency`]: one keep-alive client per path sends small GETs one at a time, alternating
//!   paths in batches so both see the same machine; per-request times, sorted.
//! * [`verify`] / [`wait_serving`]: one download checked byte for byte against the pattern,
//!   before anything is measured.

use std::net::SocketAddr;
use std::time::Duration;

use kokoa_tests::PatternChecker;
use reqwest::header::HOST;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Connecting to the edge may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A download stalls (no bytes) for at most this long before it counts as an error.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// One small GET may take this long.
const SMALL_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A stream gives up after this many failed downloads in one run.
const MAX_ERRORS_PER_STREAM: u64 = 10;
/// Error messages kept per run.
const ERROR_SAMPLES: usize = 5;
/// Small GETs per path before switching to the other.
const LATENCY_BATCH: u32 = 50;
/// How often [`wait_serving`] tries again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// A route on an edge: where to connect and what `Host` to send.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// `tunnel`, `direct`: names the path in reports.
    pub label: &'static str,
    /// The edge's plain-HTTP address.
    pub edge: SocketAddr,
    pub host: String,
}

impl HttpTarget {
    fn url(&self, bytes: u64) -> String {
        format!("http://{}/download?bytes={bytes}", self.edge)
    }
}

/// One connection per client: HTTP/1.1, keep-alive, no proxy, no redirects.
fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
        .map_err(|e| format!("build an HTTP client: {e}"))
}

/// What one download run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownloadRun {
    pub streams: u32,
    /// The measured window, seconds.
    pub secs: f64,
    /// Bytes received inside the window, all streams.
    pub bytes: u64,
    pub gbit_s: f64,
    /// Downloads that ended inside the window.
    pub completed: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Default)]
struct StreamTally {
    bytes: u64,
    completed: u64,
    errors: u64,
    error_samples: Vec<String>,
}

/// `streams` clients download `download_bytes` files from `target` back to back for `window`
/// (each at most `max_downloads` times); the bytes that arrived within the window count.
pub async fn downloads(
    target: &HttpTarget,
    streams: u32,
    window: Duration,
    download_bytes: u64,
    max_downloads: u64,
) -> DownloadRun {
    let started = Instant::now();
    let deadline = started + window;
    let mut tasks = JoinSet::new();
    for _ in 0..streams {
        let target = target.clone();
        tasks.spawn(
            async move { one_stream(&target, deadline, download_bytes, max_downloads).await },
        );
    }
    let mut run = DownloadRun {
        streams,
        ..DownloadRun::default()
    };
    while let Some(joined) = tasks.join_next().await {
        let tally = joined.unwrap_or_else(|e| StreamTally {
            errors: 1,
            error_samples: vec![format!("a client task failed: {e}")],
            ..StreamTally::default()
        });
        run.bytes += tally.bytes;
        run.completed += tally.completed;
        run.errors += tally.errors;
        for sample in tally.error_samples {
            if run.error_samples.len() < ERROR_SAMPLES {
                run.error_samples.push(sample);
            }
        }
    }
    // The clients stop at the deadline; a stream that ran out of downloads stops earlier and
    // simply adds nothing afterwards, as an idle iperf3 stream would.
    run.secs = window.as_secs_f64();
    run.gbit_s = run.bytes as f64 * 8.0 / run.secs / 1e9;
    run
}

async fn one_stream(
    target: &HttpTarget,
    deadline: Instant,
    download_bytes: u64,
    max_downloads: u64,
) -> StreamTally {
    let mut tally = StreamTally::default();
    let http = match client() {
        Ok(http) => http,
        Err(e) => {
            tally.errors = 1;
            tally.error_samples.push(e);
            return tally;
        }
    };
    let url = target.url(download_bytes);
    for _ in 0..max_downloads {
        if Instant::now() >= deadline || tally.errors >= MAX_ERRORS_PER_STREAM {
            break;
        }
        match download(&http, &url, &target.host, deadline, &mut tally.bytes).await {
            Ok(true) => tally.completed += 1,
            Ok(false) => break,
            Err(e) => {
                tally.errors += 1;
                if tally.error_samples.len() < ERROR_SAMPLES {
                    tally.error_samples.push(e);
                }
            }
        }
    }
    tally
}

/// One download, adding what arrives before `deadline` to `bytes`: `Ok(true)` when it ended,
/// `Ok(false)` when the deadline cut it.
async fn download(
    http: &reqwest::Client,
    url: &str,
    host: &str,
    deadline: Instant,
    bytes: &mut u64,
) -> Result<bool, String> {
    let send = http.get(url).header(HOST, host).send();
    let Ok(response) = tokio::time::timeout_at(deadline, send).await else {
        return Ok(false);
    };
    let mut response = response.map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("GET {url} (Host {host}): {status} {}", body.trim()));
    }
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return Ok(false),
            Ok(Ok(Some(chunk))) => *bytes += chunk.len() as u64,
            Ok(Ok(None)) => return Ok(true),
            Ok(Err(e)) => return Err(format!("GET {url}: reading the body: {e}")),
        }
    }
}

/// Per-request times of small GETs on one path.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySamples {
    pub label: String,
    /// Milliseconds, ascending.
    #[serde(skip)]
    pub ms: Vec<f64>,
    pub errors: u64,
    pub error_samples: Vec<String>,
}

/// `requests` GETs of `bytes` bytes on each target, one at a time per target, alternating
/// targets every [`LATENCY_BATCH`]; one unmeasured batch per target first.
pub async fn latency(
    targets: &[HttpTarget],
    requests: u32,
    bytes: u64,
) -> Result<Vec<LatencySamples>, String> {
    let clients = targets
        .iter()
        .map(|_| client())
        .collect::<Result<Vec<_>, _>>()?;
    let mut samples: Vec<LatencySamples> = targets
        .iter()
        .map(|t| LatencySamples {
            label: t.label.to_string(),
            ..LatencySamples::default()
        })
        .collect();
    for (target, http) in targets.iter().zip(&clients) {
        let mut warmup = LatencySamples::default();
        small_gets(http, target, LATENCY_BATCH, bytes, &mut warmup).await;
    }
    let mut done = 0;
    while done < requests {
        let batch = LATENCY_BATCH.min(requests - done);
        for ((target, http), into) in targets.iter().zip(&clients).zip(samples.iter_mut()) {
            small_gets(http, target, batch, bytes, into).await;
            if into.errors > u64::from(requests / 10).max(10) {
                return Err(format!(
                    "{} small GETs through {} failed, e.g. {:?}",
                    into.errors, target.label, into.error_samples
                ));
            }
        }
        done += batch;
    }
    for s in &mut samples {
        s.ms.sort_by(f64::total_cmp);
    }
    Ok(samples)
}

async fn small_gets(
    http: &reqwest::Client,
    target: &HttpTarget,
    n: u32,
    bytes: u64,
    into: &mut LatencySamples,
) {
    let url = target.url(bytes);
    for _ in 0..n {
        let started = std::time::Instant::now();
        let outcome = async {
            let response = http
                .get(&url)
                .header(HOST, &target.host)
                .timeout(SMALL_REQUEST_TIMEOUT)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|e| format!("GET {url}: body: {e}"))?;
            if status.is_success() && body.len() as u64 == bytes {
                Ok(())
            } else {
                Err(format!("GET {url}: {status}, {} bytes", body.len()))
            }
        }
        .await;
        match outcome {
            Ok(()) => into.ms.push(started.elapsed().as_secs_f64() * 1e3),
            Err(e) => {
                into.errors += 1;
                if into.error_samples.len() < ERROR_SAMPLES {
                    into.error_samples.push(e);
                }
            }
        }
    }
}

/// One download of `bytes` through `target`, checked byte for byte against the pattern.
pub async fn verify(target: &HttpTarget, bytes: u64) -> Result<(), String> {
    let http = client()?;
    let url = target.url(bytes);
    let mut response = http
        .get(&url)
        .header(HOST, &target.host)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!(
            "GET {url} (Host {}): {status} {}",
            target.host,
            body.trim()
        ));
    }
    let mut checker = PatternChecker::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: body: {e}"))?
    {
        checker.feed(&chunk)?;
    }
    if checker.received() != bytes {
        return Err(format!(
            "GET {url}: {} bytes instead of {bytes}",
            checker.received()
        ));
    }
    Ok(())
}

/// Tries [`verify`] until it passes or `timeout` passes (an agent may still be connecting).
pub async fn wait_serving(
    target: &HttpTarget,
    bytes: u64,
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let last = match verify(target, bytes).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if started.elapsed() >= timeout {
            return Err(format!(
                "{} ({}) does not serve a verified download after {timeout:?}; last: {last}",
                target.label, target.host
            ));
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}
