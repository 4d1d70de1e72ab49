//! `kokoa agent`: the process on an origin machine, behind NAT. It registers once with an agent
//! token bound to its origin, follows its config from any replica (the same client as the
//! edge's, [`kokoa_pull`]), keeps the newest config on disk and serves it at start, and keeps a
//! WireGuard tunnel to every edge ([`Connector`]), which forwards tunnelled connections to the
//! origin's route targets and nowhere else.

mod edges;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{bail, Context};
use kokoa_pull::{
    AgentRole, ConfigSink, Control, ControlError, RegisterAgent, Registration, WgKeys,
};
use kokoa_store::pulled::{AgentConfig, Pulled};
use kokoa_tunnel::connector::{Connector, ConnectorConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::AgentArgs;

/// The config being served, if any.
type Current = Option<Arc<Pulled<AgentConfig>>>;

/// The agent's side of the puller: each installed config is published to the tunnel task. It
/// keeps no pull status (the agent has no status page; the puller logs its errors).
#[derive(Debug)]
struct AgentState {
    config: watch::Sender<Current>,
}

impl AgentState {
    fn new() -> Self {
        AgentState {
            config: watch::Sender::new(None),
        }
    }
}

impl ConfigSink<AgentConfig> for AgentState {
    fn version(&self) -> u64 {
        self.config.borrow().as_ref().map_or(0, |p| p.version)
    }

    fn install(&self, pulled: &Pulled<AgentConfig>) -> bool {
        self.config.send_if_modified(|current| {
            if current
                .as_ref()
                .is_some_and(|c| c.version >= pulled.version)
            {
                return false;
            }
            *current = Some(Arc::new(pulled.clone()));
            true
        })
    }
}

/// Runs an agent until `shutdown`: registers if it never did, serves the saved config at once
/// (if any), then follows the control plane.
pub async fn run(
    args: AgentArgs,
    token: Option<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    kokoa_store::private_file::create_dir(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    let keys = WgKeys::load_or_create(dir)?;
    let mut control = Control::<AgentRole>::new(&args.control)?;
    let registration = match Registration::load(dir)? {
        Some(r) => r,
        None => match register(&mut control, &args, token, &keys, &shutdown).await? {
            Some(r) => r,
            None => return Ok(()),
        },
    };

    let state = Arc::new(AgentState::new());
    kokoa_pull::serve_saved(dir, state.as_ref())?;
    let stop = shutdown.child_token();
    let tasks = TaskTracker::new();
    tasks.spawn(control.follow(
        registration.token.clone(),
        state.clone(),
        dir.clone(),
        stop.clone(),
    ));
    tasks.close();
    let served = serve(&state, keys, args.wg_listen, &registration.id, &stop).await;
    stop.cancel();
    tasks.wait().await;
    served
}

/// Registers with the agent token and saves the registration; `None` when stopped first.
async fn register(
    control: &mut Control<AgentRole>,
    args: &AgentArgs,
    token: Option<String>,
    keys: &WgKeys,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Registration>> {
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        bail!(
            "this agent is not registered yet: give it an agent token with --token or \
             KOKOA_TOKEN (make one with `kokoa token create --role agent --origin ORIGIN`)"
        );
    };
    let req = RegisterAgent {
        name: args.name.clone().unwrap_or_else(default_name),
        wg_public_key: keys.public_base64(),
    };
    let r = match control.register(&token, &req, shutdown).await {
        Ok(r) => r,
        Err(ControlError::Stopped) => return Ok(None),
        Err(ControlError::Refused { message, .. }) => {
            bail!("the control plane refused to register this agent: {message}")
        }
        Err(e) => return Err(e.into()),
    };
    r.save(&args.data_dir)?;
    tracing::info!(id = %r.id, name = %r.name, "registered");
    Ok(Some(r))
}

/// This machine's host name as an agent name, or `agent`.
fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .and_then(|host| kokoa_store::validate::name_from(&host))
        .unwrap_or_else(|| "agent".to_string())
}

/// The agent's own address in its origin's subnet.
fn tunnel_ip(config: &AgentConfig) -> Result<Ipv4Addr, String> {
    let text = config
        .agent
        .tunnel_ip
        .as_deref()
        .ok_or("the control plane gave this agent no tunnel address")?;
    text.parse()
        .map_err(|_| format!("the tunnel address {text:?} is not an IPv4 address"))
}

/// Starts the tunnel with the first config that has a tunnel address, then applies every newer
/// config to it until `stop`.
async fn serve(
    state: &AgentState,
    keys: WgKeys,
    listen: SocketAddr,
    id: &str,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut configs = state.config.subscribe();
    let Some((connector, address, mut current)) =
        start_tunnel(&mut configs, keys, listen, stop).await?
    else {
        return Ok(());
    };
    tracing::info!("agent running id={id} tunnel_ip={address}");
    loop {
        if let Some(pulled) = current.take() {
            if tunnel_ip(&pulled.config).is_ok_and(|ip| ip != address) {
                tracing::warn!(
                    version = pulled.version,
                    "the control plane moved this agent's tunnel address; restart the agent to use it"
                );
            }
            apply(&connector, &pulled);
        }
        tokio::select! {
            changed = configs.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                current = configs.borrow_and_update().clone();
            }
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

/// Waits for a config with a usable tunnel address and starts the tunnel with it; `None` when
/// stopped first.
async fn start_tunnel(
    configs: &mut watch::Receiver<Current>,
    keys: WgKeys,
    listen: SocketAddr,
    stop: &CancellationToken,
) -> anyhow::Result<Option<(Connector, Ipv4Addr, Current)>> {
    let mut waiting_told = false;
    loop {
        let current = configs.borrow_and_update().clone();
        match current {
            Some(pulled) => match tunnel_ip(&pulled.config) {
                Ok(address) => {
                    let connector = Connector::start(ConnectorConfig {
                        private_key: keys.secret,
                        address,
                        listen,
                    })
                    .await
                    .with_context(|| format!("cannot start the WireGuard tunnel on {listen}"))?;
                    return Ok(Some((connector, address, Some(pulled))));
                }
                Err(why) => {
                    tracing::warn!(version = pulled.version, %why, "waiting for a usable config")
                }
            },
            None if !waiting_told => {
                tracing::info!("waiting for the first config from the control plane");
                waiting_told = true;
            }
            None => {}
        }
        tokio::select! {
            changed = configs.changed() => {
                if changed.is_err() {
                    return Ok(None);
                }
            }
            _ = stop.cancelled() => return Ok(None),
        }
    }
}

/// Points the tunnel at the config's edges and targets.
fn apply(connector: &Connector, pulled: &Pulled<AgentConfig>) {
    let config = &pulled.config;
    let edges = edges::targets(&config.edges);
    let (dialled, targets) = (edges.len(), config.targets.len());
    connector.set_edges(edges);
    connector.set_targets(config.targets.clone());
    tracing::info!(
        version = pulled.version,
        edges = dialled,
        targets,
        "config applied"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kokoa_store::pulled::{AgentPeer, OriginView};

    fn pulled(version: u64, tunnel_ip: Option<&str>) -> Pulled<AgentConfig> {
        Pulled {
            version,
            config_hash: String::new(),
            stale: false,
            config: AgentConfig {
                agent: AgentPeer {
                    agent_id: "a_1".into(),
                    origin_id: "o_1".into(),
                    wg_public_key: "K".into(),
                    tunnel_ip: tunnel_ip.map(str::to_string),
                    allowed_ips: Vec::new(),
                },
                origin: OriginView {
                    id: "o_1".into(),
                    name: "home".into(),
                    subnet: None,
                },
                edges: Vec::new(),
                routes: Default::default(),
                targets: vec!["127.0.0.1:8080".into()],
            },
        }
    }

    #[test]
    fn only_newer_configs_are_installed_and_published() {
        let state = AgentState::new();
        let mut seen = state.config.subscribe();
        assert_eq!(state.version(), 0);
        assert!(state.install(&pulled(5, Some("10.64.0.2"))));
        assert!(seen.has_changed().expect("open"));
        let _ = seen.borrow_and_update();
        assert!(!state.install(&pulled(5, Some("10.64.0.2"))));
        assert!(!state.install(&pulled(4, Some("10.64.0.2"))));
        assert!(!seen.has_changed().expect("open"));
        assert_eq!(state.version(), 5);
        assert!(state.install(&pulled(6, None)));
        assert_eq!(state.version(), 6);
    }

    #[test]
    fn tunnel_addresses_are_checked() {
        assert_eq!(
            tunnel_ip(&pulled(1, Some("10.64.0.2")).config),
            Ok(Ipv4Addr::new(10, 64, 0, 2))
        );
        assert!(tunnel_ip(&pulled(1, None).config).is_err());
        assert!(tunnel_ip(&pulled(1, Some("fd00::2")).config).is_err());
    }

    #[test]
    fn default_names_are_valid() {
        assert!(kokoa_store::validate::validate_name(&default_name()).is_ok());
    }
}
