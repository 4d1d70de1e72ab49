//! The full state dump, for operators and for comparing replicas.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::extract::ReadMode;
use crate::{ApiContext, ApiError};

/// `GET /api/v1/state`: every record (token hashes included, never secrets) and the version.
pub async fn dump(State(ctx): State<ApiContext>, mode: ReadMode) -> Result<Json<Value>, ApiError> {
    let image = ctx.read(mode, |r| r.image()).await?;
    let applied_index = ctx.node.status().applied_index;
    Ok(Json(json!({
        "version": image.version,
        "applied_index": applied_index,
        "origins": image.origins,
        "routes": image.routes,
        "tokens": image.tokens,
        "edge_nodes": image.edge_nodes,
        "replicas": image.replicas,
    })))
}
