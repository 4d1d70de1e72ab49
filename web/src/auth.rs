//! Bearer tokens: how they look, how they are made, and how a presented one is checked.
//!
//! A token reads `kokoa.<id>.<secret>`; a server (join) token adds `.<cluster secret>` in
//! base64url so a new replica learns the secret from the token alone. Only the SHA-256 of the
//! secret part is stored. An operator-chosen token (`KOKOA_INIT_ADMIN_TOKEN`) that is not in
//! this form is stored under an id derived from its hash.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kokoa_store::{Role, Subject, Token};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::ApiContext;

/// Shortest operator-chosen token accepted.
pub const MIN_OPAQUE_TOKEN_LEN: usize = 16;
/// Longest token accepted in a header.
const MAX_TOKEN_LEN: usize = 1024;

/// A token as presented: its id and secret part, and the cluster secret a join token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedToken {
    pub id: String,
    pub secret: String,
    pub cluster_secret: Option<String>,
}

impl PresentedToken {
    /// Splits a token string into its parts.
    pub fn parse(token: &str) -> Result<Self, ApiError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::unauthorized("malformed token"));
        }
        let parts: Vec<&str> = token.split('.').collect();
        match parts.as_slice() {
            ["kokoa", id, secret] => Ok(PresentedToken {
                id: id.to_string(),
                secret: secret.to_string(),
                cluster_secret: None,
            }),
            ["kokoa", id, secret, cluster] => {
                let bytes = URL_SAFE_NO_PAD
                    .decode(cluster)
                    .map_err(|_| ApiError::unauthorized("malformed token"))?;
                let cluster = String::from_utf8(bytes)
                    .map_err(|_| ApiError::unauthorized("malformed token"))?;
                Ok(PresentedToken {
                    id: id.to_string(),
                    secret: secret.to_string(),
                    cluster_secret: Some(cluster),
                })
            }
            _ if token.len() >= MIN_OPAQUE_TOKEN_LEN && !token.starts_with("kokoa.") => {
                Ok(PresentedToken {
                    id: opaque_token_id(token),
                    secret: token.to_string(),
                    cluster_secret: None,
                })
            }
            _ => Err(ApiError::unauthorized("malformed token")),
        }
    }
}

/// The id under which an operator-chosen token is stored.
pub fn opaque_token_id(token: &str) -> String {
    format!("op{}", &hash_secret(token)[..16])
}

/// Lowercase hex SHA-256 of a token's secret part.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A freshly made token: the record to store and the string to show once.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub record: Token,
    pub secret_string: String,
}

/// Makes a token. `cluster_secret` is embedded for server tokens. `chosen` is an
/// operator-chosen value (`KOKOA_INIT_ADMIN_TOKEN`) instead of a random one.
/// What a new token may do, for how long and how often, and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub role: Role,
    pub ttl_secs: Option<u64>,
    pub max_uses: Option<u32>,
    pub subject: Option<Subject>,
}

impl TokenSpec {
    /// A token of `role` without limits or subject.
    pub fn role(role: Role) -> Self {
        TokenSpec {
            role,
            ttl_secs: None,
            max_uses: None,
            subject: None,
        }
    }
}

pub fn new_token(
    spec: TokenSpec,
    now: u64,
    cluster_secret: &str,
    chosen: Option<&str>,
) -> Result<NewToken, ApiError> {
    let role = spec.role;
    let (id, secret, display) = match chosen {
        Some(value) => {
            let p = PresentedToken::parse(value)?;
            (p.id, p.secret, value.trim().to_string())
        }
        None => {
            let mut rng = rand::thread_rng();
            let mut id = [0u8; 6];
            let mut secret = [0u8; 24];
            rng.fill_bytes(&mut id);
            rng.fill_bytes(&mut secret);
            let (id, secret) = (hex::encode(id), hex::encode(secret));
            let mut display = format!("kokoa.{id}.{secret}");
            if role == Role::Server {
                display.push('.');
                display.push_str(&URL_SAFE_NO_PAD.encode(cluster_secret.as_bytes()));
            }
            (id, secret, display)
        }
    };
    Ok(NewToken {
        record: Token {
            id,
            role,
            secret_hash: hash_secret(&secret),
            created_at: now,
            expires_at: spec.ttl_secs.map(|t| now.saturating_add(t)),
            max_uses: spec.max_uses,
            uses: 0,
            revoked: false,
            subject: spec.subject,
        },
        secret_string: display,
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Finds and checks the bearer token of a request: it must exist, match, be usable now and
/// have `role`.
pub async fn authenticate(
    ctx: &ApiContext,
    header: Option<&str>,
    role: Role,
) -> Result<Token, ApiError> {
    let raw = header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            ApiError::unauthorized("missing bearer token (Authorization: Bearer ...)")
        })?;
    let presented = PresentedToken::parse(raw)?;
    let token = find_token(ctx, &presented.id).await?;
    if !constant_time_eq(
        hash_secret(&presented.secret).as_bytes(),
        token.secret_hash.as_bytes(),
    ) {
        return Err(ApiError::unauthorized("unknown token"));
    }
    token
        .usable_at(unix_now())
        .map_err(|r| ApiError::unauthorized(r.to_string()))?;
    if token.role != role {
        return Err(ApiError::forbidden(format!(
            "this endpoint needs {} token, not {} token",
            with_article(role),
            with_article(token.role)
        )));
    }
    Ok(token)
}

/// "an admin", "a server", ...
fn with_article(role: Role) -> String {
    let name = role.as_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// Looks a token up: from the cache when no token changed since it was read, else from the
/// local state (and, if absent there, once more after a read barrier: a token made a moment
/// ago may not have reached this replica yet).
pub(crate) async fn lookup_token(ctx: &ApiContext, id: &str) -> Result<Option<Token>, ApiError> {
    let epoch = ctx.node.position().borrow().auth_epoch;
    if let Some(token) = ctx.tokens.get(id, epoch) {
        return Ok(Some(token));
    }
    let lookup = |id: String| ctx.read_local(move |r| r.token(&id));
    let mut token = lookup(id.to_string()).await?;
    if token.is_none() {
        ctx.node.read_barrier().await?;
        token = lookup(id.to_string()).await?;
    }
    if let Some(token) = &token {
        ctx.tokens.put(token.clone(), epoch);
    }
    Ok(token)
}

/// [`lookup_token`], with an unknown token as a 401.
async fn find_token(ctx: &ApiContext, id: &str) -> Result<Token, ApiError> {
    lookup_token(ctx, id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown token"))
}

/// Middleware: the request needs an admin token.
pub async fn require_admin(
    State(ctx): State<ApiContext>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    authenticate(&ctx, header, Role::Admin).await?;
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let spec = TokenSpec {
            ttl_secs: Some(60),
            max_uses: Some(1),
            ..TokenSpec::role(Role::Server)
        };
        let t = new_token(spec, 10, "s3cr.et", None).unwrap();
        let p = PresentedToken::parse(&t.secret_string).unwrap();
        assert_eq!(p.id, t.record.id);
        assert_eq!(hash_secret(&p.secret), t.record.secret_hash);
        assert_eq!(p.cluster_secret.as_deref(), Some("s3cr.et"));
        assert_eq!(t.record.expires_at, Some(70));
        let admin = new_token(TokenSpec::role(Role::Admin), 0, "x", None).unwrap();
        assert_eq!(
            PresentedToken::parse(&admin.secret_string)
                .unwrap()
                .cluster_secret,
            None
        );
    }

    #[test]
    fn chosen_tokens() {
        let t = new_token(
            TokenSpec::role(Role::Admin),
            0,
            "x",
            Some("my-long-admin-token-value"),
        )
        .unwrap();
        let p = PresentedToken::parse("my-long-admin-token-value").unwrap();
        assert_eq!(p.id, t.record.id);
        assert!(PresentedToken::parse("short").is_err());
        assert!(PresentedToken::parse("kokoa.a").is_err());
    }
}
