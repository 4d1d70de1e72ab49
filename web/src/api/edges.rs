//! `/api/v1/edge-nodes`: edges register with a bootstrap token, pull their config with their
//! own token, and are listed and removed by admins.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::normalize_ip;
use kokoa_store::{EdgeHealth, EdgeNode, Role, Subject};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{committed, new_id, removed, Items};
use crate::auth::{authenticate, new_token, unix_now, TokenSpec};
use crate::extract::{ApiJson, ApiPath, ApiQuery, ReadMode, ReadQuery};
use crate::openapi::{EdgeConfigDoc, PullParams};
use crate::pull::{edge_config, serve_pull, PullQuery};
use crate::seen::last_seen;
use crate::{ApiContext, ApiError};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterEdge {
    /// Lowercase letters, digits, `-` and `_`, at most 63.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$", example = "edge-1")]
    pub name: String,
    /// The edge's public IPv4 or IPv6 address.
    #[schema(example = "192.0.2.1")]
    pub public_ip: String,
    /// Base64 WireGuard public key (32 bytes); the private key stays on the edge.
    #[schema(pattern = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")]
    pub wg_public_key: String,
    /// UDP port of the edge's WireGuard endpoint.
    #[serde(default = "default_wg_port")]
    #[schema(default = 51820, minimum = 1, maximum = 65535)]
    pub wg_port: u16,
    /// TCP port of the edge's plain HTTP listener (the health checker probes `/health` there).
    #[serde(default = "default_http_port")]
    #[schema(default = 80, minimum = 1, maximum = 65535)]
    pub http_port: u16,
}

fn default_http_port() -> u16 {
    80
}

fn default_wg_port() -> u16 {
    51820
}

/// The answer to a registration: the edge and its persistent token (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered<T> {
    #[serde(flatten)]
    pub record: T,
    pub token: String,
}

/// The `Authorization` header's value.
pub(crate) fn bearer_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// `POST /api/v1/edge-nodes/register` with a bootstrap edge token.
#[utoipa::path(
    post,
    path = "/api/v1/edge-nodes/register",
    operation_id = "register_edge",
    tag = "edge-nodes",
    request_body = RegisterEdge,
    responses(
        (status = 201, description = "The edge and its own token (shown once)", body = Registered<EdgeNode>,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
pub async fn register(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: Result<ApiJson<RegisterEdge>, ApiError>,
) -> Result<Response, ApiError> {
    let bootstrap = authenticate(&ctx, bearer_of(&headers), Role::Edge).await?;
    // The token first: a caller without one learns nothing about the body we expect.
    let ApiJson(req) = body?;
    if bootstrap.subject.is_some() {
        return Err(ApiError::forbidden(
            "this is an edge's own token; register with a bootstrap edge token",
        ));
    }
    if req.wg_port == 0 || req.http_port == 0 {
        return Err(ApiError::bad_request(
            "invalid_port",
            "wg_port and http_port must be 1 to 65535",
        ));
    }
    let id = new_id("e");
    let now = unix_now();
    let spec = TokenSpec {
        subject: Some(Subject::Edge(id.clone())),
        ..TokenSpec::role(Role::Edge)
    };
    let made = new_token(spec, now, &ctx.cluster_secret, None)?;
    let edge = EdgeNode {
        id: id.clone(),
        name: req.name,
        public_ip: normalize_ip(&req.public_ip)?,
        wg_public_key: req.wg_public_key,
        wg_port: req.wg_port,
        http_port: req.http_port,
        tunnel_ip: None,
        created_at: now,
    };
    let cmd = Command::RegisterEdge {
        edge,
        token: made.record,
        bootstrap_id: bootstrap.id,
        now,
    };
    let index = ctx.write(cmd).await?;
    let stored = ctx
        .read_after(index, move |r| r.edge_node(&id))
        .await?
        .ok_or_else(|| ApiError::not_found("edge"))?;
    Ok(committed(
        StatusCode::CREATED,
        index,
        Some(Registered {
            record: stored,
            token: made.secret_string,
        }),
    ))
}

/// An edge as admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgeView {
    #[serde(flatten)]
    pub edge: EdgeNode,
    /// Unix seconds of the last config pull seen (by this replica, or committed).
    pub last_seen: Option<u64>,
    /// The health checker's last committed verdict: `healthy`, `unhealthy`, or `unknown`
    /// before its first.
    #[schema(example = "healthy")]
    pub health: &'static str,
    /// Unix seconds of the last health transition.
    pub health_since: Option<u64>,
    /// Why (`3 failed probes: ...`, `2 good probes`, `stopped pulling config`).
    pub health_reason: Option<String>,
    /// Origins the edge last reported it cannot reach.
    pub unreachable_origins: Vec<String>,
}

impl EdgeView {
    fn new(edge: EdgeNode, last_seen: Option<u64>, health: Option<EdgeHealth>) -> Self {
        let label = match &health {
            Some(h) if h.healthy => "healthy",
            Some(_) => "unhealthy",
            None => "unknown",
        };
        let (since, reason, unreachable) = match health {
            Some(h) => (Some(h.since), Some(h.reason), h.unreachable_origins),
            None => (None, None, Vec::new()),
        };
        EdgeView {
            edge,
            last_seen,
            health: label,
            health_since: since,
            health_reason: reason,
            unreachable_origins: unreachable,
        }
    }
}

/// The edges, with when they last pulled and their health.
#[utoipa::path(
    get,
    path = "/api/v1/edge-nodes",
    operation_id = "list_edges",
    tag = "edge-nodes",
    params(ReadQuery),
    responses(
        (status = 200, description = "The edges, with when they were last seen", body = Items<EdgeView>),
        crate::openapi::ReadErrors,
    )
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<EdgeView>>, ApiError> {
    let (edges, seen, health) = ctx
        .read(mode, |r| {
            Ok((r.edge_nodes()?, r.last_seen()?, r.edge_health()?))
        })
        .await?;
    let seen: HashMap<String, u64> = seen.into_iter().collect();
    let mut health: HashMap<String, EdgeHealth> =
        health.into_iter().map(|h| (h.edge_id.clone(), h)).collect();
    let items = edges
        .into_iter()
        .map(|edge| {
            let seen = last_seen(&ctx, &seen, &edge.id);
            let health = health.remove(&edge.id);
            EdgeView::new(edge, seen, health)
        })
        .collect();
    Ok(Json(Items { items }))
}

/// Removes an edge; its token stops working.
#[utoipa::path(
    delete,
    path = "/api/v1/edge-nodes/{id}",
    operation_id = "delete_edge",
    tag = "edge-nodes",
    params(("id" = String, Path, description = "The edge's id")),
    responses(
        crate::openapi::Removed,
        crate::openapi::RecordErrors,
    )
)]
pub async fn remove(
    State(ctx): State<ApiContext>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    removed(&ctx, Command::DeleteEdgeNode { id }).await
}

/// `GET /api/v1/edge-nodes/me/config` with the edge's own token.
#[utoipa::path(
    get,
    path = "/api/v1/edge-nodes/me/config",
    operation_id = "pull_edge_config",
    tag = "edge-nodes",
    params(PullParams),
    responses(
        (status = 200, description = "The config", body = EdgeConfigDoc),
        (status = 304, description = "No change within `wait`",
            headers(("x-kokoa-version" = u64, description = "This replica's state version"))),
        crate::openapi::RecordErrors,
    )
)]
pub async fn my_config(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PullQuery>,
) -> Result<Response, ApiError> {
    let token = authenticate(&ctx, bearer_of(&headers), Role::Edge).await?;
    let Some(Subject::Edge(edge_id)) = token.subject else {
        return Err(ApiError::forbidden(
            "a bootstrap token cannot pull config; register first",
        ));
    };
    serve_pull(&ctx, &q, edge_id, "edge", edge_config).await
}
