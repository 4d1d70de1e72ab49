//! Agent side of the mux: the HTTP/2 server that dials the targets the edge asks for.

use std::future::{poll_fn, Future};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::{keepalive, MuxError, MuxSettings, MuxStream, Probe, ERROR_HEADER};

/// Which targets an agent may dial for the edge.
///
/// Contract: `allows` is called on the connection's task for every CONNECT before anything is
/// dialled, so it must be quick and must not block. `target` is the CONNECT authority exactly
/// as the edge sent it, always `HOST:PORT` with a port (the host may be a name, an IPv4
/// address or a bracketed IPv6 address). Returning `false` answers 403 and dials nothing.
/// Any `Fn(&str) -> bool + Send + Sync + 'static` is a policy.
pub trait TargetPolicy: Send + Sync + 'static {
    /// Whether the agent may open a TCP connection to `target`.
    fn allows(&self, target: &str) -> bool;
}

impl<F> TargetPolicy for F
where
    F: Fn(&str) -> bool + Send + Sync + 'static,
{
    fn allows(&self, target: &str) -> bool {
        self(target)
    }
}

/// Serves the CONNECT streams arriving on `io` until the connection ends.
///
/// For each stream: the method must be CONNECT (else 405) and its authority a `HOST:PORT`
/// (else 400) that `policy` allows (else 403, nothing dialled). The target is then dialled
/// over TCP (TCP_NODELAY, [`MuxSettings::dial_timeout`]; refused or unreachable: 502, timeout:
/// 504), answered 200, and bytes are copied both ways until both directions have ended
/// ([`MuxStream::splice`]: half-close in both directions). Streams run as tasks owned by this
/// future, at most [`MuxSettings::max_concurrent_streams`] at once.
///
/// Resolves `Ok(())` when the edge closed the connection cleanly, `Err` on a ping timeout
/// ([`MuxError::PingTimeout`]) or a protocol/I/O error. Dropping the future closes the
/// connection and aborts every stream. The returned future owns a copy of `settings`, so it
/// can be spawned directly.
pub fn serve<IO>(
    io: IO,
    settings: &MuxSettings,
    policy: Arc<dyn TargetPolicy>,
) -> impl Future<Output = Result<(), MuxError>> + Send + 'static
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_until(
        io,
        settings,
        policy,
        std::future::pending::<()>(),
        Probe::default(),
    )
}

/// [`serve`] with a graceful shutdown and a [`Probe`]: once `shutdown` completes, the agent
/// sends GOAWAY (the edge opens no new stream here) and the future resolves when the streams
/// already open have ended. Drop the future to stop at once. `probe` asks for a keep-alive
/// PING at once.
pub fn serve_until<IO, S>(
    io: IO,
    settings: &MuxSettings,
    policy: Arc<dyn TargetPolicy>,
    shutdown: S,
    probe: Probe,
) -> impl Future<Output = Result<(), MuxError>> + Send + 'static
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let settings = settings.clone();
    async move {
        settings.validate()?;
        let handshake = settings.server_builder().handshake::<_, Bytes>(io);
        let mut connection = tokio::time::timeout(settings.handshake_timeout, handshake)
            .await
            .map_err(|_elapsed| MuxError::HandshakeTimeout(settings.handshake_timeout))??;
        let ping_pong = connection
            .ping_pong()
            .ok_or(MuxError::InvalidSettings("h2 gave no ping handle"))?;
        let keepalive = keepalive(
            ping_pong,
            settings.ping_interval,
            settings.ping_timeout,
            probe,
        );
        tokio::pin!(keepalive, shutdown);

        let permits = Arc::new(Semaphore::new(settings.max_concurrent_streams as usize));
        let mut streams = JoinSet::new();
        let mut shutting_down = false;
        loop {
            tokio::select! {
                accepted = connection.accept() => match accepted {
                    Some(Ok((request, respond))) => {
                        let span = tracing::debug_span!(
                            "mux_stream",
                            id = respond.stream_id().as_u32(),
                            target = tracing::field::Empty,
                        );
                        let stream = handle_stream(
                            request,
                            respond,
                            policy.clone(),
                            permits.clone(),
                            settings.dial_timeout,
                        );
                        streams.spawn(stream.instrument(span));
                    }
                    Some(Err(error)) => return Err(error.into()),
                    None => return Ok(()),
                },
                timed_out = &mut keepalive => return Err(timed_out),
                () = &mut shutdown, if !shutting_down => {
                    tracing::debug!("shutting down: GOAWAY");
                    shutting_down = true;
                    connection.graceful_shutdown();
                }
                Some(joined) = streams.join_next() => {
                    if let Err(error) = joined {
                        if error.is_panic() {
                            tracing::error!(%error, "mux stream task panicked");
                        }
                    }
                }
            }
        }
    }
}

/// One CONNECT: check, dial, answer, copy.
async fn handle_stream(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    policy: Arc<dyn TargetPolicy>,
    permits: Arc<Semaphore>,
    dial_timeout: Duration,
) {
    if request.method() != Method::CONNECT {
        tracing::debug!(method = %request.method(), "not a CONNECT");
        answer(&mut respond, StatusCode::METHOD_NOT_ALLOWED, None);
        return;
    }
    let target = match request.uri().authority() {
        Some(authority) if authority.port_u16().is_some() => authority.as_str().to_owned(),
        _ => {
            tracing::debug!(uri = %request.uri(), "CONNECT without HOST:PORT");
            answer(
                &mut respond,
                StatusCode::BAD_REQUEST,
                Some("target must be HOST:PORT"),
            );
            return;
        }
    };
    tracing::Span::current().record("target", target.as_str());
    if !policy.allows(&target) {
        tracing::debug!("target not allowed");
        answer(&mut respond, StatusCode::FORBIDDEN, None);
        return;
    }
    // Never closed, so this only waits while max_concurrent_streams tasks run.
    let Ok(_permit) = permits.acquire_owned().await else {
        return;
    };
    let dialled = tokio::select! {
        dialled = dial(&target, dial_timeout) => dialled,
        // The edge gave up (open timeout) or the connection went away.
        _ = poll_fn(|cx| respond.poll_reset(cx)) => {
            tracing::debug!("stream reset while dialling");
            return;
        }
    };
    let mut tcp = match dialled {
        Ok(tcp) => tcp,
        Err(error) => {
            let status = if error.kind() == io::ErrorKind::TimedOut {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            tracing::debug!(%error, %status, "dial failed");
            answer(&mut respond, status, Some(&error.to_string()));
            return;
        }
    };
    let send = match respond.send_response(Response::new(()), false) {
        Ok(send) => send,
        Err(error) => {
            tracing::debug!(%error, "could not answer the CONNECT");
            return;
        }
    };
    let stream = MuxStream::from_h2(send, request.into_body());
    let (reader, writer) = tcp.split();
    match stream.splice(reader, writer).await {
        Ok((sent, received)) => tracing::debug!(sent, received, "stream done"),
        Err(error) => tracing::debug!(%error, "stream failed"),
    }
}

/// TCP connection to `target` with TCP_NODELAY; `TimedOut` after `timeout`.
async fn dial(target: &str, timeout: Duration) -> io::Result<TcpStream> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(target))
        .await
        .map_err(|_elapsed| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            )
        })??;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A final (END_STREAM) answer without a body.
fn answer(respond: &mut SendResponse<Bytes>, status: StatusCode, reason: Option<&str>) {
    let mut response = Response::new(());
    *response.status_mut() = status;
    if let Some(value) = reason.and_then(|reason| HeaderValue::from_str(reason).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(ERROR_HEADER), value);
    }
    if let Err(error) = respond.send_response(response, true) {
        tracing::debug!(%error, "could not answer the CONNECT");
    }
}
