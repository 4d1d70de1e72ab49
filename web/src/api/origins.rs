//! `/api/v1/origins`: where services run.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::{Origin, OriginKind};
use serde::Deserialize;

use super::{committed, new_id, Items};
use crate::auth::unix_now;
use crate::extract::{ApiJson, ReadMode};
use crate::{ApiContext, ApiError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrigin {
    pub name: String,
    #[serde(default)]
    pub kind: OriginKind,
}

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

pub async fn get_one(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
    Path(key): Path<String>,
) -> Result<Json<Origin>, ApiError> {
    Ok(Json(find(&ctx, mode, key).await?))
}

pub async fn remove(
    State(ctx): State<ApiContext>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let origin = find(&ctx, ReadMode::default(), key).await?;
    let index = ctx.write(Command::DeleteOrigin { id: origin.id }).await?;
    Ok(committed::<()>(StatusCode::NO_CONTENT, index, None))
}
