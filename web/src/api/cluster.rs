//! `/api/v1/cluster`: the replicas, and adding, joining and removing them.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use kokoa_raft::{ClusterStatus, Command, NodeId, ReplicaNode};
use kokoa_store::validate::validate_socket_addr;
use kokoa_store::{ReplicaInfo, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::committed;
use crate::auth::{authenticate, unix_now};
use crate::extract::{ApiJson, ApiPath};
use crate::openapi::{
    BadRequest, ClusterStatusDoc, Conflict, Forbidden, Unauthorized, Unavailable,
};
use crate::{ApiContext, ApiError};

/// `GET /api/v1/cluster`: this replica's view, with each member's API address.
#[utoipa::path(
    get,
    path = "/api/v1/cluster",
    operation_id = "cluster_status",
    tag = "cluster",
    responses(
        (status = 200, description = "This replica's view of the cluster", body = ClusterStatusDoc),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    /// Replica ids start at 1.
    #[schema(value_type = u64, minimum = 1)]
    pub id: NodeId,
    /// Its `--peer-listen` address, `IP:PORT`.
    #[schema(example = "127.0.0.1:7001")]
    pub peer_addr: String,
    /// Its `--listen` (API) address, `IP:PORT`.
    #[schema(example = "127.0.0.1:4001")]
    pub api_addr: String,
}

/// The answer to adding or joining a replica.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeAdded {
    #[schema(value_type = u64)]
    pub id: NodeId,
    /// Always true: the replica is a voter when this answers.
    pub voter: bool,
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
    let added = NodeAdded {
        id: req.id,
        voter: true,
    };
    Ok(committed(StatusCode::OK, index, Some(added)))
}

/// `POST /api/v1/cluster/nodes` (admin): add a running, empty replica as a voter.
#[utoipa::path(
    post,
    path = "/api/v1/cluster/nodes",
    operation_id = "add_replica",
    tag = "cluster",
    request_body = NodeRequest,
    responses(
        (status = 200, description = "The replica is a voter", body = NodeAdded,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
pub async fn add_node(
    State(ctx): State<ApiContext>,
    ApiJson(req): ApiJson<NodeRequest>,
) -> Result<Response, ApiError> {
    let node = req.validate()?;
    add(&ctx, &req, node).await
}

/// `POST /api/v1/cluster/join` (server token): what `kokoa server --join` calls. Each join
/// counts one use of the token.
#[utoipa::path(
    post,
    path = "/api/v1/cluster/join",
    operation_id = "join_cluster",
    tag = "cluster",
    request_body = NodeRequest,
    responses(
        (status = 200, description = "The replica is a voter", body = NodeAdded,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
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
#[utoipa::path(
    delete,
    path = "/api/v1/cluster/nodes/{id}",
    operation_id = "remove_replica",
    tag = "cluster",
    params(("id" = u64, Path, description = "The replica's id")),
    responses(
        (status = 204, description = "Removed from the membership", headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub async fn remove_node(
    State(ctx): State<ApiContext>,
    ApiPath(id): ApiPath<NodeId>,
) -> Result<Response, ApiError> {
    ctx.node.remove_voter(id).await?;
    let index = match ctx.write(Command::RemoveReplica { id }).await {
        Ok(index) => index,
        Err(e) if e.code == "not_found" => ctx.node.status().applied_index,
        Err(e) => return Err(e),
    };
    Ok(committed::<()>(StatusCode::NO_CONTENT, index, None))
}
