//! The API's handlers, a module per resource, and the small helpers they share.

pub mod cluster;
pub mod health;
pub mod origins;
pub mod routes;
pub mod state;
pub mod tokens;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use serde::Serialize;

use crate::INDEX_HEADER;

/// A new record id: `prefix` and 12 random hex digits.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
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

/// A list answer: `{"items": [...]}`.
#[derive(Debug, Serialize)]
pub struct Items<T> {
    pub items: Vec<T>,
}
