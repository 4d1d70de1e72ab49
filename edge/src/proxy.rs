//! The edge's HTTP front: the port 80 and 443 listeners, their connections (HTTP/1.1 with
//! WebSocket upgrades, and HTTP/2: by ALPN over TLS, by preface on port 80), every bound on
//! them (connection limits, handshake, header and idle timeouts, header and body sizes), and a
//! graceful shutdown. What happens to each request is in `handler` (with the header rules in
//! `headers`); how it reaches the backend is [`crate::upstream`].
//!
//! Request framing is hyper's, and bodies are re-framed on the way upstream; a request with
//! both `Content-Length` and `Transfer-Encoding`, which hyper would accept, is refused with 400
//! (see `framing`).

mod framing;
mod handler;
mod headers;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::limits::{ConnectionGuard, LimitSettings, Limits};
use crate::live::Live;
use crate::upstream::{ByKind, Dialer, UpstreamSettings, Upstreams};
use framing::{AmbiguousHeads, Scanned};
use handler::Conn;

/// hyper's smallest allowed HTTP/1 read buffer.
const MIN_HEADER_BUFFER: usize = 8192;

/// Pause after a failed `accept` (out of file descriptors, ...), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Every bound of the HTTP front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Longest wait for a request's headers (slow clients are closed, or get 408). For
    /// HTTP/1.1 it also bounds the idle time between two requests on a connection.
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1.1 read buffer, HTTP/2 header list); at least 8 KiB.
    /// Larger heads get 431 or a closed connection.
    pub max_header_bytes: usize,
    /// Largest request body, counted while streaming: over it, 413.
    pub max_request_body: u64,
    /// A connection with no bytes either way for this long is closed gracefully (requests in
    /// flight finish), and dropped after as long again. (A new connection gets only the header
    /// read timeout for its first bytes.)
    pub idle_timeout: Duration,
    /// Longest TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// How long open connections get to finish at shutdown before they are dropped.
    pub shutdown_grace: Duration,
    pub upstream: UpstreamSettings,
    pub limits: LimitSettings,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_request_body: 1024 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            http2_max_concurrent_streams: 256,
            shutdown_grace: Duration::from_secs(5),
            upstream: UpstreamSettings::default(),
            limits: LimitSettings::default(),
        }
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The edge's reverse proxy, shared by its two listeners.
pub struct Proxy {
    live: Arc<Live>,
    settings: ProxySettings,
    upstreams: Upstreams,
    limits: Limits,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("settings", &self.settings)
            .field("upstreams", &self.upstreams)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy for `live`'s routes: direct origins dialled over TCP, tunnel origins answered
    /// 503 until a tunnel dialer is given ([`Proxy::with_dialer`]).
    pub fn new(live: Arc<Live>, settings: ProxySettings) -> Arc<Proxy> {
        Proxy::with_dialer(live, settings, Arc::new(ByKind::default()))
    }

    /// A proxy that opens upstream connections with `dialer`.
    pub fn with_dialer(
        live: Arc<Live>,
        settings: ProxySettings,
        dialer: Arc<dyn Dialer>,
    ) -> Arc<Proxy> {
        Arc::new(Proxy {
            live,
            upstreams: Upstreams::new(dialer, settings.upstream.clone()),
            limits: Limits::new(&settings.limits),
            settings,
        })
    }

    /// The upstream connections, with each origin's reachability.
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Serves plain HTTP on `listener` (port 80: ACME challenges, HTTPS redirects, routes
    /// with `allow_http`, `/health`) until `shutdown`; then lets open connections finish for
    /// up to the shutdown grace and returns.
    pub async fn serve_http(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        Listener::new(self, Scheme::Http, None, shutdown)
            .run(listener)
            .await;
    }

    /// Serves HTTPS on `listener` with `tls` (its ALPN picks HTTP/2 or HTTP/1.1) until
    /// `shutdown`, as [`Proxy::serve_http`].
    pub async fn serve_https(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: CancellationToken,
    ) {
        let acceptor = TlsAcceptor::from(tls);
        Listener::new(self, Scheme::Https, Some(acceptor), shutdown)
            .run(listener)
            .await;
    }
}

/// Runs hyper's background work (HTTP/2 streams) as tasks of the listener, ended by its hard
/// stop.
#[derive(Clone)]
struct Exec {
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl<F> hyper::rt::Executor<F> for Exec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = fut => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// One listener: its protocol builders, its connection tasks and its shutdown.
struct Listener {
    proxy: Arc<Proxy>,
    scheme: Scheme,
    tls: Option<TlsAcceptor>,
    http1: http1::Builder,
    http2: http2::Builder<Exec>,
    auto: auto::Builder<Exec>,
    tasks: TaskTracker,
    /// Stop accepting and close connections gracefully.
    shutdown: CancellationToken,
    /// Drop whatever is still open.
    stop: CancellationToken,
}

impl Listener {
    fn new(
        proxy: Arc<Proxy>,
        scheme: Scheme,
        tls: Option<TlsAcceptor>,
        shutdown: CancellationToken,
    ) -> Arc<Listener> {
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let exec = Exec {
            tasks: tasks.clone(),
            stop: stop.clone(),
        };
        let s = &proxy.settings;
        let header_buffer = s.max_header_bytes.max(MIN_HEADER_BUFFER);
        let header_list = u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX);

        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(s.header_read_timeout)
            .max_buf_size(header_buffer);
        let mut h2 = http2::Builder::new(exec.clone());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(s.http2_max_concurrent_streams)
            .max_header_list_size(header_list);
        let mut either = auto::Builder::new(exec);
        either
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(s.header_read_timeout)
            .max_buf_size(header_buffer);
        either
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(s.http2_max_concurrent_streams)
            .max_header_list_size(header_list);

        Arc::new(Listener {
            proxy,
            scheme,
            tls,
            http1: h1,
            http2: h2,
            auto: either,
            tasks,
            shutdown,
            stop,
        })
    }

    async fn run(self: Arc<Self>, listener: TcpListener) {
        let addr = listener.local_addr().ok();
        let scheme = self.scheme.as_str();
        tracing::info!(?addr, scheme, "serving");
        loop {
            let accepted = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, scheme, "accept failed");
                    tokio::select! {
                        () = self.shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            };
            let guard = match self.proxy.limits.open_connection(peer.ip()) {
                Ok(guard) => guard,
                Err(refused) => {
                    tracing::debug!(%peer, %refused, "connection refused");
                    continue;
                }
            };
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%peer, %error, "TCP_NODELAY");
            }
            let span = tracing::debug_span!("conn", %peer, scheme);
            self.tasks.spawn(
                self.clone()
                    .connection(stream, peer, guard)
                    .instrument(span),
            );
        }
        drop(listener);
        self.tasks.close();
        let grace = self.proxy.settings.shutdown_grace;
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.tasks.len(),
                scheme,
                "connections still open after the shutdown grace; dropping them"
            );
            self.stop.cancel();
            self.tasks.wait().await;
        }
        tracing::info!(?addr, scheme, "stopped");
    }

    /// Serves one accepted connection to its end.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        guard: ConnectionGuard,
    ) {
        let client = peer.ip().to_canonical();
        let heads = AmbiguousHeads::default();
        let conn = Arc::new(Conn {
            proxy: self.proxy.clone(),
            client,
            client_header: HeaderValue::from_str(&client.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            scheme: self.scheme,
            tasks: self.tasks.clone(),
            stop: self.stop.clone(),
            heads: heads.clone(),
            _guard: guard,
        });
        let service = service_fn(move |req| handler::handle(conn.clone(), req));
        let activity = Arc::new(AtomicU64::new(0));
        let io = Tracked {
            inner: stream,
            activity: activity.clone(),
        };
        let Some(acceptor) = &self.tls else {
            let io = Scanned::new(io, heads);
            let served = self
                .auto
                .serve_connection_with_upgrades(TokioIo::new(io), service);
            return self
                .drive(served, |c| c.graceful_shutdown(), &activity)
                .await;
        };
        let handshake = tokio::time::timeout(
            self.proxy.settings.tls_handshake_timeout,
            acceptor.accept(io),
        );
        let tls = tokio::select! {
            tls = handshake => tls,
            () = self.shutdown.cancelled() => return,
        };
        let tls = match tls {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
            Err(_) => return tracing::debug!("TLS handshake timed out"),
        };
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            let served = self.http2.serve_connection(TokioIo::new(tls), service);
            self.drive(served, |c| c.graceful_shutdown(), &activity)
                .await;
        } else {
            let io = Scanned::new(tls, heads);
            let served = self
                .http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            self.drive(served, |c| c.graceful_shutdown(), &activity)
                .await;
        }
    }

    /// Polls `served` to its end, shutting it down gracefully on shutdown or when idle, and
    /// dropping it on the hard stop. The first idle check comes after the header read timeout,
    /// so a connection that never sends a byte (hyper's HTTP/1-or-2 sniffing has no timeout of
    /// its own) is not kept for the whole idle timeout.
    async fn drive<C, E>(&self, served: C, graceful: impl Fn(Pin<&mut C>), activity: &AtomicU64)
    where
        C: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        let mut served = std::pin::pin!(served);
        let settings = &self.proxy.settings;
        let idle = settings.idle_timeout;
        let first = idle.min(settings.header_read_timeout);
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + first, idle);
        let mut seen = activity.load(Ordering::Relaxed);
        let mut closing = false;
        loop {
            tokio::select! {
                biased;
                result = served.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection error");
                    }
                    return;
                }
                () = self.shutdown.cancelled(), if !closing => {
                    closing = true;
                    graceful(served.as_mut());
                }
                () = self.stop.cancelled() => return,
                _ = check.tick() => {
                    let now = activity.load(Ordering::Relaxed);
                    if now == seen {
                        if closing {
                            tracing::debug!("idle connection dropped");
                            return;
                        }
                        tracing::debug!("idle connection closing");
                        closing = true;
                        graceful(served.as_mut());
                    }
                    seen = now;
                }
            }
        }
    }
}

/// A socket that counts its reads and writes, so the idle check needs no clock on the hot
/// path.
struct Tracked<T> {
    inner: T,
    activity: Arc<AtomicU64>,
}

impl<T> Tracked<T> {
    fn touch(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
