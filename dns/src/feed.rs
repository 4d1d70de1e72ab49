//! Keeps a `DnsService` in step with the replica's applied state: on every new state version
//! (the store's version watch) it reads the state on a blocking thread, builds a `ZoneSnapshot`
//! and publishes it.

use std::sync::Arc;

use kokoa_store::{StateDb, StoreError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::catalog::DnsService;
use crate::snapshot::{StateView, ZoneSnapshot};

/// Reads what the DNS answers from, in one consistent read.
pub fn read_view(state: &StateDb) -> Result<StateView, StoreError> {
    let r = state.reader()?;
    Ok(StateView {
        version: r.version()?,
        zones: r.dns_zones()?,
        routes: r.routes()?,
        origins: r.origins()?,
        edges: r.edge_nodes()?,
        health: r.edge_health()?,
        records: r.dns_records()?,
        settings: r.settings()?,
        replicas: r.replicas()?,
    })
}

/// Builds the snapshot of the state as it is now and publishes it.
pub async fn publish_current(state: &Arc<StateDb>, service: &DnsService) {
    let db = state.clone();
    match tokio::task::spawn_blocking(move || read_view(&db)).await {
        Ok(Ok(view)) => {
            let version = view.version;
            service.publish(ZoneSnapshot::build(&view));
            tracing::debug!(version, "DNS snapshot published");
        }
        Ok(Err(error)) => tracing::warn!(%error, "cannot read the state for DNS"),
        Err(error) => tracing::warn!(%error, "DNS state read failed"),
    }
}

/// Rebuilds and publishes the snapshot whenever `versions` changes, until `shutdown`.
pub async fn follow_state(
    state: Arc<StateDb>,
    mut versions: watch::Receiver<u64>,
    service: DnsService,
    shutdown: CancellationToken,
) {
    loop {
        versions.borrow_and_update();
        publish_current(&state, &service).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = versions.changed() => if changed.is_err() { return },
        }
    }
}
