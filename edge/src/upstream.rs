//! Reaching backends: requests go out over HTTP/1.1 on pooled keep-alive connections opened by
//! a [`Dialer`] (direct TCP now; the tunnel plugs in behind the same trait). Also owns the
//! request body the edge streams upstream (counted against the body limit), the upstream
//! timeouts, and each origin's reachability (the last dial result) for `/health`.
//!
//! A request whose connection fails after it went out and before any answer is sent again, once,
//! on a fresh connection, when it is idempotent and has no body (GET, HEAD, OPTIONS), as nginx's
//! `proxy_next_upstream error` does: the connection may have gone through an agent that died
//! (a fresh dial takes another agent of the origin) or been closed by the upstream.

mod body;
mod dial;
mod pool;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kokoa_store::pulled::Backend;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use body::Lease;
pub use body::{BodyError, RequestBody, UpstreamBody};
pub use dial::{BoxStream, ByKind, DialError, Dialer, DirectDialer, NoTunnel, Stream};
use pool::{Pool, Sender};

/// How many pooled connections one request may find dead before it dials a fresh one.
const MAX_STALE_RETRIES: usize = 3;

/// Whether `error` is the connection's (closed or broken before an answer) rather than a bad
/// answer or the client's body.
fn is_connection_failure(error: &hyper::Error) -> bool {
    error.is_incomplete_message()
        || error.is_canceled()
        || std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>())
}

/// What is needed to send a bodiless idempotent request again.
struct Replay {
    method: hyper::Method,
    uri: hyper::Uri,
    version: hyper::Version,
    headers: hyper::HeaderMap,
}

impl Replay {
    /// A copy of `req` if it may be sent again: GET, HEAD or OPTIONS, with an empty body.
    fn of(req: &Request<RequestBody>) -> Option<Replay> {
        let idempotent = matches!(
            *req.method(),
            hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
        );
        (idempotent && req.body().is_empty()).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        })
    }

    fn request(self) -> Request<RequestBody> {
        let mut req = Request::new(RequestBody::empty());
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        req
    }
}

/// Upstream timeouts and pooling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Longest wait for a dial (TCP connect, or a stream through a tunnel).
    pub connect_timeout: Duration,
    /// Longest wait for response headers while the request body makes no progress.
    pub response_timeout: Duration,
    /// How long an idle upstream connection is kept.
    pub idle_timeout: Duration,
    /// Most idle connections kept per upstream and per core (as nginx's `keepalive`, which is
    /// per worker).
    pub max_idle: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            max_idle: 128,
        }
    }
}

/// Why a request could not be exchanged with its upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("HTTP handshake with the upstream failed: {0}")]
    Handshake(hyper::Error),
    #[error("no response headers from the upstream within {0:?}")]
    Timeout(Duration),
    #[error("the request body is over {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("reading the request body from the client failed: {0}")]
    ClientBody(hyper::Error),
    #[error("the upstream exchange failed: {0}")]
    Exchange(hyper::Error),
}

impl UpstreamError {
    /// The status the client gets: 503 with no tunnel, 504 on timeout, 413 over the body
    /// limit, 400 when the client's body broke off, otherwise 502.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Dial(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UpstreamError::ClientBody(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Sorts a failed exchange: the client's body failing is not the upstream's fault.
    fn from_exchange(e: hyper::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            match err.downcast_ref::<BodyError>() {
                Some(BodyError::TooLarge { limit }) => {
                    return UpstreamError::BodyTooLarge { limit: *limit }
                }
                Some(BodyError::Read(_)) => return UpstreamError::ClientBody(e),
                None => source = err.source(),
            }
        }
        UpstreamError::Exchange(e)
    }
}

/// How an origin answered the edge's dials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginStatus {
    /// The last dial's result.
    pub reachable: Option<bool>,
    /// Unix seconds of the last successful dial.
    pub last_success: Option<u64>,
    /// The last dial error, with its time (unix seconds).
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
}

/// The edge's way to every backend.
#[derive(Debug)]
pub struct Upstreams {
    dialer: Arc<dyn Dialer>,
    settings: UpstreamSettings,
    pool: Pool,
    client: http1::Builder,
    origins: Mutex<HashMap<String, OriginStatus>>,
    /// Upstream connection tasks, and the waits to give connections back to the pool.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Upstreams {
    pub fn new(dialer: Arc<dyn Dialer>, settings: UpstreamSettings) -> Self {
        Upstreams {
            dialer,
            pool: Pool::new(settings.max_idle, settings.idle_timeout),
            settings,
            client: http1::Builder::new(),
            origins: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) to `backend` on a pooled connection, or a
    /// fresh one; returns once the response headers are in, the body still streaming. A
    /// pooled connection found closed before the request went out is retried on another. The
    /// connection goes back to the pool when the response body has been read to its end.
    pub async fn send(
        &self,
        backend: &Backend,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let progress = req.body().progress();
        self.with_response_timeout(self.exchange(backend, req), progress)
            .await
    }

    /// Sends an upgrade request (WebSocket) on a fresh connection that is not pooled. On a
    /// `101` answer, `hyper::upgrade::on(response)` yields the upstream's side of the stream.
    pub async fn send_upgrade(
        &self,
        backend: &Backend,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let exchange = async {
            let stream = self.dial(backend).await?;
            let (mut sender, conn) = self
                .client
                .handshake(TokioIo::new(stream))
                .await
                .map_err(UpstreamError::Handshake)?;
            let stop = self.stop.clone();
            self.tasks.spawn(async move {
                tokio::select! {
                    result = conn.with_upgrades() => if let Err(error) = result {
                        tracing::debug!(%error, "upstream upgrade connection failed");
                    },
                    _ = stop.cancelled() => {}
                }
            });
            let response = sender
                .send_request(req)
                .await
                .map_err(UpstreamError::from_exchange)?;
            Ok(response.map(|body| UpstreamBody::new(body, None)))
        };
        self.with_response_timeout(exchange, None).await
    }

    /// Idle upstream connections held for reuse.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle()
    }

    /// How `origin_id`'s dials went, if it was ever dialled.
    pub fn origin_status(&self, origin_id: &str) -> Option<OriginStatus> {
        lock(&self.origins).get(origin_id).cloned()
    }

    async fn exchange(
        &self,
        backend: &Backend,
        mut req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let now = Instant::now();
        self.pool.sweep_if_due(now);
        let host = self.pool.host(backend);
        let mut stale = 0;
        let mut replay = Replay::of(&req);
        loop {
            // A request sent again goes on a fresh connection (`stale` is at its maximum).
            let idle = if stale < MAX_STALE_RETRIES {
                host.take(now)
            } else {
                None
            };
            let (mut sender, pooled) = match idle {
                Some(sender) => (sender, true),
                None => (self.connect(backend).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
                        host,
                        tasks: self.tasks.clone(),
                        stop: self.stop.clone(),
                    };
                    return Ok(response.map(|body| UpstreamBody::new(body, Some(lease))));
                }
                Err(mut e) => match e.take_message() {
                    // The pooled connection was closed before the request went out.
                    Some(unsent) if pooled => {
                        tracing::debug!(error = %e.error(), "stale pooled connection");
                        stale += 1;
                        req = unsent;
                    }
                    // It went out, and the connection failed before an answer.
                    None if is_connection_failure(e.error()) => match replay.take() {
                        Some(again) => {
                            tracing::info!(
                                origin = %backend.origin,
                                error = %e.error(),
                                "the upstream connection failed before answering; sending the request again"
                            );
                            stale = MAX_STALE_RETRIES;
                            req = again.request();
                        }
                        None => return Err(UpstreamError::from_exchange(e.into_error())),
                    },
                    _ => return Err(UpstreamError::from_exchange(e.into_error())),
                },
            }
        }
    }

    /// Runs `exchange` until the response headers are in, failing with [`UpstreamError::Timeout`]
    /// after a whole `response_timeout` without them and without request body progress.
    async fn with_response_timeout(
        &self,
        exchange: impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>>,
        progress: Option<Arc<AtomicU64>>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let limit = self.settings.response_timeout;
        let read = || progress.as_ref().map(|p| p.load(Ordering::Relaxed));
        let mut exchange = std::pin::pin!(exchange);
        let mut seen = read();
        loop {
            match tokio::time::timeout(limit, exchange.as_mut()).await {
                Ok(result) => return result,
                Err(_) => {
                    let now = read();
                    if now == seen {
                        return Err(UpstreamError::Timeout(limit));
                    }
                    seen = now;
                }
            }
        }
    }

    /// A new HTTP/1.1 connection to `backend`, its task running.
    async fn connect(&self, backend: &Backend) -> Result<Sender, UpstreamError> {
        let stream = self.dial(backend).await?;
        let (sender, conn) = self
            .client
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Handshake)?;
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                result = conn => if let Err(error) = result {
                    tracing::debug!(%error, "upstream connection failed");
                },
                _ = stop.cancelled() => {}
            }
        });
        Ok(sender)
    }

    /// Dials `backend` within the connect timeout and records the result for `/health`.
    async fn dial(&self, backend: &Backend) -> Result<BoxStream, DialError> {
        let dialled =
            match tokio::time::timeout(self.settings.connect_timeout, self.dialer.dial(backend))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(DialError::Timeout),
            };
        self.record(backend, dialled.as_ref().err());
        dialled
    }

    fn record(&self, backend: &Backend, error: Option<&DialError>) {
        let now = kokoa_pull::unix_now();
        let mut origins = lock(&self.origins);
        let status = origins.entry(backend.origin_id.clone()).or_default();
        let was = status.reachable;
        match error {
            None => {
                status.reachable = Some(true);
                status.last_success = Some(now);
                if was == Some(false) {
                    tracing::info!(origin = %backend.origin, "origin reachable again");
                }
            }
            Some(error) => {
                status.reachable = Some(false);
                status.last_error = Some(error.to_string());
                status.last_error_at = Some(now);
                if was != Some(false) {
                    tracing::warn!(origin = %backend.origin, %error, "origin unreachable");
                }
            }
        }
    }
}

impl Drop for Upstreams {
    /// Closes every upstream connection.
    fn drop(&mut self) {
        self.stop.cancel();
        self.pool.clear();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use kokoa_store::OriginKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn backend(kind: OriginKind, target: &str) -> Backend {
        Backend {
            origin_id: "o1".into(),
            origin: "home".into(),
            kind,
            target: target.into(),
            rate_limit: None,
            allow_http: false,
        }
    }

    fn upstreams(settings: UpstreamSettings) -> Upstreams {
        Upstreams::new(Arc::new(ByKind::default()), settings)
    }

    fn get() -> Request<RequestBody> {
        Request::builder()
            .uri("/")
            .header("host", "a.example.com")
            .body(RequestBody::empty())
            .expect("request")
    }

    /// A keep-alive HTTP/1.1 server answering "ok"; counts the connections it accepted.
    async fn hyper_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn connections_are_pooled_and_reused() {
        let (addr, accepted) = hyper_upstream().await;
        let ups = upstreams(UpstreamSettings::default());
        let b = backend(OriginKind::Direct, &addr.to_string());
        for _ in 0..10 {
            let response = ups.send(&b, get()).await.expect("response");
            let body = response.into_body().collect().await.expect("body");
            assert_eq!(body.to_bytes(), "ok");
            let host = ups.pool.host(&b);
            until("the connection back in the pool", || host.idle() == 1).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        let status = ups.origin_status("o1").expect("dialled");
        assert_eq!(status.reachable, Some(true));
        assert!(status.last_success.is_some());
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_reused() {
        // Answers one request per connection with keep-alive, then closes it anyway (as an
        // upstream's idle timeout would).
        let (addr, accepted) = breaking_upstream(0).await;
        let ups = upstreams(UpstreamSettings::default());
        let b = backend(OriginKind::Direct, &addr.to_string());
        for _ in 0..3 {
            let response = ups.send(&b, get()).await.expect("response");
            let body = response.into_body().collect().await.expect("body");
            assert_eq!(body.to_bytes(), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// Accepts connections; the first `broken` ones read the request and close without an
    /// answer, the others answer "ok" (keep-alive) and close. Counts the connections.
    async fn breaking_upstream(broken: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                if n >= broken {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn a_bodiless_idempotent_request_is_sent_again_once_when_its_connection_breaks() {
        let (addr, accepted) = breaking_upstream(1).await;
        let ups = upstreams(UpstreamSettings::default());
        let b = backend(OriginKind::Direct, &addr.to_string());
        let response = ups.send(&b, get()).await.expect("answered the second time");
        let body = response.into_body().collect().await.expect("body");
        assert_eq!(body.to_bytes(), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        // Only once: two broken connections in a row are the answer.
        let (addr, accepted) = breaking_upstream(2).await;
        let b = backend(OriginKind::Direct, &addr.to_string());
        let failed = ups.send(&b, get()).await.expect_err("broken twice");
        assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn other_requests_are_not_sent_again() {
        let ups = upstreams(UpstreamSettings::default());
        let post = || {
            Request::builder()
                .method("POST")
                .uri("/")
                .header("host", "a.example.com")
                .body(RequestBody::empty())
                .expect("request")
        };
        let with_body = || {
            Request::builder()
                .uri("/")
                .header("host", "a.example.com")
                .body(RequestBody::from_bytes("x"))
                .expect("request")
        };
        for (what, req) in [("POST", post()), ("GET with a body", with_body())] {
            let (addr, accepted) = breaking_upstream(1).await;
            let b = backend(OriginKind::Direct, &addr.to_string());
            let failed = ups.send(&b, req).await.expect_err(what);
            assert_eq!(failed.status(), StatusCode::BAD_GATEWAY, "{what}");
            assert_eq!(accepted.load(Ordering::SeqCst), 1, "{what} was sent again");
        }
    }

    #[tokio::test]
    async fn dial_failures_are_recorded_and_mapped() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = closed.local_addr().expect("addr").to_string();
        drop(closed);
        let ups = upstreams(UpstreamSettings::default());
        let refused = ups
            .send(&backend(OriginKind::Direct, &target), get())
            .await
            .expect_err("refused");
        assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        let status = ups.origin_status("o1").expect("recorded");
        assert_eq!(status.reachable, Some(false));
        assert_eq!(status.last_error.as_deref(), Some("connection refused"));
        assert!(status.last_error_at.is_some());

        let (addr, _) = hyper_upstream().await;
        ups.send(&backend(OriginKind::Direct, &addr.to_string()), get())
            .await
            .expect("response");
        let status = ups.origin_status("o1").expect("recorded");
        assert_eq!(status.reachable, Some(true));
        assert_eq!(status.last_error.as_deref(), Some("connection refused"));

        let tunnel = ups
            .send(&backend(OriginKind::Tunnel, &addr.to_string()), get())
            .await
            .expect_err("no tunnel");
        assert_eq!(tunnel.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn silent_upstreams_time_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let ups = upstreams(UpstreamSettings {
            response_timeout: Duration::from_millis(200),
            ..UpstreamSettings::default()
        });
        let started = Instant::now();
        let err = ups
            .send(&backend(OriginKind::Direct, &addr.to_string()), get())
            .await
            .expect_err("timeout");
        assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn unused_upstream_pools_are_retired() {
        let pool = Pool::new(4, Duration::from_millis(10));
        let host = pool.host(&backend(OriginKind::Direct, "127.0.0.1:1"));
        pool.host(&backend(OriginKind::Direct, "127.0.0.1:2"));
        assert_eq!(pool.upstreams(), 2);
        let later = Instant::now() + Duration::from_secs(60);
        pool.sweep_if_due(later);
        // The one still held by a request stays.
        assert_eq!(pool.upstreams(), 1);
        drop(host);
        pool.sweep_if_due(later + Duration::from_secs(60));
        assert_eq!(pool.upstreams(), 0);
    }
}
