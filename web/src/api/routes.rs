//! `/api/v1/routes`: public hostnames and where they lead.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::{normalize_hostname, normalize_target, validate_id};
use kokoa_store::Route;
use serde::Deserialize;

use super::{committed, new_id, Items};
use crate::auth::unix_now;
use crate::extract::{ApiJson, ReadMode};
use crate::{ApiContext, ApiError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoute {
    pub hostname: String,
    pub origin_id: String,
    pub target: String,
}

pub async fn create(
    State(ctx): State<ApiContext>,
    ApiJson(req): ApiJson<CreateRoute>,
) -> Result<Response, ApiError> {
    validate_id(&req.origin_id).map_err(|_| {
        ApiError::bad_request(
            "unknown_origin",
            format!("there is no origin {:?}", req.origin_id),
        )
    })?;
    let route = Route {
        id: new_id("r"),
        hostname: normalize_hostname(&req.hostname)?,
        origin_id: req.origin_id,
        target: normalize_target(&req.target)?,
        created_at: unix_now(),
    };
    let index = ctx.write(Command::CreateRoute(route.clone())).await?;
    Ok(committed(StatusCode::CREATED, index, Some(route)))
}

pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<Route>>, ApiError> {
    let items = ctx.read(mode, |r| r.routes()).await?;
    Ok(Json(Items { items }))
}

/// Finds a route by id, or else by hostname.
async fn find(ctx: &ApiContext, mode: ReadMode, key: String) -> Result<Route, ApiError> {
    ctx.read(mode, move |r| match r.route(&key)? {
        Some(route) => Ok(Some(route)),
        None => match normalize_hostname(&key) {
            Ok(host) => r.route_by_hostname(&host),
            Err(_) => Ok(None),
        },
    })
    .await?
    .ok_or_else(|| ApiError::not_found("route"))
}

pub async fn get_one(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
    Path(key): Path<String>,
) -> Result<Json<Route>, ApiError> {
    Ok(Json(find(&ctx, mode, key).await?))
}

pub async fn remove(
    State(ctx): State<ApiContext>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let route = find(&ctx, ReadMode::default(), key).await?;
    let index = ctx.write(Command::DeleteRoute { id: route.id }).await?;
    Ok(committed::<()>(StatusCode::NO_CONTENT, index, None))
}
