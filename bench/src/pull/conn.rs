//! One long-polling edge: its own HTTP/1.1 connection (hyper, no pool), re-armed by the
//! coordinator each round.
//!
//! A puller connects once (through a gate that bounds how many connect at once), then waits for
//! [`Command`]s on a watch channel shared by every puller. On `Arm { round, after }` it sends
//! `GET /api/v1/edge-nodes/me/config?after=AFTER&wait=S` on its connection and reports the
//! answer as an [`Event`]: a 304 (no change within `S`) is sent again at once, as an edge would,
//! and only counted. A new command while a pull is outstanding abandons it (the connection is
//! then dropped and re-opened for the next round). A broken connection is re-opened when the
//! next round is armed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

/// The config pull path of `docs/interfaces.md`.
pub const CONFIG_PATH: &str = "/api/v1/edge-nodes/me/config";
/// One connection attempt may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct error messages kept.
const ERROR_SAMPLES: usize = 8;
/// The most bytes of an unexpected answer's body kept in its event.
const BODY_SAMPLE: usize = 200;

/// What every puller should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Connected, nothing to send yet.
    Idle,
    /// Pull `?after=after` for round `round`.
    Arm { round: u32, after: u64 },
    /// Close the connection and end.
    Stop,
}

/// How one armed pull ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// 200; `version` is the body's leading `"version"` field, if it could be read.
    Answered { at: Instant, version: Option<u64> },
    /// Another status than 200 or 304.
    Status {
        at: Instant,
        status: u16,
        body: String,
    },
    /// Connect, send or receive failed.
    Transport { at: Instant, error: String },
}

impl Outcome {
    pub fn at(&self) -> Instant {
        match self {
            Outcome::Answered { at, .. }
            | Outcome::Status { at, .. }
            | Outcome::Transport { at, .. } => *at,
        }
    }
}

/// One puller's answer in one round.
#[derive(Debug, Clone)]
pub struct Event {
    pub round: u32,
    pub puller: u32,
    pub outcome: Outcome,
}

/// Counters every puller updates; the coordinator reads them (and resets the per-round ones
/// with [`Shared::new_round`] before arming a round).
#[derive(Debug, Default)]
pub struct Shared {
    /// Pullers holding an open connection after their first connect.
    pub connected: AtomicUsize,
    /// First connects that failed.
    pub connect_failed: AtomicUsize,
    /// Pulls sent in the current round (first send of each puller; reset by the coordinator
    /// before it arms a round).
    pub sent: AtomicUsize,
    /// Pullers armed in the current round that could not send (no connection; reset with
    /// `sent`).
    pub unsent: AtomicUsize,
    /// 304 answers sent again in the current round (reset with `sent`).
    pub repolls: AtomicUsize,
    samples: Mutex<Vec<String>>,
}

impl Shared {
    /// Zeroes the per-round counters.
    pub fn new_round(&self) {
        self.sent.store(0, Ordering::Relaxed);
        self.unsent.store(0, Ordering::Relaxed);
        self.repolls.store(0, Ordering::Relaxed);
    }

    /// A few distinct connect errors.
    pub fn samples(&self) -> Vec<String> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn sample(&self, message: String) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() < ERROR_SAMPLES && !samples.contains(&message) {
            samples.push(message);
        }
    }
}

/// Everything a puller needs; [`Puller::run`] is its whole life.
#[derive(Debug)]
pub struct Puller {
    pub id: u32,
    pub addr: SocketAddr,
    /// `Authorization: Bearer <edge token>`.
    pub auth: HeaderValue,
    pub wait_secs: u64,
    pub commands: watch::Receiver<Command>,
    pub events: mpsc::UnboundedSender<Event>,
    pub shared: Arc<Shared>,
    /// Bounds how many pullers connect at once.
    pub connect_gate: Arc<Semaphore>,
}

/// An open connection; dropping it closes the socket.
struct Conn {
    sender: http1::SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What one request is made of.
struct Target {
    host: HeaderValue,
    auth: HeaderValue,
    wait_secs: u64,
}

impl Puller {
    pub async fn run(self) {
        let Puller {
            id,
            addr,
            auth,
            wait_secs,
            mut commands,
            events,
            shared,
            connect_gate,
        } = self;
        let target = Target {
            host: HeaderValue::from_str(&addr.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            auth,
            wait_secs,
        };
        let mut conn = match connect(addr, &connect_gate).await {
            Ok(conn) => {
                shared.connected.fetch_add(1, Ordering::Relaxed);
                Some(conn)
            }
            Err(error) => {
                shared.connect_failed.fetch_add(1, Ordering::Relaxed);
                shared.sample(error);
                None
            }
        };
        // A command that arrived while a pull was outstanding and is not handled yet.
        let mut pending = false;
        loop {
            if !pending && commands.changed().await.is_err() {
                return;
            }
            pending = false;
            let command = *commands.borrow_and_update();
            let (round, after) = match command {
                Command::Idle => continue,
                Command::Stop => return,
                Command::Arm { round, after } => (round, after),
            };
            if conn.as_ref().is_none_or(|c| c.sender.is_closed()) {
                conn = match connect(addr, &connect_gate).await {
                    Ok(c) => Some(c),
                    Err(error) => {
                        shared.unsent.fetch_add(1, Ordering::Relaxed);
                        let outcome = Outcome::Transport {
                            at: Instant::now(),
                            error,
                        };
                        let _ = events.send(Event {
                            round,
                            puller: id,
                            outcome,
                        });
                        continue;
                    }
                };
            }
            let Some(open) = conn.as_mut() else {
                continue;
            };
            tokio::select! {
                outcome = pull(open, &target, after, &shared) => {
                    if matches!(outcome, Outcome::Transport { .. }) {
                        conn = None;
                    }
                    let _ = events.send(Event { round, puller: id, outcome });
                }
                changed = commands.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Abandoned mid-request: this connection's HTTP/1.1 state is unknown now.
                    conn = None;
                    pending = true;
                }
            }
        }
    }
}

async fn connect(addr: SocketAddr, gate: &Semaphore) -> Result<Conn, String> {
    let _permit = gate
        .acquire()
        .await
        .map_err(|_| "connect gate closed".to_string())?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr}: timed out after {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { sender, driver })
}

/// Sends the pull (again after each 304) until it is answered otherwise.
async fn pull(conn: &mut Conn, target: &Target, after: u64, shared: &Shared) -> Outcome {
    let transport = |error: String| Outcome::Transport {
        at: Instant::now(),
        error,
    };
    let mut first = true;
    loop {
        if let Err(e) = conn.sender.ready().await {
            return transport(format!("connection not ready: {e}"));
        }
        let request = Request::get(format!(
            "{CONFIG_PATH}?after={after}&wait={}",
            target.wait_secs
        ))
        .header(HOST, target.host.clone())
        .header(AUTHORIZATION, target.auth.clone())
        .body(Empty::<Bytes>::new());
        let request = match request {
            Ok(request) => request,
            Err(e) => return transport(format!("build request: {e}")),
        };
        if first {
            shared.sent.fetch_add(1, Ordering::Relaxed);
            first = false;
        } else {
            shared.repolls.fetch_add(1, Ordering::Relaxed);
        }
        let response = match conn.sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => return transport(format!("send / receive head: {e}")),
        };
        let status = response.status().as_u16();
        let body = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return transport(format!("receive body: {e}")),
        };
        let at = Instant::now();
        match status {
            200 => {
                return Outcome::Answered {
                    at,
                    version: leading_version(&body),
                }
            }
            304 => continue,
            _ => {
                let shown = &body[..body.len().min(BODY_SAMPLE)];
                return Outcome::Status {
                    at,
                    status,
                    body: String::from_utf8_lossy(shown).into_owned(),
                };
            }
        }
    }
}

/// The `version` of a pull answer, read cheaply from its start (`{"version":N,...`: the field
/// comes first), so that 10,000 answers arriving at once cost no JSON parsing.
pub fn leading_version(body: &[u8]) -> Option<u64> {
    let rest = body.strip_prefix(b"{\"version\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_leading_version() {
        assert_eq!(
            leading_version(br#"{"version":1234,"config_hash":"ab"}"#),
            Some(1234)
        );
        assert_eq!(
            leading_version(br#"{"config_hash":"ab","version":1}"#),
            None
        );
        assert_eq!(leading_version(br#"{"version":"x"}"#), None);
        assert_eq!(leading_version(b""), None);
    }
}
