//! Config pulls for edges and agents: what each gets, and the long-poll that delivers it.
//!
//! `GET ...?after=V&wait=S` answers at once when this replica's version is above `V`, otherwise
//! waits up to `S` seconds for a change. It never answers with a version below `V`: a replica
//! that is behind waits to catch up and, if it cannot within `S`, answers 503 `retryable` so
//! the client tries another replica. With no change in time it answers 304. Payloads are
//! deterministic (sorted) and carry `config_hash`, the SHA-256 of the payload without the
//! version fields, so clients can tell a real change from a version bump elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kokoa_store::pulled::{
    AgentConfig, AgentPeer, Backend, EdgeCertificate, EdgeConfig, EdgePeer, OriginView, Pulled,
};
use kokoa_store::state_db::StateReader;
use kokoa_store::StoreError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::certs::Sealer;
use crate::pull_cache::Built;
use crate::{ApiContext, ApiError};

/// Longest `wait` accepted.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// A replica that has not heard from a leader for this long marks its answers `stale`.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// `?after=V&wait=S`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullQuery {
    pub after: Option<u64>,
    /// Seconds; 0 (the default) answers at once.
    #[serde(default)]
    pub wait: u64,
}

/// Waits as the long-poll rules say; `Ok(true)` means "answer with the current state",
/// `Ok(false)` "no change" (304).
pub async fn wait_for_change(ctx: &ApiContext, q: &PullQuery) -> Result<bool, ApiError> {
    let Some(after) = q.after else {
        return Ok(true);
    };
    let wait = Duration::from_secs(q.wait).min(MAX_WAIT);
    let mut rx = ctx.node.version_watch();
    let deadline = tokio::time::Instant::now() + wait;
    // Counts this pull in `kokoa_pulls_waiting` from its first wait until it returns or is
    // dropped (the client went away).
    let mut waiting = None;
    loop {
        let version = *rx.borrow_and_update();
        if version > after {
            return Ok(true);
        }
        waiting.get_or_insert_with(|| ctx.metrics.pull_waiting());
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "shutting down",
                ))
            }
            Err(_) if version == after => return Ok(false),
            Err(_) => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "behind",
                    format!("this replica is at version {version}, behind the {after} you have; try another"),
                );
                e.retryable = true;
                return Err(e);
            }
        }
    }
}

/// Builds one edge's or agent's config (with the version it was read at) from a consistent
/// read, or `None` when the record is gone.
pub type ConfigBuilder<T> = fn(&StateReader, &str, &Sealer) -> Result<Option<(u64, T)>, StoreError>;

/// Serves one pull by edge or agent `id`: notes it as seen (in memory), waits as the long-poll
/// rules say, then answers `build(state, id)` (404 `what` when the record is gone).
pub async fn serve_pull<T: Serialize + Send + 'static>(
    ctx: &ApiContext,
    q: &PullQuery,
    id: String,
    what: &'static str,
    build: ConfigBuilder<T>,
) -> Result<Response, ApiError> {
    ctx.seen.saw(&id, crate::auth::unix_now());
    if !wait_for_change(ctx, q).await? {
        return Ok(no_change(ctx));
    }
    let stale = is_stale(ctx);
    let slot = ctx.pulls.slot(&id);
    let current = ctx.node.position().borrow().version;
    let fresh = |b: &Option<Built>| {
        b.as_ref()
            .filter(|b| b.version >= current && b.stale == stale)
            .map(|b| b.body.clone())
    };
    if let Some(body) = fresh(&*slot.read().await) {
        return Ok(json_bytes(body));
    }
    // Single flight: the other pulls of this id wait here for the one that builds.
    let mut built = slot.write().await;
    if let Some(body) = fresh(&built) {
        return Ok(json_bytes(body));
    }
    let (version, config) = ctx
        .read_local({
            let sealer = ctx.sealer.clone();
            move |r| build(r, &id, &sealer)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(what))?;
    let body = serde_json::to_vec(&pulled(version, config, stale)?)
        .map_err(|e| StoreError::Codec(e.to_string()))?;
    let body = Bytes::from(body);
    *built = Some(Built {
        version,
        stale,
        body: body.clone(),
    });
    Ok(json_bytes(body))
}

/// A JSON answer from bytes already serialised.
fn json_bytes(body: Bytes) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The 304 answer of a long-poll that saw no change.
pub fn no_change(ctx: &ApiContext) -> Response {
    let version = ctx.node.position().borrow().version;
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    resp.headers_mut().insert("x-kokoa-version", version.into());
    resp
}

/// Whether this replica has lost touch with the leader.
pub fn is_stale(ctx: &ApiContext) -> bool {
    ctx.node
        .leader_contact_age()
        .is_none_or(|age| age > STALE_AFTER)
}

/// Wraps `config` read at `version` with the hash of its JSON.
fn pulled<T: Serialize>(version: u64, config: T, stale: bool) -> Result<Pulled<T>, ApiError> {
    let canonical = serde_json::to_vec(&config).map_err(|e| StoreError::Codec(e.to_string()))?;
    let config_hash = hex::encode(Sha256::digest(&canonical));
    Ok(Pulled {
        version,
        config_hash,
        stale,
        config,
    })
}

fn edge_peer(e: kokoa_store::EdgeNode) -> EdgePeer {
    EdgePeer {
        id: e.id,
        name: e.name,
        public_ip: e.public_ip,
        wg_port: e.wg_port,
        wg_public_key: e.wg_public_key,
        tunnel_ip: e.tunnel_ip,
    }
}

fn agent_peer(a: kokoa_store::Agent) -> AgentPeer {
    let allowed_ips = a.tunnel_ip.iter().map(|ip| format!("{ip}/32")).collect();
    AgentPeer {
        agent_id: a.id,
        origin_id: a.origin_id,
        wg_public_key: a.wg_public_key,
        tunnel_ip: a.tunnel_ip,
        allowed_ips,
    }
}

/// Builds edge `edge_id`'s config from one consistent read; `None` if the edge is gone.
pub fn edge_config(
    r: &StateReader,
    edge_id: &str,
    sealer: &Sealer,
) -> Result<Option<(u64, EdgeConfig)>, StoreError> {
    let Some(edge) = r.edge_node(edge_id)? else {
        return Ok(None);
    };
    let origins: BTreeMap<String, kokoa_store::Origin> = r
        .origins()?
        .into_iter()
        .map(|o| (o.id.clone(), o))
        .collect();
    let mut routes = BTreeMap::new();
    for route in r.routes()? {
        if let Some(o) = origins.get(&route.origin_id) {
            let backend = Backend {
                origin_id: o.id.clone(),
                origin: o.name.clone(),
                kind: o.kind,
                target: route.target,
                rate_limit: route.rate_limit,
                allow_http: route.allow_http,
            };
            routes.insert(route.hostname, backend);
        }
    }
    let hostnames = routes.keys().cloned().collect();
    let peers = r.agents()?.into_iter().map(agent_peer).collect();
    let config = EdgeConfig {
        edge: edge_peer(edge),
        routes,
        hostnames,
        peers,
        certificates: edge_certificates(r, sealer)?,
        acme_http01: BTreeMap::new(),
    };
    Ok(Some((r.version()?, config)))
}

/// Builds agent `agent_id`'s config from one consistent read; `None` if the agent is gone.
pub fn agent_config(
    r: &StateReader,
    agent_id: &str,
    _sealer: &Sealer,
) -> Result<Option<(u64, AgentConfig)>, StoreError> {
    let Some(agent) = r.agent(agent_id)? else {
        return Ok(None);
    };
    let Some(origin) = r.origin(&agent.origin_id)? else {
        return Ok(None);
    };
    let routes: BTreeMap<String, String> = r
        .routes()?
        .into_iter()
        .filter(|route| route.origin_id == origin.id)
        .map(|route| (route.hostname, route.target))
        .collect();
    let targets: BTreeSet<String> = routes.values().cloned().collect();
    let mut edges: Vec<EdgePeer> = r.edge_nodes()?.into_iter().map(edge_peer).collect();
    edges.sort_by(|a, b| a.id.cmp(&b.id));
    let config = AgentConfig {
        agent: agent_peer(agent),
        origin: OriginView {
            id: origin.id,
            name: origin.name,
            subnet: origin.subnet,
        },
        edges,
        routes,
        targets: targets.into_iter().collect(),
    };
    Ok(Some((r.version()?, config)))
}

/// Every certificate with its key opened, for edges. One that cannot be opened (sealed under
/// another cluster secret) is left out and logged: edges then serve the fallback for its names.
fn edge_certificates(r: &StateReader, sealer: &Sealer) -> Result<Vec<EdgeCertificate>, StoreError> {
    let mut out = Vec::new();
    for c in r.certificates()? {
        match sealer.open(&c.sealed_key) {
            Ok(key_pem) => out.push(EdgeCertificate {
                id: c.id,
                names: c.names,
                chain_pem: c.chain_pem,
                key_pem,
                not_after: c.not_after,
            }),
            Err(e) => {
                tracing::error!(id = %c.id, error = %e, "certificate left out of edge configs")
            }
        }
    }
    Ok(out)
}
