//! `/api/v1/routes`: public hostnames and where they lead.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::{
    normalize_hostname, normalize_target, validate_id, validate_rate_limit,
};
use kokoa_store::{RateLimit, Route};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{committed, new_id, removed, Items};
use crate::auth::unix_now;
use crate::extract::{ApiJson, ApiPath, ReadMode, ReadQuery};
use crate::{ApiContext, ApiError};

/// A route to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoute {
    /// A public hostname, optionally `*.` wildcard; stored normalised (lowercase, IDNA).
    #[schema(example = "app.example.com")]
    pub hostname: String,
    pub origin_id: String,
    /// `HOST:PORT` at the origin.
    #[schema(example = "127.0.0.1:8080")]
    pub target: String,
    /// Per-client-IP request limit at the edges; absent: the edges' default (10/s, burst 20).
    pub rate_limit: Option<RateLimit>,
    /// Serve plain HTTP on port 80 instead of redirecting to HTTPS.
    #[serde(default)]
    pub allow_http: bool,
}

/// Publishes a hostname from an origin's target.
#[utoipa::path(
    post,
    path = "/api/v1/routes",
    operation_id = "create_route",
    tag = "routes",
    request_body = CreateRoute,
    responses(
        (status = 201, description = "The route", body = Route,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
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
        rate_limit: req.rate_limit,
        allow_http: req.allow_http,
    };
    if let Some(limit) = &route.rate_limit {
        validate_rate_limit(limit)?;
    }
    let index = ctx.write(Command::CreateRoute(route.clone())).await?;
    Ok(committed(StatusCode::CREATED, index, Some(route)))
}

/// The routes, sorted by hostname.
#[utoipa::path(
    get,
    path = "/api/v1/routes",
    operation_id = "list_routes",
    tag = "routes",
    params(ReadQuery),
    responses(
        (status = 200, description = "The routes", body = Items<Route>),
        crate::openapi::ReadErrors,
    )
)]
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

/// One route, by id or hostname.
#[utoipa::path(
    get,
    path = "/api/v1/routes/{id}",
    operation_id = "get_route",
    tag = "routes",
    params(("id" = String, Path, description = "The route's id or hostname"), ReadQuery),
    responses(
        (status = 200, description = "The route", body = Route),
        crate::openapi::RecordErrors,
    )
)]
pub async fn get_one(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Route>, ApiError> {
    Ok(Json(find(&ctx, mode, key).await?))
}

/// Deletes a route, by id or hostname.
#[utoipa::path(
    delete,
    path = "/api/v1/routes/{id}",
    operation_id = "delete_route",
    tag = "routes",
    params(("id" = String, Path, description = "The route's id or hostname")),
    responses(
        (status = 204, description = "Deleted", headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::RecordErrors,
    )
)]
pub async fn remove(
    State(ctx): State<ApiContext>,
    ApiPath(key): ApiPath<String>,
) -> Result<Response, ApiError> {
    let route = find(&ctx, ReadMode::default(), key).await?;
    removed(&ctx, Command::DeleteRoute { id: route.id }).await
}
