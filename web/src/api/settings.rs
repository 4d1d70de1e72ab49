//! `/api/v1/settings`: cluster-wide settings (the tunnel and edge address pools).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::validate_pools;
use kokoa_store::Settings;

use super::committed;
use crate::extract::{ApiJson, ReadMode};
use crate::{ApiContext, ApiError};

pub async fn get(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(ctx.read(mode, |r| r.settings()).await?))
}

/// Replaces the settings. New pools apply to origins and edges created afterwards.
pub async fn put(
    State(ctx): State<ApiContext>,
    ApiJson(settings): ApiJson<Settings>,
) -> Result<Response, ApiError> {
    validate_pools(&settings.tunnel_pool, &settings.edge_pool)?;
    let index = ctx.write(Command::SetSettings(settings.clone())).await?;
    Ok(committed(StatusCode::OK, index, Some(settings)))
}
