//! `/api/v1/cluster`: the replicas, and adding, joining and removing them.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use kokoa_raft::{ClusterStatus, Command, NodeId, ReplicaNode};
use kokoa_store::validate::validate_socket_addr;
use kokoa_store::{ReplicaInfo, Role};
use serde::Deserialize;
use serde_json::json;

use super::committed;
use crate::auth::{authenticate, unix_now};
use crate::extract::ApiJson;
use crate::{ApiContext, ApiError};

/// `GET /api/v1/cluster`: this replica's view, with each member's API address.
pub async fn status(State(ctx): State<ApiContext>) -> Result<Json<ClusterStatus>, ApiError> {
    let mut status = ctx.node.status();
    let known: HashMap<u64, String> = ctx
        .read_local(|r| r.replicas())
        .await?
        .into_iter()
        .map(|r| (r.id, r.api_addr))
        .collect();
    for m in &mut status.members {
        if let Some(api) = known.get(&m.id) {
            m.api_addr = api.clone();
        }
    }
    Ok(Json(status))
}

/// A replica to add: its id and addresses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    pub id: NodeId,
    pub peer_addr: String,
    pub api_addr: String,
}

impl NodeRequest {
    fn validate(&self) -> Result<ReplicaNode, ApiError> {
        if self.id == 0 {
            return Err(ApiError::bad_request(
                "invalid_id",
                "replica ids start at 1",
            ));
        }
        validate_socket_addr(&self.peer_addr)?;
        validate_socket_addr(&self.api_addr)?;
        Ok(ReplicaNode {
            peer_addr: self.peer_addr.clone(),
            api_addr: self.api_addr.clone(),
        })
    }
}

async fn add(ctx: &ApiContext, req: &NodeRequest, node: ReplicaNode) -> Result<Response, ApiError> {
    ctx.node.add_voter(req.id, node).await?;
    let index = ctx
        .write(Command::SetReplica(ReplicaInfo {
            id: req.id,
            api_addr: req.api_addr.clone(),
        }))
        .await?;
    Ok(committed(
        StatusCode::OK,
        index,
        Some(json!({"id": req.id, "voter": true})),
    ))
}

/// `POST /api/v1/cluster/nodes` (admin): add a running, empty replica as a voter.
pub async fn add_node(
    State(ctx): State<ApiContext>,
    ApiJson(req): ApiJson<NodeRequest>,
) -> Result<Response, ApiError> {
    let node = req.validate()?;
    add(&ctx, &req, node).await
}

/// `POST /api/v1/cluster/join` (server token): what `kokoa server --join` calls. Each join
/// counts one use of the token.
pub async fn join(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NodeRequest>,
) -> Result<Response, ApiError> {
    let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = authenticate(&ctx, header, Role::Server).await?;
    let node = req.validate()?;
    let already = ctx
        .node
        .status()
        .members
        .iter()
        .any(|m| m.id == req.id && m.voter && m.peer_addr == req.peer_addr);
    if !already {
        ctx.write(Command::UseToken {
            id: token.id,
            now: unix_now(),
        })
        .await?;
    }
    add(&ctx, &req, node).await
}

/// `DELETE /api/v1/cluster/nodes/{id}` (admin): remove a replica.
pub async fn remove_node(
    State(ctx): State<ApiContext>,
    Path(id): Path<NodeId>,
) -> Result<Response, ApiError> {
    ctx.node.remove_voter(id).await?;
    let index = match ctx.write(Command::RemoveReplica { id }).await {
        Ok(index) => index,
        Err(e) if e.code == "not_found" => ctx.node.status().applied_index,
        Err(e) => return Err(e),
    };
    Ok(committed::<()>(StatusCode::NO_CONTENT, index, None))
}
