//! Many byte streams over one connection: HTTP/2 CONNECT (the `h2` crate).
//!
//! Between an edge and an agent there is one long-lived TCP connection (through the WireGuard
//! tunnel, opened by the agent). This module owns what runs over it:
//!
//! - [`client()`] (edge side, the HTTP/2 *client* even though the agent opened the TCP
//!   connection): a cloneable [`MuxClient`] whose [`MuxClient::open`] sends
//!   `CONNECT HOST:PORT` and returns a [`MuxStream`], plus the connection driver the caller
//!   spawns.
//! - [`serve`] (agent side, the HTTP/2 *server*): answers each CONNECT by checking the target
//!   against a [`TargetPolicy`], dialling it over TCP and copying bytes both ways.
//! - [`MuxStream`]: one stream, a tokio `AsyncRead + AsyncWrite` that respects HTTP/2 flow
//!   control, supports half-close (END_STREAM) and resets (RST_STREAM CANCEL) when dropped
//!   unfinished.
//! - Keep-alive: both sides PING every [`MuxSettings::ping_interval`] and give the connection
//!   up when no PONG arrives within [`MuxSettings::ping_timeout`]; a [`Probe`] asks for a PING
//!   at once (the agent's, when the edge starts a new WireGuard session: it may have restarted,
//!   and then the PING is answered with a TCP reset and the agent redials at once).
//!
//! Wire contract of the CONNECT answer (agent to edge): `200` stream open, `403` target not
//! allowed (nothing dialled), `502` target refused or unreachable, `504` dial timed out, `405`
//! not a CONNECT, `400` malformed target. Non-200 answers may carry a `kokoa-error` header with
//! a short reason.

mod client;
mod server;
mod stream;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use h2::{Ping, PingPong};
use tokio::sync::Notify;

pub use client::{client, MuxClient, OpenError};
pub use server::{serve, serve_until, TargetPolicy};
pub use stream::MuxStream;

/// Response header on a non-200 CONNECT answer with a short human-readable reason.
const ERROR_HEADER: &str = "kokoa-error";

/// Largest HTTP/2 flow-control window (2^31 - 1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Tuning and timeouts of a mux connection; the same on both sides. [`Default`] suits a
/// tunnel that must carry more than 1 Gbit/s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MuxSettings {
    /// Receive window of each stream (HTTP/2 `SETTINGS_INITIAL_WINDOW_SIZE`): how much a peer
    /// may send on one stream before we consume it. Default 2 MiB.
    pub stream_window: u32,
    /// Receive window of the whole connection. Default 16 MiB.
    pub connection_window: u32,
    /// Largest DATA frame we accept (16 KiB ..= 16 MiB - 1). Default 64 KiB.
    pub max_frame_size: u32,
    /// Streams the peer may have open towards us at once; the agent also never runs more
    /// stream tasks than this. Default 1024.
    pub max_concurrent_streams: u32,
    /// Most data h2 buffers per stream waiting to be written to the connection; writes wait
    /// (`Pending`) beyond it. Default 1 MiB.
    pub max_send_buffer_size: usize,
    /// How often a PING is sent. Default 5 s.
    pub ping_interval: Duration,
    /// No PONG within this ends the connection. Default 10 s.
    pub ping_timeout: Duration,
    /// Edge side: how long [`MuxClient::open`] waits for the agent's answer. Default 10 s.
    pub open_timeout: Duration,
    /// Agent side: TCP connect timeout to a target (answered `504`). Default 5 s.
    pub dial_timeout: Duration,
    /// The HTTP/2 handshake (connection preface) must finish within this. Default 10 s.
    pub handshake_timeout: Duration,
}

impl Default for MuxSettings {
    fn default() -> Self {
        Self {
            stream_window: 2 << 20,
            connection_window: 16 << 20,
            max_frame_size: 64 << 10,
            max_concurrent_streams: 1024,
            max_send_buffer_size: 1 << 20,
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(10),
            open_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl MuxSettings {
    /// Checks the ranges HTTP/2 and h2 accept ([`client()`] and [`serve`] call this first).
    pub fn validate(&self) -> Result<(), MuxError> {
        let invalid = |what| Err(MuxError::InvalidSettings(what));
        if self.stream_window == 0 || self.stream_window > MAX_WINDOW {
            return invalid("stream_window must be in 1 ..= 2^31-1");
        }
        if self.connection_window == 0 || self.connection_window > MAX_WINDOW {
            return invalid("connection_window must be in 1 ..= 2^31-1");
        }
        if !(16_384..=16_777_215).contains(&self.max_frame_size) {
            return invalid("max_frame_size must be in 16384 ..= 16777215");
        }
        if self.max_concurrent_streams == 0 {
            return invalid("max_concurrent_streams must be at least 1");
        }
        if self.max_send_buffer_size == 0 || self.max_send_buffer_size > MAX_WINDOW as usize {
            return invalid("max_send_buffer_size must be in 1 ..= 2^31-1");
        }
        let durations = [
            self.ping_interval,
            self.ping_timeout,
            self.open_timeout,
            self.dial_timeout,
            self.handshake_timeout,
        ];
        if durations.iter().any(Duration::is_zero) {
            return invalid("timeouts and the ping interval must be non-zero");
        }
        Ok(())
    }

    fn client_builder(&self) -> h2::client::Builder {
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(self.stream_window)
            .initial_connection_window_size(self.connection_window)
            .max_frame_size(self.max_frame_size)
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_send_buffer_size(self.max_send_buffer_size)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false);
        builder
    }

    fn server_builder(&self) -> h2::server::Builder {
        let mut builder = h2::server::Builder::new();
        builder
            .initial_window_size(self.stream_window)
            .initial_connection_window_size(self.connection_window)
            .max_frame_size(self.max_frame_size)
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_send_buffer_size(self.max_send_buffer_size)
            .max_header_list_size(MAX_HEADER_LIST);
        builder
    }
}

/// Header blocks on a mux connection are tiny (a CONNECT and its answer).
const MAX_HEADER_LIST: u32 = 16 << 10;

/// Why a mux connection could not be set up or ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// A [`MuxSettings`] value is out of range.
    #[error("invalid mux settings: {0}")]
    InvalidSettings(&'static str),
    /// The HTTP/2 handshake did not finish in time.
    #[error("HTTP/2 handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
    /// The peer did not answer a PING in time: it or the path to it is gone.
    #[error("peer did not answer a ping within {0:?}")]
    PingTimeout(Duration),
    /// An HTTP/2 protocol or I/O error ended the connection.
    #[error("HTTP/2 connection failed: {0}")]
    H2(#[from] h2::Error),
}

/// How long an unanswered PING may still take once a [`Probe`] comes (the peer has just shown it
/// is alive, so the answer only waits for a round trip and whatever is queued before it).
const PROBE_GRACE: Duration = Duration::from_secs(2);

/// Asks a connection's keep-alive for a PING now rather than at the next interval, when
/// something suggests the peer may have lost the connection. Cheap to clone; a request made
/// while no PING is due is kept until the next wait.
#[derive(Debug, Clone, Default)]
pub struct Probe(Arc<Notify>);

impl Probe {
    /// Requests a PING as soon as possible.
    pub fn now(&self) {
        self.0.notify_one();
    }
}

/// Sends a PING every `interval` (and whenever `probe` asks) and returns once one is not
/// answered within `timeout`.
///
/// Runs alongside the connection it pings (the PONG is only seen while the connection is
/// polled). If the connection itself fails, the ping fails too; then this waits forever and
/// leaves reporting the outcome to the connection.
async fn keepalive(
    mut ping_pong: PingPong,
    interval: Duration,
    timeout: Duration,
    probe: Probe,
) -> MuxError {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = probe.0.notified() => tracing::debug!("probing the connection"),
        }
        let pong = ping_pong.ping(Ping::opaque());
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(pong, deadline);
        loop {
            tokio::select! {
                answered = &mut pong => match answered {
                    Ok(_pong) => break,
                    Err(error) => {
                        tracing::trace!(%error, "ping failed; the connection reports why");
                        return std::future::pending().await;
                    }
                },
                () = &mut deadline => return MuxError::PingTimeout(timeout),
                // A PING is out already (only one may be): a peer that just showed it is alive
                // answers it within a round trip, or the connection is gone.
                () = probe.0.notified() => {
                    let sooner = tokio::time::Instant::now() + PROBE_GRACE;
                    if sooner < deadline.deadline() {
                        tracing::debug!("probed while a ping is unanswered: waiting {PROBE_GRACE:?} more at most");
                        deadline.as_mut().reset(sooner);
                    }
                }
            }
        }
    }
}
