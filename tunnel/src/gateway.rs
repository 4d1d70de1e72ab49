//! Edge side: the agents' connections come in over the tunnel (each agent dials the edge, so
//! the origin needs no open port), each becomes a multiplexed HTTP/2 connection, and
//! [`Gateway::open`] opens a stream to a target through one of an origin's connected agents,
//! taking them in turn and skipping one whose connection is gone.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::keys::PublicKey;
use crate::mux::{self, MuxClient, MuxSettings, MuxStream, OpenError};
use crate::net::{Listener, PeerConfig, Tunnel, TunnelConfig, TunnelError};
use crate::MUX_PORT;

/// An agent the edge accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    pub id: String,
    pub origin_id: String,
    pub public_key: PublicKey,
    /// Its address inside its origin's subnet: the only source accepted from it.
    pub tunnel_ip: Ipv4Addr,
}

/// An agent as the edge sees it now.
#[derive(Debug, Clone)]
pub struct AgentStatus {
    pub id: String,
    pub origin_id: String,
    /// Its multiplexed connection is up.
    pub connected: bool,
    pub last_handshake: Option<Duration>,
    pub endpoint: Option<SocketAddr>,
}

/// Why no stream was opened.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No agent of the origin is connected.
    #[error("no agent of origin {0} is connected")]
    NoAgent(String),
    #[error(transparent)]
    Open(#[from] OpenError),
}

struct AgentState {
    spec: AgentSpec,
    /// The newest connection.
    mux: Option<AgentConnection>,
}

/// An agent's mux connection as the table holds it.
struct AgentConnection {
    generation: u64,
    client: MuxClient,
    /// Dropping it (the agent connected again, or was removed) closes the connection: an agent
    /// keeps one connection per edge, so its older one is dead even if no keep-alive has timed
    /// out yet, and whatever still uses it (pooled HTTP connections over its streams) must fail
    /// now rather than with the next request.
    _close: oneshot::Sender<()>,
}

struct Inner {
    tunnel: Tunnel,
    settings: MuxSettings,
    agents: RwLock<HashMap<[u8; 32], AgentState>>,
    next: AtomicUsize,
    generation: AtomicU64,
}

/// The edge's end of every agent's tunnel. Dropping it stops its tasks.
pub struct Gateway {
    inner: Arc<Inner>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("tunnel", &self.inner.tunnel)
            .finish_non_exhaustive()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Gateway {
    /// Binds the tunnel and accepts agents' connections on [`MUX_PORT`].
    pub async fn start(
        config: TunnelConfig,
        settings: MuxSettings,
    ) -> Result<Gateway, TunnelError> {
        let tunnel = Tunnel::bind(config).await?;
        let listener = tunnel.listen(MUX_PORT)?;
        let inner = Arc::new(Inner {
            tunnel,
            settings,
            agents: RwLock::new(HashMap::new()),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(inner.clone(), listener));
        Ok(Gateway { inner, accept })
    }

    /// The tunnel underneath (address, counters, peers).
    pub fn tunnel(&self) -> &Tunnel {
        &self.inner.tunnel
    }

    /// Makes the accepted agents exactly `agents`; a removed agent's tunnel is torn down.
    pub fn set_agents(&self, agents: Vec<AgentSpec>) {
        self.inner.tunnel.set_peers(
            agents
                .iter()
                .map(|a| PeerConfig {
                    public_key: a.public_key,
                    endpoint: None,
                    allowed_ip: a.tunnel_ip,
                    keepalive: None,
                })
                .collect(),
        );
        let mut table = self.inner.agents.write();
        let wanted: HashMap<[u8; 32], AgentSpec> = agents
            .into_iter()
            .map(|a| (*a.public_key.as_bytes(), a))
            .collect();
        table.retain(|key, state| match wanted.get(key) {
            Some(spec) => spec.tunnel_ip == state.spec.tunnel_ip,
            None => false,
        });
        for (key, spec) in wanted {
            table
                .entry(key)
                .and_modify(|state| state.spec = spec.clone())
                .or_insert(AgentState { spec, mux: None });
        }
    }

    /// Opens a stream to `target` through a connected agent of `origin_id`, trying the next
    /// one when an agent's connection turns out to be gone.
    pub async fn open(&self, origin_id: &str, target: &str) -> Result<MuxStream, GatewayError> {
        let mut candidates: Vec<MuxClient> = {
            let table = self.inner.agents.read();
            table
                .values()
                .filter(|a| a.spec.origin_id == origin_id)
                .filter_map(|a| a.mux.as_ref().map(|m| m.client.clone()))
                .filter(|c| !c.is_closed())
                .collect()
        };
        if candidates.is_empty() {
            return Err(GatewayError::NoAgent(origin_id.to_string()));
        }
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
        candidates.rotate_left(start);
        let mut last = OpenError::Closed;
        for client in candidates {
            match client.open(target).await {
                Ok(stream) => return Ok(stream),
                Err(e) if e.is_connection_failure() || matches!(e, OpenError::Timeout) => {
                    last = e;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.into())
    }

    /// Every agent, connected or not.
    pub fn status(&self) -> Vec<AgentStatus> {
        let peers: HashMap<[u8; 32], _> = self
            .inner
            .tunnel
            .peers()
            .into_iter()
            .map(|p| (*p.public_key.as_bytes(), p))
            .collect();
        let table = self.inner.agents.read();
        let mut all: Vec<AgentStatus> = table
            .iter()
            .map(|(key, a)| {
                let peer = peers.get(key);
                AgentStatus {
                    id: a.spec.id.clone(),
                    origin_id: a.spec.origin_id.clone(),
                    connected: a.mux.as_ref().is_some_and(|m| !m.client.is_closed()),
                    last_handshake: peer.and_then(|p| p.last_handshake),
                    endpoint: peer.and_then(|p| p.endpoint),
                }
            })
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

/// Turns each accepted connection into the agent's current mux connection.
async fn accept_loop(inner: Arc<Inner>, mut listener: Listener) {
    while let Some((key, stream)) = listener.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            let id = match inner.agents.read().get(key.as_bytes()) {
                Some(a) => a.spec.id.clone(),
                None => return,
            };
            let (client, driver) = match mux::client(stream, &inner.settings).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(agent = %id, error = %e, "agent connection failed to start");
                    return;
                }
            };
            let generation = inner.generation.fetch_add(1, Ordering::Relaxed);
            let (close, closed) = oneshot::channel();
            let replaced = match inner.agents.write().get_mut(key.as_bytes()) {
                Some(a) => a.mux.replace(AgentConnection {
                    generation,
                    client,
                    _close: close,
                }),
                None => return,
            };
            if replaced.is_some() {
                tracing::info!(agent = %id, "agent connected again: its previous connection is closed");
            } else {
                tracing::info!(agent = %id, "agent connected");
            }
            drop(replaced);
            let ended = tokio::select! {
                ended = driver => ended,
                _ = closed => return,
            };
            let mut table = inner.agents.write();
            if let Some(a) = table.get_mut(key.as_bytes()) {
                if a.mux.as_ref().is_some_and(|m| m.generation == generation) {
                    a.mux = None;
                    match ended {
                        Ok(()) => tracing::info!(agent = %id, "agent disconnected"),
                        Err(e) => tracing::warn!(agent = %id, error = %e, "agent connection lost"),
                    }
                }
            }
        });
    }
}
