//! The API's handlers, a module per resource, and the small helpers they share.

pub mod agents;
pub mod certificates;
pub mod cluster;
pub mod dns;
pub mod edges;
pub mod health;
pub mod origins;
pub mod routes;
pub mod settings;
pub mod state;
pub mod tokens;
pub mod zones;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use serde::Serialize;

use crate::INDEX_HEADER;

/// A new record id: `prefix`, the time in milliseconds (12 hex digits) and 8 random hex digits.
///
/// Ids made close together sort together, so inserts land on the last pages of the state's
/// B-trees instead of dirtying a random page each (several times less written per commit).
pub(crate) fn new_id(prefix: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut random = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut random);
    format!(
        "{prefix}_{:012x}{}",
        millis & 0xffff_ffff_ffff,
        hex::encode(random)
    )
}

/// A committed write's answer: `status`, the body, and `X-Kokoa-Index`.
pub(crate) fn committed<T: Serialize>(status: StatusCode, index: u64, body: Option<T>) -> Response {
    let mut resp = match body {
        Some(b) => (status, Json(b)).into_response(),
        None => status.into_response(),
    };
    resp.headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(index));
    resp
}

/// Commits a removal and answers 204 with `X-Kokoa-Index`.
pub(crate) async fn removed(
    ctx: &crate::ApiContext,
    cmd: kokoa_raft::Command,
) -> Result<Response, crate::ApiError> {
    let index = ctx.write(cmd).await?;
    Ok(committed::<()>(StatusCode::NO_CONTENT, index, None))
}

/// A list answer: `{"items": [...]}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}
