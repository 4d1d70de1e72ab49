//! `/api/v1/dns/records`: static records served by the built-in DNS (`kokoa dns add`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::normalize_dns_record;
use kokoa_store::{DnsRecord, DnsType};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{committed, new_id, removed, Items};
use crate::auth::unix_now;
use crate::extract::{ApiJson, ApiPath, ReadMode, ReadQuery};
use crate::{ApiContext, ApiError};

/// TTL of a record made without one.
pub const DEFAULT_TTL: u32 = 30;

/// A record to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRecord {
    /// Relative to the zone (`app1`), or `@` for the apex.
    #[schema(example = "app1")]
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: DnsType,
    /// An address for `A`/`AAAA`, a name for `CNAME`, text for `TXT`.
    #[schema(example = "192.0.2.10")]
    pub value: String,
    /// Seconds, at most a week; 30 when absent.
    #[schema(minimum = 1, maximum = 604_800)]
    pub ttl: Option<u32>,
}

/// Adds a static DNS record.
#[utoipa::path(
    post,
    path = "/api/v1/dns/records",
    operation_id = "create_dns_record",
    tag = "dns",
    request_body = CreateRecord,
    responses(
        (status = 201, description = "The record", body = DnsRecord,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
pub async fn create(
    State(ctx): State<ApiContext>,
    ApiJson(req): ApiJson<CreateRecord>,
) -> Result<Response, ApiError> {
    let ttl = req.ttl.unwrap_or(DEFAULT_TTL);
    let (name, value) = normalize_dns_record(&req.name, req.rtype, &req.value, ttl)?;
    let record = DnsRecord {
        id: new_id("d"),
        name,
        rtype: req.rtype,
        value,
        ttl,
        created_at: unix_now(),
    };
    let index = ctx.write(Command::CreateDnsRecord(record.clone())).await?;
    Ok(committed(StatusCode::CREATED, index, Some(record)))
}

/// The static DNS records.
#[utoipa::path(
    get,
    path = "/api/v1/dns/records",
    operation_id = "list_dns_records",
    tag = "dns",
    params(ReadQuery),
    responses(
        (status = 200, description = "The records", body = Items<DnsRecord>),
        crate::openapi::ReadErrors,
    )
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<DnsRecord>>, ApiError> {
    Ok(Json(Items {
        items: ctx.read(mode, |r| r.dns_records()).await?,
    }))
}

/// Removes a static DNS record.
#[utoipa::path(
    delete,
    path = "/api/v1/dns/records/{id}",
    operation_id = "delete_dns_record",
    tag = "dns",
    params(("id" = String, Path, description = "The record's id")),
    responses(
        crate::openapi::Removed,
        crate::openapi::RecordErrors,
    )
)]
pub async fn remove(
    State(ctx): State<ApiContext>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    removed(&ctx, Command::DeleteDnsRecord { id }).await
}
