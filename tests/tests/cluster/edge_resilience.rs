//! The edge keeps serving through what happens around it: config changes do not drop a long
//! download or an open WebSocket, the death of the replica it pulls from moves it to another
//! (its version never going back), and with every replica down a restarted edge serves the
//! config it saved.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use kokoa_tests::{
    edge_client, tls_connect, wait_until_ok, ClientOptions, OriginApp, PatternChecker,
    CONVERGE_TIMEOUT, SHUTDOWN_TIMEOUT,
};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{created, retry_write};
use crate::edge_common::{assert_from, fetch, unlimited, wait_origin, EdgeSetup};

/// Size of the long download.
const DOWNLOAD_BYTES: u64 = 200 * 1024 * 1024;
/// Where the origin holds the download until the first config changes are made.
const HOLD_AT: u64 = 16 * 1024 * 1024;
/// How many config changes the download and the WebSocket live through.
const CHANGES: usize = 10;

/// Reads a download to its end in the background, checking every byte against the origin's
/// pattern and publishing how far it got; returns the byte count, or what went wrong.
fn spawn_download(
    mut response: reqwest::Response,
    progress: watch::Sender<u64>,
) -> tokio::task::JoinHandle<Result<u64, String>> {
    tokio::spawn(async move {
        let mut checker = PatternChecker::new();
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    checker.feed(&bytes)?;
                    progress.send_replace(checker.received());
                }
                Ok(None) => return Ok(checker.received()),
                Err(e) => {
                    return Err(format!(
                        "the download broke after {} bytes: {}",
                        checker.received(),
                        crate::edge_common::error_chain(&e)
                    ))
                }
            }
        }
    })
}

/// Sends `text` on the WebSocket and waits (10 s at most) for the same text back.
pub async fn echo<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    text: &str,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("send {text:?}: {e}"))?;
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(reply))) => return Ok(reply.to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => return Err(format!("unexpected message {other:?}")),
                Some(Err(e)) => return Err(format!("the WebSocket failed: {e}")),
                None => return Err("the WebSocket was closed".to_string()),
            }
        }
    })
    .await
    .map_err(|_| format!("no echo of {text:?} within 10 s"))??;
    if reply == text {
        Ok(())
    } else {
        Err(format!("sent {text:?}, got {reply:?} back"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_download_and_a_websocket_survive_config_changes() {
    let setup = EdgeSetup::start().await;
    let edge = &setup.edge;
    let app = OriginApp::start("files").await;
    setup
        .certificate(&["files.example.com", "ws.example.com"])
        .await;
    setup.route("files.example.com", &app.target()).await;
    let index = setup.route("ws.example.com", &app.target()).await;
    setup.served(index).await;

    // A download the origin holds after HOLD_AT bytes, until the test lets it go on.
    let client = edge_client(
        edge.ip(),
        &ClientOptions {
            ca: Some(&setup.ca),
            long_transfers: true,
            ..ClientOptions::default()
        },
    );
    let url = edge.https_url(
        "files.example.com",
        &format!("/download?bytes={DOWNLOAD_BYTES}&hold_at={HOLD_AT}"),
    );
    let response = client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    let (progress_tx, mut progress) = watch::channel(0u64);
    let download = spawn_download(response, progress_tx);
    tokio::time::timeout(
        CONVERGE_TIMEOUT,
        progress.wait_for(|&received| received >= 1024 * 1024),
    )
    .await
    .unwrap_or_else(|_| panic!("the download did not pass 1 MiB within {CONVERGE_TIMEOUT:?}"))
    .expect("the download task ended early");

    // A WebSocket through the edge (HTTP/1.1 upgrade over TLS).
    let tls = tls_connect(
        edge.https_addr(),
        "ws.example.com",
        &["http/1.1"],
        &setup.ca,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let ws_url = format!("wss://ws.example.com:{}/echo", edge.https_addr().port());
    let (mut ws, upgrade) = tokio_tungstenite::client_async(ws_url.as_str(), tls)
        .await
        .unwrap_or_else(|e| panic!("WebSocket handshake with {ws_url}: {e}"));
    assert_eq!(upgrade.status().as_u16(), 101, "{upgrade:?}");
    echo(&mut ws, "before any change")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Config changes: routes of other hostnames come and go. Each is served before the next;
    // half-way, the download is let go so that bytes flow during the rest.
    let mut route_ids = Vec::new();
    let mut last_version = 0;
    for change in 0..CHANGES {
        let index = if change < CHANGES / 2 {
            let (id, index) = setup
                .add_route(json!({
                    "hostname": format!("tmp-{change}.example.com"),
                    "target": app.target(),
                    "rate_limit": unlimited(),
                }))
                .await;
            route_ids.push(id);
            index
        } else {
            let id = route_ids.pop().expect("a route to delete");
            setup.delete_route(&id).await
        };
        last_version = setup.served(index).await;
        if change == CHANGES / 2 - 1 {
            app.release_downloads();
        }
        echo(&mut ws, &format!("after change {change}"))
            .await
            .unwrap_or_else(|e| panic!("WebSocket after config change {change}: {e}"));
    }
    let during = *progress.borrow();

    let received = tokio::time::timeout(Duration::from_secs(300), download)
        .await
        .unwrap_or_else(|_| panic!("the download did not finish within 300 s"))
        .expect("download task")
        .unwrap_or_else(|e| panic!("{e} (served version {last_version})"));
    assert_eq!(
        received, DOWNLOAD_BYTES,
        "the download ended early ({received} of {DOWNLOAD_BYTES} bytes)"
    );
    echo(&mut ws, "after the download")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ws.close(None).await.ok();
    eprintln!(
        "{CHANGES} config changes (up to version {last_version}) while downloading; \
         {during} bytes had arrived when the last was served"
    );
    let downloads = app
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/download"))
        .count();
    assert_eq!(
        downloads, 1,
        "the origin saw {downloads} download requests: the edge retried or reconnected"
    );
}

/// `/health`'s version every 200 ms (within the default rate limit) until `stop`, and once
/// more after it; every sample (or why there was none).
fn spawn_version_sampler(
    health_url: String,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<(Duration, Result<u64, String>)>> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let started = Instant::now();
        let mut samples = Vec::new();
        loop {
            // The sample taken after `stop` is the last one.
            let stopping = *stop.borrow_and_update();
            let sample = async {
                let response = http
                    .get(&health_url)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let health: Value = response.json().await.map_err(|e| e.to_string())?;
                health["version"]
                    .as_u64()
                    .ok_or_else(|| format!("no version in {health}"))
            }
            .await;
            samples.push((started.elapsed(), sample));
            if stopping {
                return samples;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), stop.changed()).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_moves_to_another_replica_when_its_replica_dies() {
    let mut setup = EdgeSetup::start().await;
    let app = OriginApp::start("steady").await;
    setup.certificate(&["*.example.com"]).await;
    let index = setup.route("before.example.com", &app.target()).await;
    setup.served(index).await;
    let client = setup.client();
    let url = setup.edge.https_url("before.example.com", "/");
    wait_origin(&client, &url, "steady").await;

    // Which replica the edge pulls from.
    let health = setup.edge.health().await.unwrap_or_else(|e| panic!("{e}"));
    let control = health["control"]
        .as_str()
        .unwrap_or_else(|| panic!("/health does not say which replica answered: {health}"))
        .trim_end_matches('/')
        .to_string();
    let pulled_from = (0..setup.cluster.len())
        .find(|&i| setup.cluster.replica(i).api_url() == control)
        .unwrap_or_else(|| {
            panic!(
                "/health control {control:?} is none of the replicas {:?}",
                setup.cluster.api_urls()
            )
        });

    let (stop_tx, stop_rx) = watch::channel(false);
    let sampler =
        spawn_version_sampler(format!("http://{}/health", setup.edge.http_addr()), stop_rx);
    setup.cluster.replica_mut(pulled_from).kill9();
    let killed = Instant::now();
    let survivor = (0..setup.cluster.len())
        .find(|&i| i != pulled_from)
        .expect("a survivor");
    let api = setup.cluster.client(survivor);
    let origin_id = setup.origin_id.clone();
    let response = retry_write("a route after the kill", |attempt| {
        let api = api.clone();
        let body = json!({
            "hostname": format!("after-{attempt}.example.com"),
            "origin_id": origin_id,
            "target": app.target(),
            "rate_limit": unlimited(),
        });
        async move { api.post_json("/api/v1/routes", &body).await }
    })
    .await;
    let (_, index) = created("a route after the kill", &response);
    let host = response.json["hostname"]
        .as_str()
        .expect("hostname")
        .to_string();
    let url = setup.edge.https_url(&host, "/");
    crate::edge_common::wait_origin_within(&client, &url, "steady", CONVERGE_TIMEOUT).await;
    let moved_after = killed.elapsed();
    let version = setup.edge.version().await.unwrap_or_else(|e| panic!("{e}"));
    stop_tx.send_replace(true);
    let samples = sampler.await.expect("sampler");

    assert!(
        version >= index,
        "the edge serves {host} but reports version {version} < {index}"
    );
    let health = setup.edge.health().await.unwrap_or_else(|e| panic!("{e}"));
    let now_from = health["control"].as_str().unwrap_or_default();
    assert_ne!(
        now_from.trim_end_matches('/'),
        control,
        "the edge still names the killed replica as its source: {health}"
    );
    let failed: Vec<String> = samples
        .iter()
        .filter_map(|(at, s)| s.as_ref().err().map(|e| format!("{at:?}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "/health did not answer throughout the failover: {failed:?}"
    );
    let versions: Vec<u64> = samples.iter().filter_map(|(_, s)| s.clone().ok()).collect();
    assert!(
        versions.last().is_some_and(|&v| v >= index),
        "the last /health sample, taken once {host} was served, is below {index}: {versions:?}"
    );
    let went_back = versions.windows(2).find(|w| w[1] < w[0]);
    assert!(
        went_back.is_none(),
        "the edge's version went back ({went_back:?}) during the failover: {versions:?}"
    );
    assert!(
        versions.len() >= 2,
        "too few /health samples to judge: {versions:?}"
    );
    eprintln!(
        "the edge pulled from {control}, which was killed; it served {host} {moved_after:?} \
         later, pulling from {now_from}; versions seen: {:?} .. {:?} in {} samples",
        versions.first(),
        versions.last(),
        versions.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_edge_serves_its_saved_config_while_every_replica_is_down() {
    let mut setup = EdgeSetup::start().await;
    let app = OriginApp::start("kept").await;
    setup.certificate(&["*.example.com"]).await;
    let index = setup.route("kept.example.com", &app.target()).await;
    let version = setup.served(index).await;
    let client = setup.client();
    wait_origin(
        &client,
        &setup.edge.https_url("kept.example.com", "/"),
        "kept",
    )
    .await;

    for i in 0..setup.cluster.len() {
        setup.cluster.replica_mut(i).kill9();
    }

    // A graceful stop, then a crash: after each, the edge comes back serving from disk.
    for how in ["SIGTERM", "kill -9"] {
        if how == "SIGTERM" {
            setup.edge.sigterm();
            let status = setup.edge.wait_exit(SHUTDOWN_TIMEOUT).await;
            assert!(
                status.is_some_and(|s| s.success()),
                "the edge did not exit cleanly within {SHUTDOWN_TIMEOUT:?} of SIGTERM: {status:?}"
            );
        } else {
            setup.edge.kill9();
        }
        setup
            .edge
            .restart()
            .await
            .unwrap_or_else(|e| panic!("restart after {how} with every replica down: {e}"));
        // Ready means serving: no wait.
        let url = setup.edge.https_url("kept.example.com", "/after-restart");
        let answer = fetch(&client, &url).await.unwrap_or_else(|e| panic!("{e}"));
        assert_from(
            &format!("GET {url} right after a restart ({how}) with every replica down"),
            &answer,
            "kept",
        );
        let health = setup.edge.health().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            health["version"].as_u64(),
            Some(version),
            "after a restart ({how}) the edge should serve the version it saved: {health}"
        );
        assert_eq!(
            health["from_disk"], true,
            "after a restart ({how}) with every replica down the config is from disk: {health}"
        );
    }

    // The replicas come back: the edge picks up new routes again.
    for i in 0..setup.cluster.len() {
        setup
            .cluster
            .replica_mut(i)
            .restart()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    setup.cluster.wait_for_leader(None).await;
    setup.route("back.example.com", &app.target()).await;
    let url = setup.edge.https_url("back.example.com", "/");
    crate::edge_common::wait_origin_within(&client, &url, "kept", CONVERGE_TIMEOUT).await;
    let health = wait_until_ok(
        "the edge to leave its saved config",
        CONVERGE_TIMEOUT,
        || async {
            let health = setup.edge.health().await?;
            if health["from_disk"] == false {
                Ok(health)
            } else {
                Err(health.to_string())
            }
        },
    )
    .await;
    assert!(
        health["version"].as_u64() > Some(version),
        "the edge serves back.example.com, so its version should be above {version}: {health}"
    );
}
