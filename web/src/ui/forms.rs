//! The UI's form handlers: sign in and out, and add or remove origins, routes, tokens, DNS
//! records and edges.
//!
//! Each handler turns its form into the JSON API's request type and calls the API's own
//! handler, so validation and rules live in one place. Success redirects (303) to the
//! dashboard with a flash message; a refusal re-renders the dashboard with the API's error
//! message. A result that holds a secret (a new token, an agent's install command) is rendered
//! straight into the answer: it is shown once and never stored in a cookie or a URL.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use kokoa_store::state_db::StateReader;
use kokoa_store::{DnsType, Origin, OriginKind, Role, StoreError};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::pages::{dashboard_response, dns_hint, edge_ips};
use super::session::{clear_cookie, Flash, Session, SESSION_COOKIE};
use super::{html, pages, see_other, unavailable, AdminForm, PublicForm, Site};
use crate::auth::{authenticate, unix_now};
use crate::extract::{ApiJson, ApiPath, ReadMode};
use crate::{api, ApiContext, ApiError};

/// Lifetime of the agent token made with a new origin (it may register several agents).
const AGENT_INSTALL_TOKEN_TTL: u64 = 24 * 3600;
/// Largest API answer body read back.
const MAX_ANSWER: usize = 1 << 20;

/// The body of a successful API answer, as `T`.
async fn answer<T: DeserializeOwned>(result: Result<Response, ApiError>) -> Result<T, ApiError> {
    let resp = result?;
    let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
        .await
        .map_err(|e| internal(&e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| internal(&e.to_string()))
}

/// The API answered something the UI cannot read: a bug, logged, not shown.
fn internal(detail: &str) -> ApiError {
    tracing::error!(detail, "the web UI could not read an API answer");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the server log",
    )
}

/// Back to the dashboard with `flash`.
fn done(ctx: &ApiContext, site: &Site, flash: Flash) -> Response {
    see_other("/", &[flash.set_cookie(&ctx.cluster_secret, site.https)])
}

/// The dashboard again, with the API's refusal on top (and its status).
async fn refused(
    ctx: &ApiContext,
    site: &Site,
    session: &Session,
    what: &str,
    e: ApiError,
) -> Response {
    if e.status.is_server_error() {
        return unavailable(&e);
    }
    let flash = Flash::error(format!("{what}: {}", e.message));
    dashboard_response(ctx, site, session, Some(flash), e.status).await
}

/// The dashboard with a secret on top (rendered, never redirected).
async fn reveal(ctx: &ApiContext, site: &Site, session: &Session, flash: Flash) -> Response {
    dashboard_response(ctx, site, session, Some(flash), StatusCode::OK).await
}

/// A name for a flash message, read from the local state (the id when it is gone).
async fn label(
    ctx: &ApiContext,
    id: &str,
    f: impl FnOnce(&StateReader, &str) -> Result<Option<String>, StoreError> + Send + 'static,
) -> String {
    let key = id.to_string();
    ctx.read_local(move |r| f(r, &key))
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| id.to_string())
}

/// The command that installs an agent for an origin.
pub fn agent_command(base_url: &str, token: &str) -> String {
    format!("kokoa agent --control {base_url} --token {token} --data-dir /var/lib/kokoa-agent")
}

/// The command that starts an edge.
pub fn edge_command(base_url: &str, token: &str) -> String {
    format!(
        "kokoa edge --control {base_url} --token {token} --data-dir /var/lib/kokoa-edge \
         --public-ip <your public IP>"
    )
}

/// `"1h"`, `"7d"`, `"90"` (seconds) → seconds; blank → none.
fn parse_duration(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration (try 3600, 30m, 12h or 7d)"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .map(Some)
        .ok_or_else(|| format!("{text:?} is not a duration (try 3600, 30m, 12h or 7d)"))
}

/// A blank or whole number.
fn parse_number<T: std::str::FromStr>(text: &str, what: &str) -> Result<Option<T>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{what} must be a whole number, not {text:?}"))
}

fn bad_input(message: String) -> ApiError {
    ApiError::bad_request("invalid_form", message)
}

/// A form with no fields but the CSRF token.
#[derive(Debug, Deserialize)]
pub struct NoFields {}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub token: String,
}

/// `POST /ui/login`: checks the admin token like the API does and starts a session.
pub async fn login(
    State(ctx): State<ApiContext>,
    PublicForm { site, form }: PublicForm<LoginForm>,
) -> Response {
    let token = form.token.trim();
    let refused = |text: String| {
        html(
            StatusCode::UNAUTHORIZED,
            pages::login(Some(&Flash::error(text))),
        )
    };
    if token.is_empty() {
        return refused("Paste an admin token.".into());
    }
    match authenticate(&ctx, Some(&format!("Bearer {token}")), Role::Admin).await {
        Ok(token) => {
            let now = unix_now();
            let session = Session::issue(&ctx.cluster_secret, &token.id, now);
            see_other("/", &[session.set_cookie(site.https, now)])
        }
        Err(e) if e.status.is_server_error() => unavailable(&e),
        Err(e) if e.status == StatusCode::FORBIDDEN => {
            refused("That is not an admin token.".into())
        }
        Err(e) => refused(format!("Sign-in failed: {}.", e.message)),
    }
}

/// `POST /ui/logout`: forgets the session in this browser.
pub async fn logout(State(ctx): State<ApiContext>, form: AdminForm<NoFields>) -> Response {
    let https = form.site.https;
    see_other(
        "/ui/login",
        &[
            clear_cookie(SESSION_COOKIE, https),
            Flash::ok("Signed out.").set_cookie(&ctx.cluster_secret, https),
        ],
    )
}

#[derive(Debug, Deserialize)]
pub struct OriginForm {
    pub name: String,
    #[serde(default)]
    pub kind: String,
}

/// `POST /ui/origins`: adds an origin; for a tunnel origin, also makes an agent token and
/// shows the agent's install command.
pub async fn add_origin(
    State(ctx): State<ApiContext>,
    AdminForm {
        session,
        site,
        form,
    }: AdminForm<OriginForm>,
) -> Response {
    let what = "Could not add the origin";
    let kind = match form.kind.as_str() {
        "" | "tunnel" => OriginKind::Tunnel,
        "direct" => OriginKind::Direct,
        other => {
            let e = bad_input(format!("unknown kind {other:?}"));
            return refused(&ctx, &site, &session, what, e).await;
        }
    };
    let req = api::origins::CreateOrigin {
        name: form.name.trim().to_string(),
        kind,
    };
    let origin: Origin =
        match answer(api::origins::create(State(ctx.clone()), ApiJson(req)).await).await {
            Ok(origin) => origin,
            Err(e) => return refused(&ctx, &site, &session, what, e).await,
        };
    if origin.kind == OriginKind::Direct {
        let flash = Flash::ok(format!(
            "Origin {} added. Add a route to publish one of its services.",
            origin.name
        ));
        return done(&ctx, &site, flash);
    }
    let req = api::tokens::CreateToken {
        role: Role::Agent,
        ttl_secs: Some(AGENT_INSTALL_TOKEN_TTL),
        max_uses: None,
        origin_id: Some(origin.id.clone()),
    };
    match answer::<MadeToken>(api::tokens::create(State(ctx.clone()), ApiJson(req)).await).await {
        Ok(made) => {
            let flash = Flash::ok(format!(
                "Origin {} added. Run this on the origin's host to install its agent. The \
                 command holds an agent token valid for 24 hours; it is shown only now.",
                origin.name
            ))
            .with_block(
                "Agent install command",
                agent_command(&site.base_url, &made.token),
            );
            reveal(&ctx, &site, &session, flash).await
        }
        Err(e) => {
            let flash = Flash::error(format!(
                "Origin {} added, but its agent token could not be made ({}). Create an agent \
                 token for it below.",
                origin.name, e.message
            ));
            reveal(&ctx, &site, &session, flash).await
        }
    }
}

/// `POST /ui/origins/{id}/delete`.
pub async fn delete_origin(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    AdminForm { session, site, .. }: AdminForm<NoFields>,
) -> Response {
    let name = label(&ctx, &id, |r, id| Ok(r.origin(id)?.map(|o| o.name))).await;
    match api::origins::remove(State(ctx.clone()), ApiPath(id)).await {
        Ok(_) => done(&ctx, &site, Flash::ok(format!("Origin {name} deleted."))),
        Err(e) => {
            let what = format!("Could not delete origin {name}");
            refused(&ctx, &site, &session, &what, e).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RouteForm {
    pub hostname: String,
    pub origin_id: String,
    pub target: String,
}

/// `POST /ui/routes`: adds a route and shows the DNS records to create for it.
pub async fn add_route(
    State(ctx): State<ApiContext>,
    AdminForm {
        session,
        site,
        form,
    }: AdminForm<RouteForm>,
) -> Response {
    let req = api::routes::CreateRoute {
        hostname: form.hostname.trim().to_string(),
        origin_id: form.origin_id.trim().to_string(),
        target: form.target.trim().to_string(),
        rate_limit: None,
        allow_http: false,
    };
    let route: kokoa_store::Route =
        match answer(api::routes::create(State(ctx.clone()), ApiJson(req)).await).await {
            Ok(route) => route,
            Err(e) => return refused(&ctx, &site, &session, "Could not add the route", e).await,
        };
    let edges = api::edges::list(State(ctx.clone()), ReadMode { stale: true })
        .await
        .map(|j| j.0.items)
        .unwrap_or_default();
    let ips = edge_ips(&edges);
    let flash = Flash::ok(format!("Route {} added.", route.hostname));
    let flash = if ips.is_empty() {
        Flash {
            text: format!(
                "{} No edge is registered yet: once one is, create an A record for {} at your \
                 DNS provider pointing at each edge's public IP.",
                flash.text, route.hostname
            ),
            ..flash
        }
    } else {
        flash.with_block(
            "Create these records at your DNS provider",
            dns_hint(&route.hostname, &ips).join("\n"),
        )
    };
    done(&ctx, &site, flash)
}

/// `POST /ui/routes/{id}/delete`.
pub async fn delete_route(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    AdminForm { session, site, .. }: AdminForm<NoFields>,
) -> Response {
    let name = label(&ctx, &id, |r, id| Ok(r.route(id)?.map(|r| r.hostname))).await;
    match api::routes::remove(State(ctx.clone()), ApiPath(id)).await {
        Ok(_) => done(&ctx, &site, Flash::ok(format!("Route {name} deleted."))),
        Err(e) => {
            let what = format!("Could not delete route {name}");
            refused(&ctx, &site, &session, &what, e).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    pub role: String,
    #[serde(default)]
    pub ttl: String,
    #[serde(default)]
    pub max_uses: String,
    #[serde(default)]
    pub origin_id: String,
}

/// The part of a token-create answer the UI shows.
#[derive(Debug, Deserialize)]
struct MadeToken {
    id: String,
    token: String,
}

impl TokenForm {
    fn to_request(&self) -> Result<api::tokens::CreateToken, String> {
        let role = match self.role.as_str() {
            "admin" => Role::Admin,
            "server" => Role::Server,
            "edge" => Role::Edge,
            "agent" => Role::Agent,
            other => return Err(format!("unknown role {other:?}")),
        };
        let origin_id = Some(self.origin_id.trim())
            .filter(|o| !o.is_empty())
            .map(str::to_string);
        Ok(api::tokens::CreateToken {
            role,
            ttl_secs: parse_duration(&self.ttl)?,
            max_uses: parse_number(&self.max_uses, "max uses")?,
            origin_id,
        })
    }
}

/// `POST /ui/tokens`: makes a token and shows it once, with the command that uses it.
pub async fn add_token(
    State(ctx): State<ApiContext>,
    AdminForm {
        session,
        site,
        form,
    }: AdminForm<TokenForm>,
) -> Response {
    let what = "Could not create the token";
    let req = match form.to_request() {
        Ok(req) => req,
        Err(message) => return refused(&ctx, &site, &session, what, bad_input(message)).await,
    };
    let role = req.role;
    let made: MadeToken =
        match answer(api::tokens::create(State(ctx.clone()), ApiJson(req)).await).await {
            Ok(made) => made,
            Err(e) => return refused(&ctx, &site, &session, what, e).await,
        };
    let base = &site.base_url;
    let flash = Flash::ok(format!(
        "{} token {} created. Copy it now: it is not shown again.",
        capitalized(role.as_str()),
        made.id
    ))
    .with_block("Token", made.token.clone());
    let flash = match role {
        Role::Edge => flash.with_block(
            "Run on the edge server (put its public IP in)",
            edge_command(base, &made.token),
        ),
        Role::Agent => {
            flash.with_block("Run on the origin's host", agent_command(base, &made.token))
        }
        Role::Server => flash.with_block(
            "Run on the new replica (fill in its id and addresses)",
            format!(
                "kokoa server --id <N> --data-dir /var/lib/kokoa --listen <API ADDR> \
                 --peer-listen <PEER ADDR> --join {base} --join-token {}",
                made.token
            ),
        ),
        Role::Admin => flash.with_block(
            "Use with the CLI",
            format!("export KOKOA_SERVER={base} KOKOA_TOKEN={}", made.token),
        ),
    };
    reveal(&ctx, &site, &session, flash).await
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `POST /ui/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    AdminForm { session, site, .. }: AdminForm<NoFields>,
) -> Response {
    let own = id == session.token_id;
    match api::tokens::revoke(State(ctx.clone()), ApiPath(id.clone())).await {
        // Revoking the session's own token ends the session: the redirect lands on sign-in.
        Ok(_) if own => see_other(
            "/ui/login",
            &[
                clear_cookie(SESSION_COOKIE, site.https),
                Flash::ok(format!(
                    "Token {id} revoked. It was this session's token: sign in with another."
                ))
                .set_cookie(&ctx.cluster_secret, site.https),
            ],
        ),
        Ok(_) => done(&ctx, &site, Flash::ok(format!("Token {id} revoked."))),
        Err(e) => {
            let what = format!("Could not revoke token {id}");
            refused(&ctx, &site, &session, &what, e).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DnsForm {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub value: String,
    #[serde(default)]
    pub ttl: String,
}

impl DnsForm {
    fn to_request(&self) -> Result<api::dns::CreateRecord, String> {
        let rtype = match self.rtype.to_ascii_uppercase().as_str() {
            "A" => DnsType::A,
            "AAAA" => DnsType::AAAA,
            "CNAME" => DnsType::CNAME,
            "TXT" => DnsType::TXT,
            other => return Err(format!("unknown record type {other:?}")),
        };
        Ok(api::dns::CreateRecord {
            name: self.name.trim().to_string(),
            rtype,
            value: self.value.trim().to_string(),
            ttl: parse_number(&self.ttl, "TTL")?,
        })
    }
}

/// `POST /ui/dns`.
pub async fn add_dns_record(
    State(ctx): State<ApiContext>,
    AdminForm {
        session,
        site,
        form,
    }: AdminForm<DnsForm>,
) -> Response {
    let what = "Could not add the DNS record";
    let req = match form.to_request() {
        Ok(req) => req,
        Err(message) => return refused(&ctx, &site, &session, what, bad_input(message)).await,
    };
    match answer::<kokoa_store::DnsRecord>(api::dns::create(State(ctx.clone()), ApiJson(req)).await)
        .await
    {
        Ok(r) => {
            let text = format!("DNS record {} {:?} {} added.", r.name, r.rtype, r.value);
            done(&ctx, &site, Flash::ok(text))
        }
        Err(e) => refused(&ctx, &site, &session, what, e).await,
    }
}

/// `POST /ui/dns/{id}/delete`.
pub async fn delete_dns_record(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    AdminForm { session, site, .. }: AdminForm<NoFields>,
) -> Response {
    let name = label(&ctx, &id, |r, id| Ok(r.dns_record(id)?.map(|d| d.name))).await;
    match api::dns::remove(State(ctx.clone()), ApiPath(id)).await {
        Ok(_) => done(
            &ctx,
            &site,
            Flash::ok(format!("DNS record {name} deleted.")),
        ),
        Err(e) => {
            let what = format!("Could not delete DNS record {name}");
            refused(&ctx, &site, &session, &what, e).await
        }
    }
}

/// `POST /ui/edges/{id}/delete`: removes an edge record (its token stops working).
pub async fn delete_edge(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    AdminForm { session, site, .. }: AdminForm<NoFields>,
) -> Response {
    let name = label(&ctx, &id, |r, id| Ok(r.edge_node(id)?.map(|e| e.name))).await;
    match api::edges::remove(State(ctx.clone()), ApiPath(id)).await {
        Ok(_) => done(&ctx, &site, Flash::ok(format!("Edge {name} removed."))),
        Err(e) => {
            let what = format!("Could not remove edge {name}");
            refused(&ctx, &site, &session, &what, e).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration(""), Ok(None));
        assert_eq!(parse_duration("90"), Ok(Some(90)));
        assert_eq!(parse_duration("30m"), Ok(Some(1800)));
        assert_eq!(parse_duration("12h"), Ok(Some(43_200)));
        assert_eq!(parse_duration(" 7d "), Ok(Some(604_800)));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5 years").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
    }

    #[test]
    fn token_forms_become_api_requests() {
        let form = TokenForm {
            role: "agent".into(),
            ttl: "1h".into(),
            max_uses: "3".into(),
            origin_id: "o_1".into(),
        };
        let req = form.to_request().unwrap();
        assert_eq!(req.role, Role::Agent);
        assert_eq!(req.ttl_secs, Some(3600));
        assert_eq!(req.max_uses, Some(3));
        assert_eq!(req.origin_id.as_deref(), Some("o_1"));
        let form = TokenForm {
            role: "edge".into(),
            ttl: String::new(),
            max_uses: "many".into(),
            origin_id: String::new(),
        };
        assert!(form.to_request().is_err());
    }

    #[test]
    fn forms_ignore_the_csrf_field() {
        let form: RouteForm = serde_urlencoded::from_str(
            "_csrf=abc&hostname=app.example.com&origin_id=o_1&target=localhost%3A8080",
        )
        .unwrap();
        assert_eq!(form.target, "localhost:8080");
        let _: NoFields = serde_urlencoded::from_str("_csrf=abc").unwrap();
    }

    #[test]
    fn commands_name_the_replica_and_token() {
        assert_eq!(
            agent_command("http://10.0.0.1:7000", "kokoa.a.b"),
            "kokoa agent --control http://10.0.0.1:7000 --token kokoa.a.b --data-dir /var/lib/kokoa-agent"
        );
        assert!(edge_command("http://h", "T").ends_with("--public-ip <your public IP>"));
    }
}
