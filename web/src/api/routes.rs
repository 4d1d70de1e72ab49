//! `/api/v1/routes`: public hostnames and where they lead.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::{
    normalize_hostname, normalize_target, validate_id, validate_rate_limit,
};
use kokoa_store::{EdgeHealth, RateLimit, Route};
use serde::{Deserialize, Serialize};
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

/// How the healthy edges reach a route's origin, from their last reports to the health checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OriginStatus {
    /// No healthy edge reports it unreachable.
    Reachable,
    /// Some healthy edges report it unreachable.
    Degraded,
    /// Every healthy edge reports it unreachable: requests get 502/503.
    Unreachable,
    /// No edge is healthy (or none is registered): nothing is known.
    Unknown,
}

/// A route, with whether the edges can reach its origin.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RouteView {
    #[serde(flatten)]
    pub route: Route,
    #[schema(example = "reachable")]
    pub origin_status: OriginStatus,
    /// The healthy edges that report its origin unreachable (a tunnel origin without a
    /// connected agent, a direct origin whose last dial failed).
    pub unreachable_from: Vec<String>,
}

/// The edges' reports of their origins, from the committed health of every edge.
#[derive(Debug, Default)]
pub struct OriginReach {
    healthy_edges: usize,
    /// Origin id -> the healthy edges that cannot reach it.
    unreachable: HashMap<String, Vec<String>>,
}

impl OriginReach {
    pub fn new(health: &[EdgeHealth]) -> Self {
        let mut reach = OriginReach::default();
        for h in health.iter().filter(|h| h.healthy) {
            reach.healthy_edges += 1;
            for origin in &h.unreachable_origins {
                reach
                    .unreachable
                    .entry(origin.clone())
                    .or_default()
                    .push(h.edge_id.clone());
            }
        }
        reach
    }

    /// `route` with its origin's status.
    pub fn view(&self, route: Route) -> RouteView {
        let unreachable_from = self
            .unreachable
            .get(&route.origin_id)
            .cloned()
            .unwrap_or_default();
        let origin_status = match unreachable_from.len() {
            _ if self.healthy_edges == 0 => OriginStatus::Unknown,
            0 => OriginStatus::Reachable,
            n if n == self.healthy_edges => OriginStatus::Unreachable,
            _ => OriginStatus::Degraded,
        };
        RouteView {
            route,
            origin_status,
            unreachable_from,
        }
    }
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
        (status = 200, description = "The routes, with whether the edges reach their origins", body = Items<RouteView>),
        crate::openapi::ReadErrors,
    )
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<RouteView>>, ApiError> {
    let (routes, health) = ctx
        .read(mode, |r| Ok((r.routes()?, r.edge_health()?)))
        .await?;
    let reach = OriginReach::new(&health);
    let items = routes.into_iter().map(|r| reach.view(r)).collect();
    Ok(Json(Items { items }))
}

/// Finds a route by id, or else by hostname; with the edges' committed health when
/// `with_health` (in the same read), else none.
async fn find(
    ctx: &ApiContext,
    mode: ReadMode,
    key: String,
    with_health: bool,
) -> Result<(Route, Vec<EdgeHealth>), ApiError> {
    ctx.read(mode, move |r| {
        let route = match r.route(&key)? {
            Some(route) => Some(route),
            None => match normalize_hostname(&key) {
                Ok(host) => r.route_by_hostname(&host)?,
                Err(_) => None,
            },
        };
        let Some(route) = route else {
            return Ok(None);
        };
        let health = if with_health {
            r.edge_health()?
        } else {
            Vec::new()
        };
        Ok(Some((route, health)))
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
        (status = 200, description = "The route, with whether the edges reach its origin", body = RouteView),
        crate::openapi::RecordErrors,
    )
)]
pub async fn get_one(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<RouteView>, ApiError> {
    let (route, health) = find(&ctx, mode, key, true).await?;
    Ok(Json(OriginReach::new(&health).view(route)))
}

/// Deletes a route, by id or hostname.
#[utoipa::path(
    delete,
    path = "/api/v1/routes/{id}",
    operation_id = "delete_route",
    tag = "routes",
    params(("id" = String, Path, description = "The route's id or hostname")),
    responses(
        crate::openapi::Removed,
        crate::openapi::RecordErrors,
    )
)]
pub async fn remove(
    State(ctx): State<ApiContext>,
    ApiPath(key): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (route, _) = find(&ctx, ReadMode::default(), key, false).await?;
    removed(&ctx, Command::DeleteRoute { id: route.id }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(edge: &str, healthy: bool, origins: &[&str]) -> EdgeHealth {
        EdgeHealth {
            edge_id: edge.into(),
            healthy,
            since: 1,
            reason: String::new(),
            unreachable_origins: origins.iter().map(|o| o.to_string()).collect(),
        }
    }

    fn route(origin: &str) -> Route {
        Route {
            id: "r1".into(),
            hostname: "app.example.com".into(),
            origin_id: origin.into(),
            target: "localhost:80".into(),
            created_at: 1,
            rate_limit: None,
            allow_http: false,
        }
    }

    #[test]
    fn the_healthy_edges_reports_decide_a_routes_origin_status() {
        let reach = OriginReach::new(&[
            health("e1", true, &["o1", "o2"]),
            health("e2", true, &["o1"]),
            // An unhealthy edge's report does not count.
            health("e3", false, &["o3"]),
        ]);
        let o1 = reach.view(route("o1"));
        assert_eq!(o1.origin_status, OriginStatus::Unreachable);
        assert_eq!(o1.unreachable_from, ["e1", "e2"]);
        let o2 = reach.view(route("o2"));
        assert_eq!(o2.origin_status, OriginStatus::Degraded);
        assert_eq!(o2.unreachable_from, ["e1"]);
        let o3 = reach.view(route("o3"));
        assert_eq!(o3.origin_status, OriginStatus::Reachable);
        assert!(o3.unreachable_from.is_empty());
        let json = serde_json::to_value(&o2).expect("json");
        assert_eq!(json["hostname"], "app.example.com");
        assert_eq!(json["origin_status"], "degraded");

        let nobody = OriginReach::new(&[health("e1", false, &[])]);
        assert_eq!(
            nobody.view(route("o1")).origin_status,
            OriginStatus::Unknown
        );
        assert_eq!(
            OriginReach::new(&[]).view(route("o1")).origin_status,
            OriginStatus::Unknown
        );
    }
}
