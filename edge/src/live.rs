//! What the edge is serving right now: the routing table and the certificates, each swapped
//! atomically when a newer config arrives (readers never lock), and how the pulls are going.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use kokoa_store::pulled::{EdgeConfig, Pulled};

use crate::routing::RouteTable;
use crate::tls::CertTable;

/// How the config pulls are going, for `/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullStatus {
    /// Unix seconds of the last answer from a replica (a config or "no change"); 0: never.
    pub last_pulled: u64,
    /// The replica that answered last.
    pub control: Option<String>,
    /// The last error, cleared by the next answer.
    pub last_error: Option<String>,
    /// Whether the config being served was loaded from disk and not yet confirmed by a replica.
    pub from_disk: bool,
}

/// The edge's live state, shared by the listeners, the puller and `/health`.
#[derive(Debug)]
pub struct Live {
    routes: ArcSwap<RouteTable>,
    certs: ArcSwap<CertTable>,
    status: Mutex<PullStatus>,
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
        true
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
