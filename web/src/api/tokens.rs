//! `/api/v1/tokens`: scoped bearer tokens, shown once, stored hashed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::{Role, Subject, Token};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{committed, removed, Items};
use crate::auth::{new_token, unix_now, TokenSpec};
use crate::extract::{ApiJson, ApiPath, ReadMode, ReadQuery};
use crate::{ApiContext, ApiError};

/// Longest token lifetime accepted: ten years.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// A token to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub role: Role,
    /// Lifetime in seconds, 1 to ten years; none: no expiry.
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub ttl_secs: Option<u64>,
    /// How many times it may be used; none: no limit.
    #[schema(minimum = 1)]
    pub max_uses: Option<u32>,
    /// The origin an agent token registers agents for (required for `agent`, refused otherwise).
    pub origin_id: Option<String>,
}

/// A token as listed: everything but the hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub role: Role,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub revoked: bool,
    pub subject: Option<Subject>,
}

impl From<Token> for TokenView {
    fn from(t: Token) -> Self {
        TokenView {
            id: t.id,
            role: t.role,
            created_at: t.created_at,
            expires_at: t.expires_at,
            max_uses: t.max_uses,
            uses: t.uses,
            revoked: t.revoked,
            subject: t.subject,
        }
    }
}

/// The answer to a create: the only time the token itself is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: TokenView,
    pub token: String,
}

/// Makes a token; the answer is the only time its secret is shown.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "create_token",
    tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token, with its secret", body = CreatedToken,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
pub async fn create(
    State(ctx): State<ApiContext>,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<Response, ApiError> {
    if req.ttl_secs.is_some_and(|t| t == 0 || t > MAX_TTL_SECS) {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            format!("ttl_secs must be 1 to {MAX_TTL_SECS}"),
        ));
    }
    if req.max_uses == Some(0) {
        return Err(ApiError::bad_request(
            "invalid_max_uses",
            "max_uses must be at least 1",
        ));
    }
    let subject = match (req.role, req.origin_id) {
        (Role::Agent, Some(origin_id)) => {
            let key = origin_id.clone();
            let origin = ctx
                .read(ReadMode::default(), move |r| r.origin(&key))
                .await?;
            if origin.is_none() {
                return Err(ApiError::bad_request(
                    "unknown_origin",
                    format!("there is no origin {origin_id:?}"),
                ));
            }
            Some(Subject::Origin(origin_id))
        }
        (Role::Agent, None) => {
            return Err(ApiError::bad_request(
                "origin_required",
                "an agent token needs the origin_id it registers agents for",
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "origin_not_allowed",
                "only agent tokens are bound to an origin",
            ));
        }
        (_, None) => None,
    };
    let spec = TokenSpec {
        role: req.role,
        ttl_secs: req.ttl_secs,
        max_uses: req.max_uses,
        subject,
    };
    let made = new_token(spec, unix_now(), &ctx.cluster_secret, None)?;
    let index = ctx.write(Command::CreateToken(made.record.clone())).await?;
    let body = CreatedToken {
        view: made.record.into(),
        token: made.secret_string,
    };
    Ok(committed(StatusCode::CREATED, index, Some(body)))
}

/// The tokens, without secrets or hashes.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    operation_id = "list_tokens",
    tag = "tokens",
    params(ReadQuery),
    responses(
        (status = 200, description = "The tokens", body = Items<TokenView>),
        crate::openapi::ReadErrors,
    )
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<TokenView>>, ApiError> {
    let tokens = ctx.read(mode, |r| r.tokens()).await?;
    Ok(Json(Items {
        items: tokens.into_iter().map(TokenView::from).collect(),
    }))
}

/// Revokes a token: it stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    operation_id = "revoke_token",
    tag = "tokens",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked", headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::DeleteErrors,
    )
)]
pub async fn revoke(
    State(ctx): State<ApiContext>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    removed(&ctx, Command::RevokeToken { id }).await
}
