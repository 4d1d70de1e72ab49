//! `/api/v1/dns/records`: static records served by the built-in DNS (`kokoa dns add`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::validate::normalize_dns_record;
use kokoa_store::{DnsRecord, DnsType};
use serde::Deserialize;

use super::{committed, new_id, Items};
use crate::auth::unix_now;
use crate::extract::{ApiJson, ReadMode};
use crate::{ApiContext, ApiError};

/// TTL of a record made without one.
pub const DEFAULT_TTL: u32 = 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRecord {
    /// Relative to the zone (`app1`), or `@` for the apex.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: DnsType,
    pub value: String,
    pub ttl: Option<u32>,
}

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

pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<DnsRecord>>, ApiError> {
    Ok(Json(Items {
        items: ctx.read(mode, |r| r.dns_records()).await?,
    }))
}

pub async fn remove(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let index = ctx.write(Command::DeleteDnsRecord { id }).await?;
    Ok(committed::<()>(StatusCode::NO_CONTENT, index, None))
}
