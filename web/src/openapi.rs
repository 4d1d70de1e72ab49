//! `GET /api/v1/openapi.json`: the OpenAPI document of the API, generated from the code.
//!
//! Every handler carries a `#[utoipa::path]` annotation next to it (method, path, parameters,
//! body, answers) and the types it reads and answers derive `utoipa::ToSchema` (the store's
//! model types through kokoa-store's `openapi` feature). [`ApiDoc`] gathers them; an API route
//! added to [`crate::router`] must be listed in its `paths(...)` too (the cluster test `openapi`
//! compares the document with the routes served). The browser UI's HTML pages are not in it.
//!
//! This module also holds schema-only descriptions of answers whose Rust types live where they
//! cannot derive `ToSchema`: the error body (built as JSON by [`crate::ApiError`]), raft's
//! cluster status, and the pulled configs of [`crate::pull`]. They must follow those types; the
//! cluster tests check real answers against them.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use kokoa_store::pulled::{AgentPeer, Backend, EdgeCertificate, EdgePeer, OriginView};
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToResponse, ToSchema};

use crate::api;

/// The document: every route of [`crate::router`] but the browser UI's HTML pages.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Kokoa API",
        description = "Kokoa's control-plane API v1. Admin endpoints take an admin token; \
            registration takes a bootstrap edge token or an agent token made for an origin, \
            config pulls the edge's or agent's own token, join a server token. Writes answer \
            once committed, with the raft log index in `X-Kokoa-Index`."
    ),
    paths(
        api::health::healthz,
        api::health::readyz,
        crate::metrics::serve,
        serve,
        api::cluster::status,
        api::cluster::add_node,
        api::cluster::remove_node,
        api::cluster::join,
        api::origins::create,
        api::origins::list,
        api::origins::get_one,
        api::origins::remove,
        api::routes::create,
        api::routes::list,
        api::routes::get_one,
        api::routes::remove,
        api::tokens::create,
        api::tokens::list,
        api::tokens::revoke,
        api::state::dump,
        api::edges::register,
        api::edges::list,
        api::edges::remove,
        api::edges::my_config,
        api::agents::register,
        api::agents::list,
        api::agents::remove,
        api::agents::my_config,
        api::dns::create,
        api::dns::list,
        api::dns::remove,
        api::zones::create,
        api::zones::list,
        api::zones::remove,
        api::certificates::upload,
        api::certificates::list,
        api::certificates::get,
        api::certificates::remove,
        api::settings::get,
        api::settings::put,
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unavailable
        )
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "cluster", description = "Replicas and membership"),
        (name = "origins", description = "Where services run"),
        (name = "routes", description = "Public hostnames and where they lead"),
        (name = "tokens", description = "Scoped bearer tokens"),
        (name = "state", description = "The whole replicated state"),
        (name = "edge-nodes", description = "Public edges: registration, config pulls, listing"),
        (name = "agents", description = "Agents next to origins: registration, config pulls, listing"),
        (name = "dns", description = "Static DNS records and managed zones"),
        (name = "certificates", description = "TLS certificates the edges serve"),
        (name = "settings", description = "Cluster-wide settings"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme every operation refers to unless it says `security(())`.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>`: a `kokoa.<id>.<secret>` token (or the \
                         operator-chosen admin token)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let rendered = serde_json::to_value(ApiDoc::openapi()).and_then(|mut doc| {
            open_flattened_parts(&mut doc);
            serde_json::to_string_pretty(&doc)
        });
        rendered.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot render the OpenAPI document");
            json!({"error": {"code": "internal", "message": "cannot render the OpenAPI document",
                "details": {}, "retryable": false}})
            .to_string()
        })
    })
}

/// `#[serde(flatten)]` is described as `allOf: [flattened type, other fields]`. When the
/// flattened type is `deny_unknown_fields` (the store's records), its `additionalProperties:
/// false` would refuse the other fields (`EdgeView`'s `last_seen`, `Registered`'s `token`), so
/// such parts are inlined without it.
fn open_flattened_parts(doc: &mut Value) {
    let schemas = doc
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or_default();
    visit(doc, &schemas);

    fn visit(value: &mut Value, schemas: &Value) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(parts)) = map.get_mut("allOf") {
                    for part in parts.iter_mut() {
                        let target = part
                            .get("$ref")
                            .and_then(Value::as_str)
                            .and_then(|r| r.strip_prefix("#/components/schemas/"))
                            .and_then(|name| schemas.get(name));
                        if let Some(target) = target.filter(|t| is_closed(t)) {
                            *part = target.clone();
                        }
                        if let Value::Object(part) = part {
                            if part.get("additionalProperties") == Some(&Value::Bool(false)) {
                                part.remove("additionalProperties");
                            }
                        }
                    }
                }
                for child in map.values_mut() {
                    visit(child, schemas);
                }
            }
            Value::Array(items) => {
                for item in items {
                    visit(item, schemas);
                }
            }
            _ => {}
        }
    }

    fn is_closed(schema: &Value) -> bool {
        schema.get("additionalProperties") == Some(&Value::Bool(false))
    }
}

/// `GET /api/v1/openapi.json` (no authentication): this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "health",
    security(()),
    responses((status = 200, description = "The OpenAPI document of this API", body = Object))
)]
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

/// An error answer: `{"error":{"code","message","details","retryable"}}`.
#[derive(Debug, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `invalid_json`, `unauthorized`, `not_found`, `hostname_taken`, ...
    #[schema(example = "not_found")]
    pub code: String,
    /// For people.
    pub message: String,
    /// More about the error; `{}` when there is nothing more.
    pub details: HashMap<String, serde_json::Value>,
    /// True when the same request may succeed later or on another replica.
    pub retryable: bool,
}

/// Bad input: JSON (`invalid_json`), a field (`invalid_name`, `invalid_hostname`,
/// `unknown_origin`, ...), the query string (`invalid_query`) or a path parameter
/// (`invalid_path`).
#[derive(Debug, ToResponse)]
pub struct BadRequest(pub ErrorBody);

/// No usable bearer token (`unauthorized`): missing, malformed, unknown, revoked, expired or
/// used up.
#[derive(Debug, ToResponse)]
pub struct Unauthorized(pub ErrorBody);

/// The token is valid but of another role or bound to something else (`forbidden`).
#[derive(Debug, ToResponse)]
pub struct Forbidden(pub ErrorBody);

/// No such record (`not_found`).
#[derive(Debug, ToResponse)]
pub struct NotFound(pub ErrorBody);

/// Conflicts with the state: `name_taken`, `hostname_taken`, `origin_in_use`,
/// `pool_exhausted`, `membership`, ...
#[derive(Debug, ToResponse)]
pub struct Conflict(pub ErrorBody);

/// The body is larger than 64 KiB (`body_too_large`).
#[derive(Debug, ToResponse)]
pub struct PayloadTooLarge(pub ErrorBody);

/// The body is not `Content-Type: application/json` (`unsupported_media_type`).
#[derive(Debug, ToResponse)]
pub struct UnsupportedMediaType(pub ErrorBody);

/// This replica cannot serve now (`no_leader`, `unavailable`, `behind`); `retryable`, maybe on
/// another replica.
#[derive(Debug, ToResponse)]
pub struct Unavailable(pub ErrorBody);

/// The answer to a delete: 204 with the write's raft log index.
#[derive(Debug, IntoResponses)]
#[response(
    status = 204,
    description = "Removed",
    headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))
)]
pub struct Removed;

/// Declares a set of error responses (an [`IntoResponses`] enum) from `status => Response`
/// pairs, so each endpoint lists one set instead of the same lines again.
macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident { $($status:literal => $response:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, IntoResponses)]
        pub enum $name {
            $(
                #[response(status = $status)]
                $response(#[ref_response] $response),
            )+
        }
    };
}

error_set!(
    /// The errors of an admin write with a JSON body.
    WriteErrors { 400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 409 => Conflict,
        413 => PayloadTooLarge, 415 => UnsupportedMediaType, 503 => Unavailable }
);
error_set!(
    /// The errors of removing a record that others may still use.
    DeleteErrors { 400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 404 => NotFound,
        409 => Conflict, 503 => Unavailable }
);
error_set!(
    /// The errors of reading or removing one record.
    RecordErrors { 400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 404 => NotFound,
        503 => Unavailable }
);
error_set!(
    /// The errors of an admin read.
    ReadErrors { 400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 503 => Unavailable }
);

/// The query of the config long-polls ([`crate::pull::PullQuery`]).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PullParams {
    /// The version the caller has: wait for a newer one. Without it the answer is immediate.
    pub after: Option<u64>,
    /// Seconds to wait for a version above `after`: 0 (the default) answers at once; at most 60
    /// are used.
    pub wait: Option<u64>,
}

/// A replica's view of the cluster (raft's `ClusterStatus`).
#[derive(Debug, ToSchema)]
#[schema(as = ClusterStatus)]
pub struct ClusterStatusDoc {
    /// This replica's id.
    pub node_id: u64,
    /// The leader this replica knows, if any.
    pub leader_id: Option<u64>,
    pub term: u64,
    /// Raft log index applied to this replica's state.
    pub applied_index: u64,
    /// Log index of the last command that changed the state.
    pub version: u64,
    pub state: ReplicaRole,
    pub members: Vec<MemberDoc>,
}

/// A replica's raft role.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

/// A member of the raft membership.
#[derive(Debug, ToSchema)]
#[schema(as = Member)]
pub struct MemberDoc {
    pub id: u64,
    pub peer_addr: String,
    pub api_addr: String,
    /// False for a learner.
    pub voter: bool,
}

/// What an edge pulls (`GET /api/v1/edge-nodes/me/config`).
#[derive(Debug, ToSchema)]
#[schema(as = EdgeConfig)]
pub struct EdgeConfigDoc {
    /// The state version the config was read at.
    pub version: u64,
    /// SHA-256 (hex) of the payload without `version`, `config_hash` and `stale`.
    pub config_hash: String,
    /// True when this replica has not heard from a leader for 5 s.
    pub stale: bool,
    pub edge: EdgePeer,
    /// Hostname -> backend, for every route.
    pub routes: BTreeMap<String, Backend>,
    pub hostnames: Vec<String>,
    /// Agents of tunnel origins.
    pub peers: Vec<AgentPeer>,
    pub certificates: Vec<EdgeCertificate>,
    /// ACME HTTP-01 token -> key authorization.
    pub acme_http01: BTreeMap<String, String>,
}

/// What an agent pulls (`GET /api/v1/agents/me/config`): its origin only.
#[derive(Debug, ToSchema)]
#[schema(as = AgentConfig)]
pub struct AgentConfigDoc {
    pub version: u64,
    pub config_hash: String,
    pub stale: bool,
    pub agent: AgentPeer,
    pub origin: OriginView,
    /// Every edge to dial.
    pub edges: Vec<EdgePeer>,
    /// Hostname -> target, for this origin's routes only.
    pub routes: BTreeMap<String, String>,
    /// The only targets this agent may forward to.
    pub targets: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_json_with_the_bearer_scheme() {
        let doc: serde_json::Value = serde_json::from_str(document()).expect("JSON");
        assert_eq!(
            doc.pointer("/components/securitySchemes/bearer/scheme"),
            Some(&serde_json::json!("bearer"))
        );
        assert!(doc.pointer("/paths/~1api~1v1~1origins/post").is_some());
    }
}
