//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::ApiContext;

/// 200 while the process serves.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when this replica knows a leader (it can serve writes and linearizable reads).
pub async fn readyz(State(ctx): State<ApiContext>) -> (StatusCode, Json<Value>) {
    let status = ctx.node.status();
    let ready = status.leader_id.is_some();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(
            json!({"ready": ready, "leader_id": status.leader_id, "applied_index": status.applied_index}),
        ),
    )
}
