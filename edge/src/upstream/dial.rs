//! Opening byte streams to backends: the [`Dialer`] extension point, the direct TCP dialer,
//! and the stand-in for tunnel origins until the tunnel exists.

use std::fmt;
use std::io;
use std::sync::Arc;

use futures::future::BoxFuture;
use kokoa_store::pulled::Backend;
use kokoa_store::OriginKind;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connected byte stream to a backend.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A stream from any [`Dialer`].
pub type BoxStream = Box<dyn Stream>;

/// Opens connections to backends; the proxy speaks HTTP/1.1 over what it returns.
///
/// Contract:
/// - `Ok` is a fresh stream connected to `backend.target` (directly, or through the origin's
///   tunnel), ready for bytes; the caller owns and closes it.
/// - The future must be cancel-safe: the caller drops it when its connect timeout passes, so it
///   needs no timeout of its own.
/// - `Err` says why no stream was opened. [`DialError::is_unavailable`] errors (no tunnel to
///   the origin) become `503 Service Unavailable`, all others `502 Bad Gateway`.
pub trait Dialer: Send + Sync + fmt::Debug + 'static {
    fn dial<'a>(&'a self, backend: &'a Backend) -> BoxFuture<'a, Result<BoxStream, DialError>>;
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The origin is reached through a tunnel and none is up.
    #[error("no tunnel to origin {origin} yet")]
    NoTunnel { origin: String },
    #[error("connection refused")]
    Refused,
    #[error("connecting timed out")]
    Timeout,
    #[error("bad target {0:?}")]
    BadTarget(String),
    /// The origin's agent refused the target: it is not configured for the origin.
    #[error("target {0} not allowed by the origin's agent")]
    NotAllowed(String),
    #[error(transparent)]
    Io(io::Error),
}

impl DialError {
    /// The backend is known to be unreachable for now (503), rather than failing (502).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DialError::NoTunnel { .. })
    }
}

impl From<io::Error> for DialError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => DialError::Refused,
            io::ErrorKind::TimedOut => DialError::Timeout,
            _ => DialError::Io(e),
        }
    }
}

/// Dials `backend.target` over TCP from the edge itself, with `TCP_NODELAY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectDialer;

impl Dialer for DirectDialer {
    fn dial<'a>(&'a self, backend: &'a Backend) -> BoxFuture<'a, Result<BoxStream, DialError>> {
        Box::pin(async move {
            let target = backend.target.as_str();
            if target
                .rsplit_once(':')
                .is_none_or(|(host, _)| host.is_empty())
            {
                return Err(DialError::BadTarget(target.to_string()));
            }
            let stream = TcpStream::connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

/// For tunnel origins until the tunnel lands: always [`DialError::NoTunnel`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTunnel;

impl Dialer for NoTunnel {
    fn dial<'a>(&'a self, backend: &'a Backend) -> BoxFuture<'a, Result<BoxStream, DialError>> {
        Box::pin(async move {
            Err(DialError::NoTunnel {
                origin: backend.origin.clone(),
            })
        })
    }
}

/// Picks the dialer by the origin's kind.
#[derive(Debug, Clone)]
pub struct ByKind {
    pub direct: Arc<dyn Dialer>,
    pub tunnel: Arc<dyn Dialer>,
}

impl Default for ByKind {
    /// Direct TCP for direct origins; [`NoTunnel`] for tunnel origins.
    fn default() -> Self {
        ByKind {
            direct: Arc::new(DirectDialer),
            tunnel: Arc::new(NoTunnel),
        }
    }
}

impl Dialer for ByKind {
    fn dial<'a>(&'a self, backend: &'a Backend) -> BoxFuture<'a, Result<BoxStream, DialError>> {
        match backend.kind {
            OriginKind::Direct => self.direct.dial(backend),
            OriginKind::Tunnel => self.tunnel.dial(backend),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub(crate) fn backend(kind: OriginKind, target: &str) -> Backend {
        Backend {
            origin_id: "o1".into(),
            origin: "home".into(),
            kind,
            target: target.into(),
            rate_limit: None,
            allow_http: false,
        }
    }

    #[tokio::test]
    async fn direct_dials_the_target() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = listener.local_addr().expect("addr").to_string();
        let accept = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 2];
            s.read_exact(&mut buf).await.expect("read");
            buf
        });
        let dialer = ByKind::default();
        let mut stream = dialer
            .dial(&backend(OriginKind::Direct, &target))
            .await
            .expect("dial");
        stream.write_all(b"hi").await.expect("write");
        assert_eq!(&accept.await.expect("join"), b"hi");
    }

    #[tokio::test]
    async fn refused_and_bad_targets_are_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let refused = DirectDialer
            .dial(&backend(OriginKind::Direct, &target))
            .await
            .err();
        assert!(matches!(refused, Some(DialError::Refused)), "{refused:?}");
        let bad = DirectDialer
            .dial(&backend(OriginKind::Direct, "no-port"))
            .await
            .err();
        assert!(matches!(bad, Some(DialError::BadTarget(_))), "{bad:?}");
    }

    #[tokio::test]
    async fn tunnel_origins_are_unavailable_without_a_tunnel() {
        let err = ByKind::default()
            .dial(&backend(OriginKind::Tunnel, "127.0.0.1:1"))
            .await
            .err()
            .expect("no tunnel");
        assert!(err.is_unavailable());
        assert_eq!(err.to_string(), "no tunnel to origin home yet");
    }
}
