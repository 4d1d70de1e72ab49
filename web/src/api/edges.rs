//! `/api/v1/edge-nodes`: edges register with a bootstrap token, pull their config with their
//! own token, and are listed and removed by admins.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::normalize_ip;
use kokoa_store::{EdgeNode, Role, Subject};
use serde::{Deserialize, Serialize};

use super::{committed, new_id, Items};
use crate::auth::{authenticate, new_token, unix_now, TokenSpec};
use crate::extract::{ApiJson, ReadMode};
use crate::pull::{edge_config, is_stale, no_change, wait_for_change, PullQuery, Pulled};
use crate::seen::last_seen;
use crate::{ApiContext, ApiError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterEdge {
    pub name: String,
    pub public_ip: String,
    /// Base64 WireGuard public key; the private key stays on the edge.
    pub wg_public_key: String,
    #[serde(default = "default_wg_port")]
    pub wg_port: u16,
}

fn default_wg_port() -> u16 {
    51820
}

/// The answer to a registration: the edge and its persistent token (shown once).
#[derive(Debug, Serialize)]
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
pub async fn register(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RegisterEdge>,
) -> Result<Response, ApiError> {
    let bootstrap = authenticate(&ctx, bearer_of(&headers), Role::Edge).await?;
    if bootstrap.subject.is_some() {
        return Err(ApiError::forbidden(
            "this is an edge's own token; register with a bootstrap edge token",
        ));
    }
    if req.wg_port == 0 {
        return Err(ApiError::bad_request(
            "invalid_port",
            "wg_port must be 1 to 65535",
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
#[derive(Debug, Serialize)]
pub struct EdgeView {
    #[serde(flatten)]
    pub edge: EdgeNode,
    /// Unix seconds of the last config pull seen (by this replica, or committed).
    pub last_seen: Option<u64>,
    /// Set by the health checker (coming with the DNS/health issue): `unknown` until then.
    pub health: &'static str,
}

pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<EdgeView>>, ApiError> {
    let (edges, seen) = ctx
        .read(mode, |r| Ok((r.edge_nodes()?, r.last_seen()?)))
        .await?;
    let seen: HashMap<String, u64> = seen.into_iter().collect();
    let items = edges
        .into_iter()
        .map(|edge| EdgeView {
            last_seen: last_seen(&ctx, &seen, &edge.id),
            edge,
            health: "unknown",
        })
        .collect();
    Ok(Json(Items { items }))
}

pub async fn remove(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let index = ctx.write(Command::DeleteEdgeNode { id }).await?;
    Ok(committed::<()>(StatusCode::NO_CONTENT, index, None))
}

/// `GET /api/v1/edge-nodes/me/config` with the edge's own token.
pub async fn my_config(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Query(q): Query<PullQuery>,
) -> Result<Response, ApiError> {
    let token = authenticate(&ctx, bearer_of(&headers), Role::Edge).await?;
    let Some(Subject::Edge(edge_id)) = token.subject else {
        return Err(ApiError::forbidden(
            "a bootstrap token cannot pull config; register first",
        ));
    };
    ctx.seen.saw(&edge_id, unix_now());
    if !wait_for_change(&ctx, &q).await? {
        return Ok(no_change(&ctx));
    }
    let (version, config) = ctx
        .read_local(move |r| edge_config(r, &edge_id))
        .await?
        .ok_or_else(|| ApiError::not_found("edge"))?;
    Ok(Pulled::new(version, config, is_stale(&ctx))?.into_response())
}
