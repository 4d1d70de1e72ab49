//! The full state dump, for operators and for comparing replicas.

use axum::extract::State;
use axum::Json;
use kokoa_store::{Agent, DnsRecord, EdgeNode, Origin, ReplicaInfo, Route, Settings, Token};
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::{ReadMode, ReadQuery};
use crate::{ApiContext, ApiError};

/// Every record of the replicated state (token hashes included, never secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct StateDump {
    /// Log index of the last command that changed the state.
    pub version: u64,
    /// This replica's applied raft log index (the only per-replica field).
    pub applied_index: u64,
    pub origins: Vec<Origin>,
    pub routes: Vec<Route>,
    pub tokens: Vec<Token>,
    pub edge_nodes: Vec<EdgeNode>,
    pub agents: Vec<Agent>,
    pub dns_records: Vec<DnsRecord>,
    pub settings: Settings,
    /// `[id, unix seconds]`: when each edge or agent was last seen pulling, as committed.
    pub last_seen: Vec<(String, u64)>,
    pub replicas: Vec<ReplicaInfo>,
}

/// `GET /api/v1/state`: every record and the version.
#[utoipa::path(
    get,
    path = "/api/v1/state",
    operation_id = "state_dump",
    tag = "state",
    params(ReadQuery),
    responses(
        (status = 200, description = "The whole state", body = StateDump),
        crate::openapi::ReadErrors,
    )
)]
pub async fn dump(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<StateDump>, ApiError> {
    let image = ctx.read(mode, |r| r.image()).await?;
    let applied_index = ctx.node.status().applied_index;
    Ok(Json(StateDump {
        version: image.version,
        applied_index,
        origins: image.origins,
        routes: image.routes,
        tokens: image.tokens,
        edge_nodes: image.edge_nodes,
        agents: image.agents,
        dns_records: image.dns_records,
        settings: image.settings,
        last_seen: image.last_seen,
        replicas: image.replicas,
    }))
}
