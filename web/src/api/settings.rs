//! `/api/v1/settings`: cluster-wide settings (address pools, DNS answers, edge health checks).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::{validate_pools, validate_settings};
use kokoa_store::Settings;

use super::committed;
use crate::extract::{ApiJson, ReadMode, ReadQuery};
use crate::{ApiContext, ApiError};

/// The settings.
#[utoipa::path(
    get,
    path = "/api/v1/settings",
    operation_id = "get_settings",
    tag = "settings",
    params(ReadQuery),
    responses(
        (status = 200, description = "The settings", body = Settings),
        crate::openapi::ReadErrors,
    )
)]
pub async fn get(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(ctx.read(mode, |r| r.settings()).await?))
}

/// Replaces the settings. New pools apply to origins and edges created afterwards.
#[utoipa::path(
    put,
    path = "/api/v1/settings",
    operation_id = "put_settings",
    tag = "settings",
    request_body = Settings,
    responses(
        (status = 200, description = "The new settings", body = Settings,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
pub async fn put(
    State(ctx): State<ApiContext>,
    ApiJson(settings): ApiJson<Settings>,
) -> Result<Response, ApiError> {
    validate_pools(&settings.tunnel_pool, &settings.edge_pool)?;
    validate_settings(&settings)?;
    let index = ctx.write(Command::SetSettings(settings.clone())).await?;
    Ok(committed(StatusCode::OK, index, Some(settings)))
}
