//! Kokoa's HTTP API (v1): the admin endpoints over the replicated state, health and readiness.
//!
//! Handlers turn requests into [`kokoa_store::Command`]s (choosing ids and timestamps: the
//! proposer's job) and hand them to the [`RaftNode`]; reads come from the local redb state,
//! behind a linearizable read barrier unless `?stale=true`. This crate must never touch redb
//! tables directly or talk to other replicas itself.

pub mod api;
pub mod auth;
pub mod certs;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod pull;
pub mod pull_cache;
pub mod seen;
pub mod token_cache;
pub mod ui;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use axum::Router;
use kokoa_raft::{Command, Outcome, RaftNode};
use kokoa_store::state_db::StateReader;
use kokoa_store::StoreError;

pub use error::ApiError;
use extract::{ReadMode, MAX_BODY};

/// How long a handler waits for its own write to reach the local state.
const READ_AFTER_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Header carrying the raft log index of a committed write.
pub const INDEX_HEADER: &str = "x-kokoa-index";

/// What every handler needs.
#[derive(Clone)]
pub struct ApiContext {
    pub node: RaftNode,
    /// Embedded in server (join) tokens.
    pub cluster_secret: Arc<str>,
    /// Tokens already checked, for the hot path of authentication.
    pub tokens: Arc<token_cache::TokenCache>,
    /// When edges and agents last pulled from this replica.
    pub seen: Arc<seen::SeenRegistry>,
    /// What `GET /metrics` reports beyond the raft status.
    pub metrics: Arc<metrics::Metrics>,
    /// Pull answers already built, per edge or agent.
    pub pulls: Arc<pull_cache::PullCache>,
    /// Seals certificate keys with the cluster key.
    pub sealer: Arc<certs::Sealer>,
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext")
            .field("node", &self.node)
            .field("cluster_secret", &"<masked>")
            .finish()
    }
}

impl ApiContext {
    /// The context for `node`'s API.
    pub fn new(node: RaftNode, cluster_secret: &str) -> Self {
        ApiContext {
            node,
            cluster_secret: cluster_secret.into(),
            sealer: Arc::new(certs::Sealer::new(cluster_secret)),
            tokens: Default::default(),
            seen: Default::default(),
            metrics: Default::default(),
            pulls: Default::default(),
        }
    }

    /// Reads the local state on a blocking thread.
    pub async fn read_local<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StateReader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let db = self.node.state().clone();
        let result = tokio::task::spawn_blocking(move || f(&db.reader()?))
            .await
            .map_err(|e| StoreError::Corrupt(format!("read task failed: {e}")))?;
        Ok(result?)
    }

    /// Reads the local state once it includes log index `index` (a write just made).
    pub async fn read_after<T: Send + 'static>(
        &self,
        index: u64,
        f: impl FnOnce(&StateReader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        if !self.node.wait_applied(index, READ_AFTER_WRITE_WAIT).await {
            return Err(ApiError::from(kokoa_raft::RaftNodeError::Unavailable(
                "this replica is too far behind to show the result".into(),
            )));
        }
        self.read_local(f).await
    }

    /// Reads the state: linearizable unless `mode.stale`.
    pub async fn read<T: Send + 'static>(
        &self,
        mode: ReadMode,
        f: impl FnOnce(&StateReader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        if !mode.stale {
            self.node.read_barrier().await?;
        }
        self.read_local(f).await
    }

    /// Validates and commits `cmd`; returns its log index, or the rejection as an error.
    pub async fn write(&self, cmd: Command) -> Result<u64, ApiError> {
        cmd.validate()?;
        let written = self.node.write(cmd).await?;
        match written.outcome {
            Outcome::Applied => Ok(written.index),
            Outcome::Rejected(r) => Err(r.into()),
            Outcome::Batch(_) => {
                tracing::error!("a single write was answered with a batch outcome");
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                ))
            }
        }
    }
}

/// The API router: `/healthz`, `/readyz` and `/api/v1/*`.
pub fn router(ctx: ApiContext) -> Router {
    let admin = Router::new()
        .route("/api/v1/cluster", get(api::cluster::status))
        .route("/api/v1/cluster/nodes", post(api::cluster::add_node))
        .route(
            "/api/v1/cluster/nodes/{id}",
            delete(api::cluster::remove_node),
        )
        .route(
            "/api/v1/origins",
            get(api::origins::list).post(api::origins::create),
        )
        .route(
            "/api/v1/origins/{id}",
            get(api::origins::get_one).delete(api::origins::remove),
        )
        .route(
            "/api/v1/routes",
            get(api::routes::list).post(api::routes::create),
        )
        .route(
            "/api/v1/routes/{id}",
            get(api::routes::get_one).delete(api::routes::remove),
        )
        .route(
            "/api/v1/tokens",
            get(api::tokens::list).post(api::tokens::create),
        )
        .route("/api/v1/tokens/{id}", delete(api::tokens::revoke))
        .route("/api/v1/state", get(api::state::dump))
        .route("/api/v1/edge-nodes", get(api::edges::list))
        .route("/api/v1/edge-nodes/{id}", delete(api::edges::remove))
        .route("/api/v1/agents", get(api::agents::list))
        .route("/api/v1/agents/{id}", delete(api::agents::remove))
        .route(
            "/api/v1/dns/records",
            get(api::dns::list).post(api::dns::create),
        )
        .route("/api/v1/dns/records/{id}", delete(api::dns::remove))
        .route(
            "/api/v1/dns/zones",
            get(api::zones::list).post(api::zones::create),
        )
        .route("/api/v1/dns/zones/{name}", delete(api::zones::remove))
        .route(
            "/api/v1/certificates",
            get(api::certificates::list).post(api::certificates::upload),
        )
        .route(
            "/api/v1/certificates/{id}",
            get(api::certificates::get).delete(api::certificates::remove),
        )
        .route(
            "/api/v1/settings",
            get(api::settings::get).put(api::settings::put),
        )
        .route_layer(from_fn_with_state(ctx.clone(), auth::require_admin));
    Router::new()
        .merge(admin)
        .merge(ui::router())
        .route("/api/v1/cluster/join", post(api::cluster::join))
        .route("/api/v1/edge-nodes/register", post(api::edges::register))
        .route("/api/v1/edge-nodes/me/config", get(api::edges::my_config))
        .route("/api/v1/agents/register", post(api::agents::register))
        .route("/api/v1/agents/me/config", get(api::agents::my_config))
        .route("/healthz", get(api::health::healthz))
        .route("/readyz", get(api::health::readyz))
        .route("/metrics", get(metrics::serve))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(from_fn_with_state(ctx.metrics.clone(), metrics::track))
        .with_state(ctx)
}
