//! Edge side of the mux: the HTTP/2 client that opens CONNECT streams to an agent.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{keepalive, MuxError, MuxSettings, MuxStream, Probe, ERROR_HEADER};

/// Handshakes as the HTTP/2 client over `io` (the agent's connection).
///
/// Returns the handle and the connection driver, which the caller must spawn (and track):
/// nothing moves on the connection while the driver is not polled, so an unspawned driver
/// makes every [`MuxClient::open`] time out. The driver sends a PING every
/// [`MuxSettings::ping_interval`] and resolves when the connection ends: `Ok(())` when it
/// closed cleanly (the agent went away gracefully, or every [`MuxClient`] was dropped and no
/// stream is left), `Err` on a ping timeout ([`MuxError::PingTimeout`]) or a protocol/I/O
/// error. Once it has resolved, or has been dropped, [`MuxClient::is_closed`] is true and
/// every stream of the connection fails.
pub async fn client<IO>(
    io: IO,
    settings: &MuxSettings,
) -> Result<
    (
        MuxClient,
        impl Future<Output = Result<(), MuxError>> + Send + 'static,
    ),
    MuxError,
>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    settings.validate()?;
    let handshake = settings.client_builder().handshake::<_, Bytes>(io);
    let (send_request, mut connection) =
        tokio::time::timeout(settings.handshake_timeout, handshake)
            .await
            .map_err(|_elapsed| MuxError::HandshakeTimeout(settings.handshake_timeout))??;
    let ping_pong = connection
        .ping_pong()
        .ok_or(MuxError::InvalidSettings("h2 gave no ping handle"))?;
    let closed = Arc::new(AtomicBool::new(false));
    let mark_closed = MarkClosedOnDrop(closed.clone());
    let (ping_interval, ping_timeout) = (settings.ping_interval, settings.ping_timeout);
    let driver = async move {
        let _mark_closed = mark_closed;
        tokio::select! {
            ended = connection => ended.map_err(MuxError::from),
            timed_out = keepalive(ping_pong, ping_interval, ping_timeout, Probe::default()) => Err(timed_out),
        }
    };
    let client = MuxClient {
        send_request,
        closed,
        open_timeout: settings.open_timeout,
    };
    Ok((client, driver))
}

/// Sets the shared "closed" flag when the driver finishes or is dropped.
struct MarkClosedOnDrop(Arc<AtomicBool>);

impl Drop for MarkClosedOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Opens streams to one agent over its mux connection. Cheap to clone; every clone shares the
/// connection.
#[derive(Clone, Debug)]
pub struct MuxClient {
    send_request: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
    open_timeout: Duration,
}

/// Why [`MuxClient::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The mux connection is gone (ended, GOAWAY, ping timeout): use another agent.
    #[error("mux connection closed")]
    Closed,
    /// The agent answered 403: the target is not configured for this origin.
    #[error("target {0} not allowed by the agent")]
    NotAllowed(String),
    /// The agent answered 502: the target refused the connection or could not be dialled.
    #[error("target refused: {0}")]
    Refused(String),
    /// The agent did not answer within the open timeout, or answered 504 (dial timeout).
    #[error("timed out opening the stream")]
    Timeout,
    /// Any other failure (malformed target, unexpected answer, stream reset).
    #[error("mux protocol error: {0}")]
    Protocol(String),
}

impl OpenError {
    /// True when the failure was the connection's, not the target's: another agent of the
    /// same origin may succeed.
    pub fn is_connection_failure(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl MuxClient {
    /// Opens a stream to `target` (`HOST:PORT`) on the agent: sends CONNECT with
    /// `:authority = target` and waits for the answer, at most
    /// [`MuxSettings::open_timeout`]. Cancel safe: dropping the future resets the stream.
    pub async fn open(&self, target: &str) -> Result<MuxStream, OpenError> {
        if self.is_closed() {
            return Err(OpenError::Closed);
        }
        let request = connect_request(target)?;
        match tokio::time::timeout(self.open_timeout, self.open_request(request, target)).await {
            Ok(opened) => opened,
            Err(_elapsed) => Err(OpenError::Timeout),
        }
    }

    /// True once the connection has ended (driver finished or dropped, GOAWAY, ping timeout):
    /// the caller should use another agent.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    async fn open_request(
        &self,
        request: Request<()>,
        target: &str,
    ) -> Result<MuxStream, OpenError> {
        let mut send_request = self
            .send_request
            .clone()
            .ready()
            .await
            .map_err(|error| self.connection_failed(&error))?;
        let (response, send) = send_request
            .send_request(request, false)
            .map_err(|error| self.connection_failed(&error))?;
        let response = response.await.map_err(|error| {
            if error.is_go_away() || error.is_io() || self.is_closed() {
                self.connection_failed(&error)
            } else {
                OpenError::Protocol(error.to_string())
            }
        })?;
        let reason = response
            .headers()
            .get(ERROR_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let status = response.status();
        match status {
            StatusCode::OK => Ok(MuxStream::from_h2(send, response.into_body())),
            StatusCode::FORBIDDEN => Err(OpenError::NotAllowed(target.to_owned())),
            StatusCode::BAD_GATEWAY => Err(OpenError::Refused(match reason {
                Some(reason) => format!("{target}: {reason}"),
                None => target.to_owned(),
            })),
            StatusCode::GATEWAY_TIMEOUT => Err(OpenError::Timeout),
            _ => Err(OpenError::Protocol(match reason {
                Some(reason) => format!("agent answered {status}: {reason}"),
                None => format!("agent answered {status}"),
            })),
        }
    }

    /// The connection can take no new stream (closed, or GOAWAY received): remember it.
    fn connection_failed(&self, error: &h2::Error) -> OpenError {
        tracing::debug!(%error, "mux connection takes no new streams");
        self.closed.store(true, Ordering::Release);
        OpenError::Closed
    }
}

/// `CONNECT target` after checking that `target` is a plain `HOST:PORT`.
fn connect_request(target: &str) -> Result<Request<()>, OpenError> {
    let malformed = || OpenError::Protocol(format!("target {target:?} is not HOST:PORT"));
    let uri: Uri = target.parse().map_err(|_| malformed())?;
    let authority = uri.authority().ok_or_else(malformed)?;
    if uri.scheme().is_some()
        || authority.as_str() != target
        || authority.port_u16().is_none()
        || target.contains('@')
    {
        return Err(malformed());
    }
    Request::builder()
        .method(Method::CONNECT)
        .uri(uri)
        .body(())
        .map_err(|error| OpenError::Protocol(error.to_string()))
}
