//! `/api/v1/origins`: where services run.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::{Origin, OriginKind};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{committed, new_id, removed, Items};
use crate::auth::unix_now;
use crate::extract::{ApiJson, ApiPath, ReadMode, ReadQuery};
use crate::{ApiContext, ApiError};

/// An origin to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrigin {
    /// Lowercase letters, digits, `-` and `_`, at most 63.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$", example = "home")]
    pub name: String,
    /// `tunnel` (the default) or `direct`.
    #[serde(default)]
    pub kind: OriginKind,
}

/// Creates an origin; a tunnel origin gets a /24 of the tunnel pool (`subnet`).
#[utoipa::path(
    post,
    path = "/api/v1/origins",
    operation_id = "create_origin",
    tag = "origins",
    request_body = CreateOrigin,
    responses(
        (status = 201, description = "The origin", body = Origin,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
pub async fn create(
    State(ctx): State<ApiContext>,
    ApiJson(req): ApiJson<CreateOrigin>,
) -> Result<Response, ApiError> {
    let origin = Origin {
        id: new_id("o"),
        name: req.name,
        kind: req.kind,
        created_at: unix_now(),
        subnet: None,
    };
    let id = origin.id.clone();
    let index = ctx.write(Command::CreateOrigin(origin)).await?;
    // The subnet was assigned when the command was applied: answer with the stored origin.
    let created = ctx
        .read_after(index, move |r| r.origin(&id))
        .await?
        .ok_or_else(|| ApiError::not_found("origin"))?;
    Ok(committed(StatusCode::CREATED, index, Some(created)))
}

/// The origins, sorted by name.
#[utoipa::path(
    get,
    path = "/api/v1/origins",
    operation_id = "list_origins",
    tag = "origins",
    params(ReadQuery),
    responses(
        (status = 200, description = "The origins", body = Items<Origin>),
        crate::openapi::ReadErrors,
    )
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<Origin>>, ApiError> {
    let items = ctx.read(mode, |r| r.origins()).await?;
    Ok(Json(Items { items }))
}

/// Finds an origin by id, or else by name.
async fn find(ctx: &ApiContext, mode: ReadMode, key: String) -> Result<Origin, ApiError> {
    ctx.read(mode, move |r| match r.origin(&key)? {
        Some(o) => Ok(Some(o)),
        None => r.origin_by_name(&key),
    })
    .await?
    .ok_or_else(|| ApiError::not_found("origin"))
}

/// One origin, by id or name.
#[utoipa::path(
    get,
    path = "/api/v1/origins/{id}",
    operation_id = "get_origin",
    tag = "origins",
    params(("id" = String, Path, description = "The origin's id or name"), ReadQuery),
    responses(
        (status = 200, description = "The origin", body = Origin),
        crate::openapi::RecordErrors,
    )
)]
pub async fn get_one(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Origin>, ApiError> {
    Ok(Json(find(&ctx, mode, key).await?))
}

/// Deletes an origin (by id or name) with its agents and the tokens bound to it; refused while
/// routes use it.
#[utoipa::path(
    delete,
    path = "/api/v1/origins/{id}",
    operation_id = "delete_origin",
    tag = "origins",
    params(("id" = String, Path, description = "The origin's id or name")),
    responses(
        crate::openapi::Removed,
        crate::openapi::DeleteErrors,
    )
)]
pub async fn remove(
    State(ctx): State<ApiContext>,
    ApiPath(key): ApiPath<String>,
) -> Result<Response, ApiError> {
    let origin = find(&ctx, ReadMode::default(), key).await?;
    removed(&ctx, Command::DeleteOrigin { id: origin.id }).await
}
