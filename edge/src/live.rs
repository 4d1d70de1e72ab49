//! What the edge is serving right now: the routing table and the certificates, each swapped
//! atomically when a newer config arrives (readers never lock), and how the pulls are going.

use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use kokoa_pull::ConfigSink;
pub use kokoa_pull::PullStatus;
use kokoa_store::pulled::{EdgeConfig, Pulled};

use crate::routing::RouteTable;
use crate::tls::CertTable;
use crate::tunnel::{EdgeTunnel, TunnelPlan};

/// The edge's live state, shared by the listeners, the puller and `/health`.
#[derive(Debug)]
pub struct Live {
    routes: ArcSwap<RouteTable>,
    certs: ArcSwap<CertTable>,
    status: Mutex<PullStatus>,
    /// What the newest config asks of the tunnel.
    tunnel_plan: tokio::sync::watch::Sender<Arc<TunnelPlan>>,
    tunnel: OnceLock<Arc<EdgeTunnel>>,
    /// This edge's id (from its registration).
    pub edge_id: String,
}

impl Live {
    /// Nothing to serve yet.
    pub fn new(edge_id: String) -> Self {
        Live {
            routes: ArcSwap::from_pointee(RouteTable::default()),
            certs: ArcSwap::from_pointee(CertTable::default()),
            status: Mutex::new(PullStatus::default()),
            tunnel_plan: tokio::sync::watch::Sender::new(Arc::default()),
            tunnel: OnceLock::new(),
            edge_id,
        }
    }

    /// The routing table now.
    pub fn routes(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.routes.load()
    }

    /// The certificates now.
    pub fn certs(&self) -> arc_swap::Guard<Arc<CertTable>> {
        self.certs.load()
    }

    /// The version being served (0: none).
    pub fn version(&self) -> u64 {
        self.routes.load().version
    }

    /// Serves `pulled` from now on, if it is newer than what is served; returns whether it was.
    /// Certificates are swapped before routes, so a new route never meets a missing certificate;
    /// they are parsed again only when the set of certificates changed.
    pub fn install(&self, pulled: &Pulled<EdgeConfig>) -> bool {
        if pulled.version <= self.version() {
            return false;
        }
        let certs = &pulled.config.certificates;
        if !self.certs.load().built_from(certs) {
            self.certs.store(Arc::new(CertTable::new(certs)));
        }
        self.routes
            .store(Arc::new(RouteTable::new(pulled.version, &pulled.config)));
        let plan = TunnelPlan::from_config(&pulled.config);
        self.tunnel_plan.send_if_modified(|old| {
            let changed = **old != plan;
            if changed {
                *old = Arc::new(plan);
            }
            changed
        });
        true
    }

    /// The tunnel's plan now and after every change.
    pub fn tunnel_plans(&self) -> tokio::sync::watch::Receiver<Arc<TunnelPlan>> {
        self.tunnel_plan.subscribe()
    }

    /// Makes `tunnel` the one `/health` reports (once).
    pub fn attach_tunnel(&self, tunnel: Arc<EdgeTunnel>) {
        let _ = self.tunnel.set(tunnel);
    }

    /// The tunnel, once attached.
    pub fn tunnel(&self) -> Option<&Arc<EdgeTunnel>> {
        self.tunnel.get()
    }

    pub fn status(&self) -> PullStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the pull status.
    pub fn update_status(&self, f: impl FnOnce(&mut PullStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The puller's view of the edge: configs go into the routing table and the certificates.
impl ConfigSink<EdgeConfig> for Live {
    fn version(&self) -> u64 {
        Live::version(self)
    }

    fn install(&self, pulled: &Pulled<EdgeConfig>) -> bool {
        let installed = Live::install(self, pulled);
        if installed {
            tracing::info!(
                version = pulled.version,
                routes = pulled.config.routes.len(),
                certificates = pulled.config.certificates.len(),
                "serving a new config"
            );
        }
        installed
    }

    fn update_status(&self, f: impl FnOnce(&mut PullStatus)) {
        Live::update_status(self, f)
    }
}
