//! The API's error type and its JSON form:
//! `{"error":{"code","message","details","retryable"}}`. Internal details never leak: storage and
//! raft failures are logged and answered with a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kokoa_raft::RaftNodeError;
use kokoa_store::{Rejection, StoreError, ValidationError};
use serde_json::{json, Value};

/// An error answer of the API.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    pub retryable: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: json!({}),
            retryable: false,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            retryable: true,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "retryable": self.retryable,
        }});
        (self.status, Json(body)).into_response()
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::bad_request(e.code(), e.to_string())
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let status = match &r {
            Rejection::Invalid(_) | Rejection::UnknownOrigin(_) => StatusCode::BAD_REQUEST,
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::NameTaken(_)
            | Rejection::HostnameTaken(_)
            | Rejection::IdTaken(_)
            | Rejection::OriginInUse(..) => StatusCode::CONFLICT,
            Rejection::TokenExpired | Rejection::TokenRevoked | Rejection::TokenUsedUp => {
                StatusCode::UNAUTHORIZED
            }
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, r.code(), r.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error while serving the API");
        ApiError::internal()
    }
}

impl From<RaftNodeError> for ApiError {
    fn from(e: RaftNodeError) -> Self {
        match &e {
            RaftNodeError::NoLeader => ApiError::unavailable("no_leader", e.to_string()),
            RaftNodeError::Membership(_) => {
                ApiError::new(StatusCode::CONFLICT, "membership", e.to_string())
            }
            _ if e.is_retryable() => ApiError::unavailable("unavailable", e.to_string()),
            _ => {
                tracing::error!(error = %e, "raft error while serving the API");
                ApiError::unavailable("unavailable", "this replica cannot serve right now")
            }
        }
    }
}
