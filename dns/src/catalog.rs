//! `DnsService`: the published snapshot and a hickory `Catalog` with one `SnapshotZone` per
//! managed zone. Both are swapped (`ArcSwap`), never locked: a new state version swaps the
//! snapshot; a change in the set of zones also swaps in a freshly built catalog.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_server::net::runtime::Time;
use hickory_server::proto::rr::LowerName;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::Catalog;

use crate::handler::SnapshotZone;
use crate::snapshot::ZoneSnapshot;

/// The DNS answers of one replica: cheap to clone, shared by the listeners and the feed.
#[derive(Clone)]
pub struct DnsService {
    snapshot: Arc<ArcSwap<ZoneSnapshot>>,
    catalog: Arc<ArcSwap<Catalog>>,
}

impl std::fmt::Debug for DnsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsService")
            .field("version", &self.snapshot.load().version())
            .finish_non_exhaustive()
    }
}

impl Default for DnsService {
    fn default() -> Self {
        Self::new()
    }
}

impl DnsService {
    /// A service with no zones (every query is REFUSED until a snapshot is published).
    pub fn new() -> Self {
        Self {
            snapshot: Arc::new(ArcSwap::from_pointee(ZoneSnapshot::default())),
            catalog: Arc::new(ArcSwap::from_pointee(Catalog::new())),
        }
    }

    /// The snapshot being answered from.
    pub fn current(&self) -> Arc<ZoneSnapshot> {
        self.snapshot.load_full()
    }

    /// Answers from `snapshot` from now on.
    pub fn publish(&self, snapshot: ZoneSnapshot) {
        let before: BTreeSet<LowerName> = self.snapshot.load().origins().cloned().collect();
        let after: BTreeSet<LowerName> = snapshot.origins().cloned().collect();
        self.snapshot.store(Arc::new(snapshot));
        if before != after {
            let mut catalog = Catalog::new();
            for origin in &after {
                let zone = SnapshotZone::new(origin.clone(), self.snapshot.clone());
                catalog.upsert(origin.clone(), vec![Arc::new(zone)]);
            }
            self.catalog.store(Arc::new(catalog));
            tracing::info!(zones = ?after.iter().map(ToString::to_string).collect::<Vec<_>>(), "DNS zones changed");
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsService {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let catalog = self.catalog.load_full();
        catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}
