//! The edge's end of the agents' WireGuard tunnels: a [`Gateway`] started once a config gives
//! this edge its tunnel address, kept in step with the config's agents, and used as the
//! [`Dialer`] of tunnel origins (each request goes through one of the origin's connected
//! agents, in turn). The agents' addresses are saved in the data dir
//! ([`AgentEndpoints`]); a restarted edge greets them from there, and they reconnect at once.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures::future::BoxFuture;
use kokoa_store::pulled::{Backend, EdgeConfig};
use kokoa_tunnel::gateway::{AgentSpec, AgentStatus, Gateway, GatewayError};
use kokoa_tunnel::mux::{MuxSettings, OpenError};
use kokoa_tunnel::{StaticSecret, TunnelConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::agent_endpoints::AgentEndpoints;
use crate::upstream::{BoxStream, DialError, Dialer};

/// How long the edge waits for an agent to answer a new stream before trying the next agent
/// (the proxy's own connect timeout bounds the whole dial).
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the agents' addresses are checked, and saved when they changed.
const SAVE_ENDPOINTS_EVERY: Duration = Duration::from_secs(1);

/// What a config asks of the tunnel: this edge's address in it, and the agents it accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelPlan {
    pub address: Option<Ipv4Addr>,
    pub agents: Vec<AgentSpec>,
}

impl TunnelPlan {
    /// The plan in `config`; agents with a bad key or no address are left out (and logged).
    pub fn from_config(config: &EdgeConfig) -> TunnelPlan {
        let address = config
            .edge
            .tunnel_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok());
        let agents = config
            .peers
            .iter()
            .filter_map(|peer| {
                let key = kokoa_tunnel::keys::parse_public(&peer.wg_public_key);
                let ip = peer.tunnel_ip.as_deref().map(str::parse::<Ipv4Addr>);
                match (key, ip) {
                    (Ok(public_key), Some(Ok(tunnel_ip))) => Some(AgentSpec {
                        id: peer.agent_id.clone(),
                        origin_id: peer.origin_id.clone(),
                        public_key,
                        tunnel_ip,
                    }),
                    _ => {
                        tracing::warn!(agent = %peer.agent_id, "agent left out: bad key or no tunnel address");
                        None
                    }
                }
            })
            .collect();
        TunnelPlan { address, agents }
    }
}

/// The edge's tunnel: absent until a config gives the edge its tunnel address.
pub struct EdgeTunnel {
    secret: StaticSecret,
    listen: SocketAddr,
    /// Where the agents' endpoints are saved.
    data_dir: PathBuf,
    gateway: ArcSwapOption<Gateway>,
}

impl std::fmt::Debug for EdgeTunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeTunnel")
            .field("listen", &self.listen)
            .field(
                "gateway",
                &self.gateway.load().as_ref().map(|g| g.tunnel().address()),
            )
            .finish_non_exhaustive()
    }
}

impl EdgeTunnel {
    /// A tunnel that will bind `listen` (UDP) with the edge's WireGuard key, saving the
    /// agents' addresses in `data_dir`.
    pub fn new(secret: StaticSecret, listen: SocketAddr, data_dir: PathBuf) -> EdgeTunnel {
        EdgeTunnel {
            secret,
            listen,
            data_dir,
            gateway: ArcSwapOption::empty(),
        }
    }

    /// Applies every plan the config brings, and saves the agents' addresses when they
    /// change, until `shutdown`.
    pub async fn follow(
        self: Arc<Self>,
        mut plans: watch::Receiver<Arc<TunnelPlan>>,
        shutdown: CancellationToken,
    ) {
        let mut saved = AgentEndpoints::load(&self.data_dir);
        let mut greeted = false;
        let mut save_tick = tokio::time::interval(SAVE_ENDPOINTS_EVERY);
        save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut plan_changed = true;
        loop {
            if plan_changed {
                let plan = plans.borrow_and_update().clone();
                self.apply(&plan).await;
                if !greeted {
                    greeted = self.greet(&saved);
                }
            }
            tokio::select! {
                changed = plans.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    plan_changed = true;
                }
                _ = save_tick.tick() => {
                    plan_changed = false;
                    self.save_endpoints(&mut saved);
                }
                _ = shutdown.cancelled() => break,
            }
        }
        self.save_endpoints(&mut saved);
    }

    /// Greets the agents at their saved addresses once the gateway is up; whether it is.
    fn greet(&self, saved: &AgentEndpoints) -> bool {
        let Some(gateway) = self.gateway.load_full() else {
            return false;
        };
        if !saved.is_empty() {
            tracing::info!(
                agents = saved.len(),
                "greeting the agents at their last addresses"
            );
        }
        for (key, endpoint) in saved.entries() {
            gateway.tunnel().greet(&key, endpoint);
        }
        true
    }

    /// Saves the agents' current addresses when they differ from `saved`.
    fn save_endpoints(&self, saved: &mut AgentEndpoints) {
        let Some(gateway) = self.gateway.load_full() else {
            return;
        };
        let current = saved.updated(&gateway.tunnel().peers());
        if current == *saved {
            return;
        }
        match current.save(&self.data_dir) {
            Ok(()) => *saved = current,
            Err(e) => tracing::warn!(error = %e, "cannot save the agents' addresses"),
        }
    }

    async fn apply(&self, plan: &TunnelPlan) {
        let gateway = match (self.gateway.load_full(), plan.address) {
            (Some(gateway), address) => {
                if address.is_some_and(|a| a != gateway.tunnel().address()) {
                    tracing::warn!("the edge's tunnel address changed; restart the edge to use it");
                }
                gateway
            }
            (None, None) => return,
            (None, Some(address)) => {
                let settings = MuxSettings {
                    open_timeout: OPEN_TIMEOUT,
                    ..MuxSettings::default()
                };
                let config = TunnelConfig::new(self.listen, self.secret.clone(), address);
                match Gateway::start(config, settings).await {
                    Ok(gateway) => {
                        tracing::info!(
                            listen = %gateway.tunnel().local_addr(),
                            %address,
                            "tunnel up: waiting for agents"
                        );
                        let gateway = Arc::new(gateway);
                        self.gateway.store(Some(gateway.clone()));
                        gateway
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the tunnel; tunnel origins are unreachable");
                        return;
                    }
                }
            }
        };
        gateway.set_agents(plan.agents.clone());
    }

    /// Every agent the edge accepts, and whether it is connected.
    pub fn agents(&self) -> Vec<AgentStatus> {
        self.gateway
            .load()
            .as_ref()
            .map(|g| g.status())
            .unwrap_or_default()
    }
}

impl Dialer for EdgeTunnel {
    fn dial<'a>(&'a self, backend: &'a Backend) -> BoxFuture<'a, Result<BoxStream, DialError>> {
        Box::pin(async move {
            let no_tunnel = || DialError::NoTunnel {
                origin: backend.origin.clone(),
            };
            let gateway = self.gateway.load_full().ok_or_else(no_tunnel)?;
            match gateway.open(&backend.origin_id, &backend.target).await {
                Ok(stream) => Ok(Box::new(stream) as BoxStream),
                Err(GatewayError::NoAgent(_)) | Err(GatewayError::Open(OpenError::Closed)) => {
                    Err(no_tunnel())
                }
                Err(GatewayError::Open(OpenError::NotAllowed(target))) => {
                    Err(DialError::NotAllowed(target))
                }
                Err(GatewayError::Open(OpenError::Refused(_))) => Err(DialError::Refused),
                Err(GatewayError::Open(OpenError::Timeout)) => Err(DialError::Timeout),
                Err(GatewayError::Open(OpenError::Protocol(m))) => {
                    Err(DialError::Io(std::io::Error::other(m)))
                }
            }
        })
    }
}
