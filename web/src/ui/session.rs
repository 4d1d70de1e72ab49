//! The web UI's session cookie, CSRF tokens and signed flash messages: all stateless, so a
//! browser signed in on one replica is signed in on every replica of the cluster.
//!
//! A session cookie is `base64url("<admin token id>.<expires>")` `.` `base64url(mac)`, where
//! `mac` is HMAC-SHA256 under a key derived from the cluster secret. Every request checks the
//! signature and the expiry, then looks up the admin token it names: revoking (or the expiry
//! of) that token ends its sessions at once. The CSRF token of a session is an HMAC of the
//! cookie's value under another derived key, so it needs no storage either. The secret admin
//! token itself never goes into a cookie.

use std::time::Duration;

use axum::http::header::COOKIE;
use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use kokoa_store::Role;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{ApiContext, ApiError};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kokoa_session";
/// Name of the flash-message cookie.
pub const FLASH_COOKIE: &str = "kokoa_flash";
/// Name of the hidden form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a flash message waits for the page that shows it.
const FLASH_TTL: Duration = Duration::from_secs(60);
/// Longest cookie value looked at.
const MAX_COOKIE_LEN: usize = 4096;

/// What a derived key is for; each label gives an independent key.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Session,
    Csrf,
    Flash,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"kokoa web ui session v1",
            Purpose::Csrf => b"kokoa web ui csrf v1",
            Purpose::Flash => b"kokoa web ui flash v1",
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The key for `purpose`: HMAC(cluster secret, label).
fn derived_key(cluster_secret: &str, purpose: Purpose) -> [u8; 32] {
    hmac(cluster_secret.as_bytes(), purpose.label())
}

fn sign(cluster_secret: &str, purpose: Purpose, data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(hmac(&derived_key(cluster_secret, purpose), data))
}

/// Checks `signature` (base64url) over `data` in constant time.
fn verify(cluster_secret: &str, purpose: Purpose, data: &[u8], signature: &str) -> bool {
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let key = derived_key(cluster_secret, purpose);
    let Ok(mut mac) = HmacSha256::new_from_slice(&key) else {
        return false;
    };
    mac.update(data);
    mac.verify_slice(&signature).is_ok()
}

/// `payload.signature`, both base64url.
fn seal(cluster_secret: &str, purpose: Purpose, payload: &[u8]) -> String {
    let encoded = URL_SAFE_NO_PAD.encode(payload);
    let signature = sign(cluster_secret, purpose, encoded.as_bytes());
    format!("{encoded}.{signature}")
}

/// The payload of a value made by [`seal`], if its signature holds.
fn unseal(cluster_secret: &str, purpose: Purpose, value: &str) -> Option<Vec<u8>> {
    if value.len() > MAX_COOKIE_LEN {
        return None;
    }
    let (encoded, signature) = value.split_once('.')?;
    if !verify(cluster_secret, purpose, encoded.as_bytes(), signature) {
        return None;
    }
    URL_SAFE_NO_PAD.decode(encoded).ok()
}

/// A signed-in admin's session, as carried by the cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// The id of the admin token the admin signed in with.
    pub token_id: String,
    /// Unix seconds after which the session is over.
    pub expires_at: u64,
    cookie: String,
    csrf: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session for admin token `token_id`, from `now` for [`SESSION_TTL`].
    pub fn issue(cluster_secret: &str, token_id: &str, now: u64) -> Session {
        let expires_at = now.saturating_add(SESSION_TTL.as_secs());
        let cookie = seal(
            cluster_secret,
            Purpose::Session,
            format!("{token_id}.{expires_at}").as_bytes(),
        );
        Session::from_parts(cluster_secret, token_id.to_string(), expires_at, cookie)
    }

    fn from_parts(cluster_secret: &str, token_id: String, expires_at: u64, cookie: String) -> Self {
        let csrf = sign(cluster_secret, Purpose::Csrf, cookie.as_bytes());
        Session {
            token_id,
            expires_at,
            cookie,
            csrf,
        }
    }

    /// The session a cookie value carries, if it is signed by this cluster and not expired.
    /// (Whether its admin token still works is [`current`]'s business.)
    pub fn parse(cluster_secret: &str, value: &str, now: u64) -> Option<Session> {
        let payload = unseal(cluster_secret, Purpose::Session, value)?;
        let payload = String::from_utf8(payload).ok()?;
        let (token_id, expires_at) = payload.rsplit_once('.')?;
        let expires_at: u64 = expires_at.parse().ok()?;
        if token_id.is_empty() || now >= expires_at {
            return None;
        }
        Some(Session::from_parts(
            cluster_secret,
            token_id.to_string(),
            expires_at,
            value.to_string(),
        ))
    }

    /// The CSRF token every form of this session carries.
    pub fn csrf_token(&self) -> &str {
        &self.csrf
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        let (a, b) = (presented.as_bytes(), self.csrf.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The `Set-Cookie` value that stores this session in the browser.
    pub fn set_cookie(&self, secure: bool, now: u64) -> String {
        let max_age = self.expires_at.saturating_sub(now);
        cookie_header(SESSION_COOKIE, &self.cookie, max_age, secure)
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, and Secure over HTTPS.
fn cookie_header(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    cookie_header(name, "", 0, secure)
}

/// The value of cookie `name` in a request, if present.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// What a request's session cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// No session cookie.
    None,
    /// A cookie that is forged, expired, or names an admin token that no longer works.
    Ended,
    /// A working session.
    Active(Session),
}

/// The request's session, with its admin token looked up: it must still exist, be usable now
/// and be an admin token. The lookup follows a read barrier, so a revocation committed through
/// any replica ends the session on every replica at once (UI pages are few; the barrier is
/// cheap next to rendering). An error means the lookup itself failed (no leader reachable).
pub async fn current(ctx: &ApiContext, headers: &HeaderMap) -> Result<SessionState, ApiError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(SessionState::None);
    };
    let now = crate::auth::unix_now();
    let Some(session) = Session::parse(&ctx.cluster_secret, value, now) else {
        return Ok(SessionState::Ended);
    };
    ctx.node.read_barrier().await?;
    match crate::auth::lookup_token(ctx, &session.token_id).await? {
        Some(token) if token.role == Role::Admin && token.usable_at(now).is_ok() => {
            Ok(SessionState::Active(session))
        }
        _ => Ok(SessionState::Ended),
    }
}

/// A message shown once on the next page, after a redirect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// An error (red) rather than a success (green).
    pub error: bool,
    pub text: String,
    /// Things to copy: (label, value), shown as code blocks.
    pub blocks: Vec<(String, String)>,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            text: text.into(),
            ..Flash::default()
        }
    }

    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            error: true,
            text: text.into(),
            ..Flash::default()
        }
    }

    pub fn with_block(mut self, label: impl Into<String>, value: impl Into<String>) -> Flash {
        self.blocks.push((label.into(), value.into()));
        self
    }

    /// The `Set-Cookie` value carrying this message (signed, so nobody else can plant one).
    /// Never put a secret in a flash: secrets are rendered straight into the response.
    pub fn set_cookie(&self, cluster_secret: &str, secure: bool) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let value = seal(cluster_secret, Purpose::Flash, &json);
        cookie_header(FLASH_COOKIE, &value, FLASH_TTL.as_secs(), secure)
    }

    /// The flash message of a request, if it carries a genuine one.
    pub fn from_request(cluster_secret: &str, headers: &HeaderMap) -> Option<Flash> {
        let value = cookie(headers, FLASH_COOKIE)?;
        let json = unseal(cluster_secret, Purpose::Flash, value)?;
        serde_json::from_slice(&json).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sessions_round_trip_and_expire() {
        let s = Session::issue("secret", "abc123", 1000);
        let value = s.cookie.clone();
        let parsed = Session::parse("secret", &value, 1001).unwrap();
        assert_eq!(parsed, s);
        assert_eq!(parsed.token_id, "abc123");
        assert_eq!(parsed.expires_at, 1000 + SESSION_TTL.as_secs());
        assert!(Session::parse("secret", &value, parsed.expires_at).is_none());
        assert!(Session::parse("other cluster", &value, 1001).is_none());
    }

    #[test]
    fn forged_sessions_are_refused() {
        let s = Session::issue("secret", "abc123", 1000);
        let (_, signature) = s.cookie.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(b"abc123.99999999999");
        assert!(Session::parse("secret", &format!("{forged_payload}.{signature}"), 1001).is_none());
        assert!(Session::parse("secret", "garbage", 1001).is_none());
        assert!(Session::parse("secret", "", 1001).is_none());
        assert!(Session::parse("secret", "a.b.c", 1001).is_none());
    }

    #[test]
    fn csrf_tokens_are_per_session() {
        let a = Session::issue("secret", "abc123", 1000);
        let b = Session::issue("secret", "abc123", 2000);
        assert!(a.csrf_matches(a.csrf_token()));
        assert!(!a.csrf_matches(b.csrf_token()));
        assert!(!a.csrf_matches(""));
        assert_ne!(a.csrf_token(), a.cookie, "the CSRF token is not the cookie");
        // Any replica of the cluster derives the same token from the cookie.
        let again = Session::parse("secret", &a.cookie, 1001).unwrap();
        assert_eq!(again.csrf_token(), a.csrf_token());
    }

    #[test]
    fn cookies_have_the_right_attributes() {
        let s = Session::issue("secret", "abc123", 1000);
        let plain = s.set_cookie(false, 1000);
        assert!(plain.starts_with("kokoa_session="));
        assert!(plain.contains("; HttpOnly") && plain.contains("; SameSite=Strict"));
        assert!(plain.contains("; Path=/") && plain.contains("; Max-Age=43200"));
        assert!(!plain.contains("Secure"));
        assert!(s.set_cookie(true, 1000).ends_with("; Secure"));
        assert!(clear_cookie(SESSION_COOKIE, false).contains("Max-Age=0"));
    }

    #[test]
    fn cookies_are_found_in_headers() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; kokoa_session=xyz"));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "kokoa"), None);
    }

    #[test]
    fn flashes_are_signed() {
        let flash = Flash::ok("Route added.").with_block("DNS", "app.example.com A 192.0.2.1");
        let set = flash.set_cookie("secret", false);
        let value = set
            .strip_prefix("kokoa_flash=")
            .and_then(|v| v.split(';').next())
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("kokoa_flash={value}")).unwrap(),
        );
        assert_eq!(Flash::from_request("secret", &headers), Some(flash));
        assert_eq!(Flash::from_request("other", &headers), None);
    }
}
