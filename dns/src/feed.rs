//! Serves the DNS from the replica's applied state: a `DnsService` kept in step with it (on
//! every new state version, from the store's version watch, the state is read on a blocking
//! thread, a `ZoneSnapshot` built and published) behind the listeners.

use std::sync::Arc;

use kokoa_store::{StateDb, StoreError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::catalog::DnsService;
use crate::listener::DnsListeners;
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
async fn publish_current(state: &Arc<StateDb>, service: &DnsService) {
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

/// Answers on `listeners` from `state` until `shutdown`: the first snapshot is published before
/// the first query is read (a restarted replica answers from the state it has at once, never
/// REFUSED for want of zones; queries wait in the sockets meanwhile), then a new one whenever
/// `versions` changes.
pub async fn serve_state(
    listeners: DnsListeners,
    state: Arc<StateDb>,
    mut versions: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let service = DnsService::new();
    versions.borrow_and_update();
    publish_current(&state, &service).await;
    let follow = async {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = versions.changed() => if changed.is_err() { return },
            }
            versions.borrow_and_update();
            publish_current(&state, &service).await;
        }
    };
    tokio::join!(follow, listeners.serve(service.clone(), shutdown.clone()));
}
