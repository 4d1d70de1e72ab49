//! `/api/v1/dns/zones`: the DNS zones the replicas answer for (besides `--dns-zone`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::{normalize_hostname, validate_zone};
use kokoa_store::DnsZone;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{committed, removed, Items};
use crate::auth::unix_now;
use crate::extract::{ApiJson, ApiPath, ReadMode, ReadQuery};
use crate::{ApiContext, ApiError};

/// A zone to manage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateZone {
    /// A hostname without a wildcard; lowercased, a final dot dropped.
    #[schema(example = "example.com")]
    pub name: String,
}

/// The name in normal form, or why it is not a zone.
fn zone_name(input: &str) -> Result<String, ApiError> {
    let name = normalize_hostname(input)?;
    validate_zone(&name)?;
    Ok(name)
}

/// Adds a managed DNS zone.
#[utoipa::path(
    post,
    path = "/api/v1/dns/zones",
    operation_id = "create_dns_zone",
    tag = "dns",
    request_body = CreateZone,
    responses(
        (status = 201, description = "The zone", body = DnsZone,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
pub async fn create(
    State(ctx): State<ApiContext>,
    ApiJson(req): ApiJson<CreateZone>,
) -> Result<Response, ApiError> {
    let zone = DnsZone {
        name: zone_name(&req.name)?,
        created_at: unix_now(),
    };
    let index = ctx.write(Command::CreateDnsZone(zone.clone())).await?;
    Ok(committed(StatusCode::CREATED, index, Some(zone)))
}

/// The managed DNS zones.
#[utoipa::path(
    get,
    path = "/api/v1/dns/zones",
    operation_id = "list_dns_zones",
    tag = "dns",
    params(ReadQuery),
    responses(
        (status = 200, description = "The zones", body = Items<DnsZone>),
        crate::openapi::ReadErrors,
    )
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<DnsZone>>, ApiError> {
    Ok(Json(Items {
        items: ctx.read(mode, |r| r.dns_zones()).await?,
    }))
}

/// Stops managing a DNS zone (its routes and records stay).
#[utoipa::path(
    delete,
    path = "/api/v1/dns/zones/{name}",
    operation_id = "delete_dns_zone",
    tag = "dns",
    params(("name" = String, Path, description = "The zone's name")),
    responses(
        crate::openapi::Removed,
        crate::openapi::RecordErrors,
    )
)]
pub async fn remove(
    State(ctx): State<ApiContext>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let name = zone_name(&name)?;
    removed(&ctx, Command::DeleteDnsZone { name }).await
}
