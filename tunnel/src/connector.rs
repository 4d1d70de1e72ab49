//! Agent side: keeps one multiplexed connection to every edge (dialled out through the
//! tunnel, so nothing on the origin listens on the internet) and forwards each stream an edge
//! opens to its target, only if that target is configured for this agent's origin.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rand::Rng;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::keys::{PublicKey, StaticSecret};
use crate::mux::{self, MuxSettings, Probe, TargetPolicy};
use crate::net::{PeerConfig, Tunnel, TunnelConfig, TunnelError};
use crate::MUX_PORT;

/// Persistent keepalive towards edges: keeps NAT mappings open.
pub const KEEPALIVE_SECS: u16 = 25;
/// Time to establish the connection to an edge.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between attempts to reach an edge grow from this...
const RETRY_MIN: Duration = Duration::from_millis(200);
/// ...to this.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A connection that lasted this long resets the wait.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// How to run the agent's tunnel.
#[derive(Clone)]
pub struct ConnectorConfig {
    pub private_key: StaticSecret,
    /// The agent's address inside its origin's subnet.
    pub address: Ipv4Addr,
    /// The UDP address to bind (normally `0.0.0.0:0`).
    pub listen: SocketAddr,
}

impl std::fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorConfig")
            .field("address", &self.address)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// An edge to stay connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTarget {
    pub id: String,
    pub public_key: PublicKey,
    /// Its public WireGuard address.
    pub endpoint: SocketAddr,
    /// Its address inside the tunnel.
    pub tunnel_ip: Ipv4Addr,
}

/// One edge's link as it is now.
#[derive(Debug, Clone)]
pub struct EdgeLinkStatus {
    pub id: String,
    pub connected: bool,
    pub last_handshake_secs: Option<u64>,
}

/// The targets this agent may forward to.
#[derive(Debug, Default)]
struct Targets(RwLock<HashSet<String>>);

impl TargetPolicy for Targets {
    fn allows(&self, target: &str) -> bool {
        self.0.read().contains(target)
    }
}

struct EdgeLink {
    target: EdgeTarget,
    connected: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

struct Inner {
    tunnel: Tunnel,
    settings: MuxSettings,
    targets: Arc<Targets>,
}

/// The agent's links to every edge. Dropping it stops them.
pub struct Connector {
    inner: Arc<Inner>,
    edges: Mutex<HashMap<[u8; 32], EdgeLink>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tunnel", &self.inner.tunnel)
            .finish_non_exhaustive()
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        for link in self.edges.lock().values() {
            link.task.abort();
        }
    }
}

impl Connector {
    /// Binds the tunnel; no edge is dialled until [`Connector::set_edges`].
    pub async fn start(config: ConnectorConfig) -> Result<Connector, TunnelError> {
        Connector::start_with(config, MuxSettings::default()).await
    }

    /// [`Connector::start`] with other mux settings.
    pub async fn start_with(
        config: ConnectorConfig,
        settings: MuxSettings,
    ) -> Result<Connector, TunnelError> {
        let tunnel = Tunnel::bind(TunnelConfig::new(
            config.listen,
            config.private_key,
            config.address,
        ))
        .await?;
        Ok(Connector {
            inner: Arc::new(Inner {
                tunnel,
                settings,
                targets: Arc::new(Targets::default()),
            }),
            edges: Mutex::new(HashMap::new()),
        })
    }

    /// The tunnel underneath.
    pub fn tunnel(&self) -> &Tunnel {
        &self.inner.tunnel
    }

    /// Makes the edges exactly `edges`: new ones are dialled, removed ones dropped.
    pub fn set_edges(&self, edges: Vec<EdgeTarget>) {
        self.inner.tunnel.set_peers(
            edges
                .iter()
                .map(|e| PeerConfig {
                    public_key: e.public_key,
                    endpoint: Some(e.endpoint),
                    allowed_ip: e.tunnel_ip,
                    keepalive: Some(KEEPALIVE_SECS),
                })
                .collect(),
        );
        let mut links = self.edges.lock();
        let wanted: HashMap<[u8; 32], EdgeTarget> = edges
            .into_iter()
            .map(|e| (*e.public_key.as_bytes(), e))
            .collect();
        links.retain(|key, link| {
            // An edge whose tunnel address changed was rebuilt by set_peers: redial it.
            let keep = wanted
                .get(key)
                .is_some_and(|e| e.tunnel_ip == link.target.tunnel_ip);
            if !keep {
                link.task.abort();
            }
            keep
        });
        for (key, target) in wanted {
            if let Some(link) = links.get_mut(&key) {
                link.target = target;
                continue;
            }
            let connected = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(stay_connected(
                self.inner.clone(),
                target.clone(),
                connected.clone(),
            ));
            links.insert(
                key,
                EdgeLink {
                    target,
                    connected,
                    task,
                },
            );
        }
    }

    /// Replaces the targets streams may be forwarded to (`HOST:PORT`, as configured).
    pub fn set_targets(&self, targets: Vec<String>) {
        *self.inner.targets.0.write() = targets.into_iter().collect();
    }

    /// Every edge's link.
    pub fn status(&self) -> Vec<EdgeLinkStatus> {
        let peers: HashMap<[u8; 32], Option<Duration>> = self
            .inner
            .tunnel
            .peers()
            .into_iter()
            .map(|p| (*p.public_key.as_bytes(), p.last_handshake))
            .collect();
        let mut all: Vec<EdgeLinkStatus> = self
            .edges
            .lock()
            .iter()
            .map(|(key, link)| EdgeLinkStatus {
                id: link.target.id.clone(),
                connected: link.connected.load(Ordering::Acquire),
                last_handshake_secs: peers.get(key).copied().flatten().map(|d| d.as_secs()),
            })
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

/// Dials `edge` and serves its streams; after every failure or disconnect, starts a fresh
/// handshake (the edge may have restarted and lost our session) and dials again.
///
/// When the edge starts a new session itself, the connection is probed at once: a restarted
/// edge (which greets the agents it knew) answers with a TCP reset, and the agent redials
/// within a round trip instead of waiting for its keep-alive to time out.
async fn stay_connected(inner: Arc<Inner>, edge: EdgeTarget, connected: Arc<AtomicBool>) {
    let remote = SocketAddrV4::new(edge.tunnel_ip, MUX_PORT);
    let mut wait = RETRY_MIN;
    let mut edge_handshakes = inner.tunnel.peer_handshakes();
    loop {
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            inner.tunnel.connect(&edge.public_key, remote),
        )
        .await
        {
            Ok(Ok(stream)) => {
                connected.store(true, Ordering::Release);
                tracing::info!(edge = %edge.id, "connected to edge");
                let policy: Arc<dyn TargetPolicy> = inner.targets.clone();
                let probe = Probe::default();
                let serving = mux::serve_until(
                    stream,
                    &inner.settings,
                    policy,
                    std::future::pending(),
                    probe.clone(),
                );
                let ended =
                    probe_on_new_session(serving, &mut edge_handshakes, &edge, &probe).await;
                connected.store(false, Ordering::Release);
                match ended {
                    Ok(()) => tracing::info!(edge = %edge.id, "edge closed the connection"),
                    Err(e) => tracing::warn!(edge = %edge.id, error = %e, "lost the edge"),
                }
            }
            Ok(Err(e)) => tracing::debug!(edge = %edge.id, error = %e, "edge not reachable"),
            Err(_) => tracing::debug!(edge = %edge.id, "edge did not answer"),
        }
        if started.elapsed() >= STABLE_AFTER {
            wait = RETRY_MIN;
        }
        inner.tunnel.rehandshake(&edge.public_key);
        let jittered = wait.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        tokio::time::sleep(jittered).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Drives `serving` to its end, asking `probe` for a PING whenever `edge` starts a new
/// session (or when its notices were missed).
async fn probe_on_new_session<F: std::future::Future>(
    serving: F,
    handshakes: &mut broadcast::Receiver<PublicKey>,
    edge: &EdgeTarget,
    probe: &Probe,
) -> F::Output {
    tokio::pin!(serving);
    let mut following = true;
    loop {
        tokio::select! {
            ended = &mut serving => return ended,
            notice = handshakes.recv(), if following => match notice {
                Ok(key) if key == edge.public_key => probe.now(),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => probe.now(),
                Err(broadcast::error::RecvError::Closed) => following = false,
            },
        }
    }
}
