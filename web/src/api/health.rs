//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kokoa_raft::NodeId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiContext;

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The answer of `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Whether this replica knows a leader.
    pub ready: bool,
    #[schema(value_type = Option<u64>)]
    pub leader_id: Option<NodeId>,
    pub applied_index: u64,
}

/// 200 while the process serves.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "The process is serving", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// 200 when this replica knows a leader (it can serve writes and linearizable reads).
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "This replica knows a leader", body = Readiness),
        (status = 503, description = "This replica knows no leader", body = Readiness),
    )
)]
pub async fn readyz(State(ctx): State<ApiContext>) -> (StatusCode, Json<Readiness>) {
    let status = ctx.node.status();
    let ready = status.leader_id.is_some();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        ready,
        leader_id: status.leader_id,
        applied_index: status.applied_index,
    };
    (code, Json(body))
}
