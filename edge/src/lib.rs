//! `kokoa edge`: the process internet users reach. It registers with the control plane, pulls
//! its config from any replica (long-poll), keeps the newest config on disk, and serves HTTP and
//! HTTPS from it: TLS by SNI, routing by Host, proxying to each route's origin. Config changes
//! swap the routing table and certificates atomically; the edge keeps serving its last config
//! while no replica answers.

pub mod agent_endpoints;
pub mod health;
pub mod limits;
pub mod live;
pub mod pages;
pub mod proxy;
pub mod routing;
pub mod tls;
pub mod tunnel;
pub mod upstream;
pub mod workers;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use kokoa_pull::{
    Control, ControlError, EdgeRole, IdentityError, RegisterEdge, Registration, SavedError, WgKeys,
};

use crate::live::Live;
use crate::proxy::{Proxy, ProxySettings};
use crate::tunnel::EdgeTunnel;
use crate::upstream::{ByKind, DirectDialer};
use crate::workers::Workers;

/// How to run an edge.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// API URLs of the replicas.
    pub control: Vec<String>,
    /// A bootstrap edge token (used once, to register).
    pub token: Option<String>,
    pub data_dir: PathBuf,
    /// The address clients and agents reach this edge at.
    pub public_ip: IpAddr,
    /// Its name in the control plane (default: `edge-` and the public IP).
    pub name: Option<String>,
    pub http_listen: SocketAddr,
    pub https_listen: SocketAddr,
    /// The WireGuard UDP address (its port is registered; the tunnel comes with agents).
    pub wg_listen: SocketAddr,
    pub proxy: ProxySettings,
    /// Data-plane threads (each with its own listeners).
    pub workers: usize,
}

/// Why the edge could not run.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Saved(#[from] SavedError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create the data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("this edge is not registered yet: give a bootstrap edge token with --token (kokoa token create --role edge)")]
    NoToken,
}

/// The default name of an edge at `ip`: `edge-192-0-2-1`.
pub fn default_name(ip: IpAddr) -> String {
    kokoa_store::validate::name_from(&format!("edge-{ip}")).unwrap_or_else(|| "edge".into())
}

/// `count` listeners on `addr`, and the address they got.
fn bind(
    addr: SocketAddr,
    count: usize,
) -> Result<(Vec<std::net::TcpListener>, SocketAddr), EdgeError> {
    let listeners =
        workers::bind(addr, count).map_err(|source| EdgeError::Bind { addr, source })?;
    let actual = listeners[0].local_addr().unwrap_or(addr);
    Ok((listeners, actual))
}

/// Runs an edge until `shutdown`: serves the saved config at once (if any), registers if it
/// never did, then follows the control plane.
pub async fn run(opts: EdgeOptions, shutdown: CancellationToken) -> Result<(), EdgeError> {
    kokoa_store::private_file::create_dir(&opts.data_dir).map_err(|source| EdgeError::DataDir {
        path: opts.data_dir.clone(),
        source,
    })?;
    let keys = WgKeys::load_or_create(&opts.data_dir)?;
    let mut control = Control::<EdgeRole>::new(&opts.control)?;
    let count = opts.workers.max(1);
    let (http, http_addr) = bind(opts.http_listen, count)?;
    let (https, https_addr) = bind(opts.https_listen, count)?;

    let registration = match Registration::load(&opts.data_dir)? {
        Some(r) => r,
        None => {
            let token = opts.token.as_deref().ok_or(EdgeError::NoToken)?;
            let req = RegisterEdge {
                name: opts
                    .name
                    .clone()
                    .unwrap_or_else(|| default_name(opts.public_ip)),
                public_ip: opts.public_ip.to_string(),
                wg_public_key: keys.public_base64(),
                wg_port: opts.wg_listen.port(),
                http_port: http_addr.port(),
            };
            let r = control.register(token, &req, &shutdown).await?;
            r.save(&opts.data_dir)?;
            tracing::info!(id = %r.id, name = %r.name, "registered");
            r
        }
    };

    let live = Arc::new(Live::new(registration.id.clone()));
    kokoa_pull::serve_saved(&opts.data_dir, live.as_ref())?;

    let edge_tunnel = Arc::new(EdgeTunnel::new(
        keys.secret.clone(),
        opts.wg_listen,
        opts.data_dir.clone(),
    ));
    live.attach_tunnel(edge_tunnel.clone());
    let dialer = ByKind {
        direct: Arc::new(DirectDialer),
        tunnel: edge_tunnel.clone(),
    };
    let proxy = Proxy::with_dialer(live.clone(), opts.proxy.clone(), Arc::new(dialer));
    let workers = Workers::start(
        proxy,
        tls::server_config(live.clone()),
        http.into_iter().zip(https).collect(),
        shutdown.clone(),
    )
    .map_err(|source| EdgeError::Bind {
        addr: http_addr,
        source,
    })?;
    let tasks = TaskTracker::new();
    tasks.spawn(edge_tunnel.follow(live.tunnel_plans(), shutdown.clone()));
    tasks.spawn(control.follow(
        registration.token.clone(),
        live.clone(),
        opts.data_dir.clone(),
        shutdown.clone(),
    ));
    tasks.close();
    tracing::info!(
        "edge listening http={http_addr} https={https_addr} id={}",
        registration.id
    );
    tasks.wait().await;
    workers.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid_edge_names() {
        assert_eq!(
            default_name("192.0.2.1".parse().expect("ip")),
            "edge-192-0-2-1"
        );
        let v6 = default_name("2001:db8::1".parse().expect("ip"));
        assert_eq!(v6, "edge-2001-db8--1");
        assert!(kokoa_store::validate::validate_name(&v6).is_ok());
    }
}
