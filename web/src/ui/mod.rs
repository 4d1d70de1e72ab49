//! The web UI every replica serves at `GET /`: server-rendered HTML with a little inline CSS,
//! no JavaScript.
//!
//! An admin signs in by pasting an admin token; the answer is a stateless, signed session
//! cookie that every replica accepts ([`session`]). One dashboard page ([`pages`]) shows the
//! cluster, edges, origins, routes, tokens and DNS records, with forms to add and remove them.
//! Each form posts to a handler in [`forms`] that checks the session and its CSRF token, calls
//! the JSON API's own handler (so the UI and the API can never disagree on rules), and
//! redirects back with a flash message, or re-renders the page with the error or with a
//! freshly made secret (secrets are shown once and never put in a cookie or URL).
//!
//! This module must never write to the state except through the API's handlers.

pub mod forms;
pub mod pages;
pub mod session;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, LOCATION, ORIGIN, REFERRER_POLICY,
    SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::extract::MAX_BODY;
use crate::ApiContext;
use session::{
    clear_cookie, Flash, Session, SessionState, CSRF_FIELD, FLASH_COOKIE, SESSION_COOKIE,
};

/// The UI's routes, to be merged into the API router.
pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/", get(dashboard))
        .route("/ui/login", get(login_page).post(forms::login))
        .route("/ui/logout", post(forms::logout))
        .route("/ui/origins", post(forms::add_origin))
        .route("/ui/origins/{id}/delete", post(forms::delete_origin))
        .route("/ui/routes", post(forms::add_route))
        .route("/ui/routes/{id}/delete", post(forms::delete_route))
        .route("/ui/tokens", post(forms::add_token))
        .route("/ui/tokens/{id}/revoke", post(forms::revoke_token))
        .route("/ui/dns", post(forms::add_dns_record))
        .route("/ui/dns/{id}/delete", post(forms::delete_dns_record))
        .route("/ui/edges/{id}/delete", post(forms::delete_edge))
}

/// How the browser reached this replica: the URL it used and whether it came over HTTPS
/// (directly, or through a proxy that says so in `X-Forwarded-Proto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// `http(s)://host[:port]`, as the browser sees this replica's API.
    pub base_url: String,
    pub https: bool,
    host: String,
}

impl Site {
    fn from_headers(headers: &HeaderMap, uri_https: bool) -> Site {
        let forwarded_https = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
        let https = uri_https || forwarded_https;
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| is_plausible_host(h))
            .unwrap_or("localhost")
            .to_ascii_lowercase();
        let scheme = if https { "https" } else { "http" };
        Site {
            base_url: format!("{scheme}://{host}"),
            https,
            host,
        }
    }

    /// Whether a browser's `Origin` header names this site (or its proxy's public host).
    /// Requests without `Origin` (non-browser clients) pass: the CSRF token still guards them.
    fn allows_origin(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
            return headers.get(ORIGIN).is_none();
        };
        let Some((_, authority)) = origin.split_once("://") else {
            return false;
        };
        let authority = authority.trim_end_matches('/').to_ascii_lowercase();
        let forwarded = headers
            .get("x-forwarded-host")
            .and_then(|v| v.to_str().ok())
            .map(|h| h.trim().to_ascii_lowercase());
        authority == self.host || forwarded.as_deref() == Some(authority.as_str())
    }
}

/// A `Host` header made of host-name and address characters only.
fn is_plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

impl<S: Send + Sync> FromRequestParts<S> for Site {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let uri_https = parts.uri.scheme_str() == Some("https");
        Ok(Site::from_headers(&parts.headers, uri_https))
    }
}

/// An HTML answer with the UI's security headers: no scripts, no framing, no caching (pages
/// may show a secret once), no referrer to other sites.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: under it browsers send `Origin: null` with form posts, which the
    // origin check would refuse.
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `303 See Other` to `location`, setting `cookies`.
pub fn see_other(location: &'static str, cookies: &[String]) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut()
        .insert(LOCATION, HeaderValue::from_static(location));
    with_cookies(resp, cookies)
}

/// Adds `Set-Cookie` headers.
pub fn with_cookies(mut resp: Response, cookies: &[String]) -> Response {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            resp.headers_mut().append(SET_COOKIE, value);
        }
    }
    resp
}

/// A page with just a title and a message (403, 503, ...).
pub fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    html(status, pages::message(title, text))
}

/// `GET /`: the dashboard, or a redirect to the sign-in page.
async fn dashboard(State(ctx): State<ApiContext>, site: Site, headers: HeaderMap) -> Response {
    let session = match session::current(&ctx, &headers).await {
        Ok(SessionState::Active(session)) => session,
        Ok(SessionState::None) => return see_other("/ui/login", &[]),
        Ok(SessionState::Ended) => {
            let flash = Flash::error("Your session ended. Sign in again.");
            return see_other(
                "/ui/login",
                &[
                    clear_cookie(SESSION_COOKIE, site.https),
                    flash.set_cookie(&ctx.cluster_secret, site.https),
                ],
            );
        }
        Err(e) => return unavailable(&e),
    };
    let flash = Flash::from_request(&ctx.cluster_secret, &headers);
    let mut resp = pages::dashboard_response(&ctx, &site, &session, flash, StatusCode::OK).await;
    if session::cookie(&headers, FLASH_COOKIE).is_some() {
        resp = with_cookies(resp, &[clear_cookie(FLASH_COOKIE, site.https)]);
    }
    resp
}

/// `GET /ui/login`: the sign-in form (or the dashboard for a signed-in admin).
async fn login_page(State(ctx): State<ApiContext>, site: Site, headers: HeaderMap) -> Response {
    if let Ok(SessionState::Active(_)) = session::current(&ctx, &headers).await {
        return see_other("/", &[]);
    }
    let flash = Flash::from_request(&ctx.cluster_secret, &headers);
    let resp = html(StatusCode::OK, pages::login(flash.as_ref()));
    if flash.is_some() {
        return with_cookies(resp, &[clear_cookie(FLASH_COOKIE, site.https)]);
    }
    resp
}

/// The page for a replica that cannot look the session up or read the state right now.
pub fn unavailable(e: &crate::ApiError) -> Response {
    message_page(
        if e.status.is_server_error() {
            e.status
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        "This replica cannot answer right now",
        &format!(
            "{} Try again in a moment, or use another replica.",
            e.message
        ),
    )
}

/// A form posted by a signed-in admin from one of the UI's own pages: the session is active,
/// the `Origin` (when the browser sends one) is this site, and the form's CSRF token is the
/// session's. Anything else is refused before the handler runs: 403 for a bad origin or CSRF
/// token, a redirect to the sign-in page for a missing or ended session.
#[derive(Debug)]
pub struct AdminForm<T> {
    pub session: Session,
    pub site: Site,
    pub form: T,
}

/// Reads a URL-encoded form body of at most [`MAX_BODY`] bytes.
async fn form_body(req: Request, ctx: &ApiContext) -> Result<Bytes, Response> {
    Bytes::from_request(req, ctx).await.map_err(|e| {
        let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        message_page(
            status,
            "The form could not be read",
            &format!("Forms are at most {MAX_BODY} bytes."),
        )
    })
}

/// Parses a form body into `T` (fields it does not name, like the CSRF token, are ignored);
/// a body that does not fit is answered with a 400 page.
fn parse_form<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_urlencoded::from_bytes(body).map_err(|e| {
        Box::new(message_page(
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            &format!("{e}. Reload the page and try again."),
        ))
    })
}

fn forbidden(text: &str) -> Response {
    message_page(StatusCode::FORBIDDEN, "Forbidden", text)
}

impl<T: DeserializeOwned> FromRequest<ApiContext> for AdminForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, ctx: &ApiContext) -> Result<Self, Response> {
        let site = Site::from_headers(req.headers(), req.uri().scheme_str() == Some("https"));
        if !site.allows_origin(req.headers()) {
            return Err(forbidden("This form was sent from another site."));
        }
        let session = match session::current(ctx, req.headers()).await {
            Ok(SessionState::Active(session)) => session,
            Ok(SessionState::None | SessionState::Ended) => {
                let flash = Flash::error("Your session ended. Sign in again.");
                return Err(see_other(
                    "/ui/login",
                    &[
                        clear_cookie(SESSION_COOKIE, site.https),
                        flash.set_cookie(&ctx.cluster_secret, site.https),
                    ],
                ));
            }
            Err(e) => return Err(unavailable(&e)),
        };
        let body = form_body(req, ctx).await?;
        let fields: Vec<(String, String)> = parse_form(&body).map_err(|e| *e)?;
        let csrf = fields
            .iter()
            .find(|(key, _)| key == CSRF_FIELD)
            .map(|(_, value)| value.as_str());
        if !csrf.is_some_and(|c| session.csrf_matches(c)) {
            return Err(forbidden(
                "The form's security token is missing or wrong. Reload the page and try again.",
            ));
        }
        let form = parse_form(&body).map_err(|e| *e)?;
        Ok(AdminForm {
            session,
            site,
            form,
        })
    }
}

/// A form posted without a session (the sign-in form): only the `Origin` check applies.
#[derive(Debug)]
pub struct PublicForm<T> {
    pub site: Site,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<ApiContext> for PublicForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, ctx: &ApiContext) -> Result<Self, Response> {
        let site = Site::from_headers(req.headers(), req.uri().scheme_str() == Some("https"));
        if !site.allows_origin(req.headers()) {
            return Err(forbidden("This form was sent from another site."));
        }
        let body = form_body(req, ctx).await?;
        Ok(PublicForm {
            site,
            form: parse_form(&body).map_err(|e| *e)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn site_comes_from_host_and_proto() {
        let site = Site::from_headers(&headers(&[("host", "127.0.0.1:7000")]), false);
        assert_eq!(site.base_url, "http://127.0.0.1:7000");
        assert!(!site.https);
        let site = Site::from_headers(
            &headers(&[
                ("host", "kokoa.example.com"),
                ("x-forwarded-proto", "https"),
            ]),
            false,
        );
        assert_eq!(site.base_url, "https://kokoa.example.com");
        assert!(site.https);
        let site = Site::from_headers(&headers(&[("host", "<script>")]), false);
        assert_eq!(site.base_url, "http://localhost");
    }

    #[test]
    fn origins_must_match() {
        let site = Site::from_headers(&headers(&[("host", "127.0.0.1:7000")]), false);
        assert!(site.allows_origin(&headers(&[])));
        assert!(site.allows_origin(&headers(&[("origin", "http://127.0.0.1:7000")])));
        assert!(!site.allows_origin(&headers(&[("origin", "http://evil.example")])));
        assert!(!site.allows_origin(&headers(&[("origin", "null")])));
        assert!(site.allows_origin(&headers(&[
            ("origin", "https://kokoa.example.com"),
            ("x-forwarded-host", "kokoa.example.com")
        ])));
    }
}
