//! `/api/v1/agents`: agents register with a token bound to their origin, pull their config with
//! their own token, and are listed and removed by admins.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::{Agent, Role, Subject};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::edges::{bearer_of, Registered};
use super::{committed, new_id, removed, Items};
use crate::auth::{authenticate, new_token, unix_now, TokenSpec};
use crate::extract::{ApiJson, ApiPath, ApiQuery, ReadMode, ReadQuery};
use crate::openapi::{AgentConfigDoc, PullParams};
use crate::pull::{agent_config, serve_pull, PullQuery};
use crate::seen::last_seen;
use crate::{ApiContext, ApiError};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    /// Lowercase letters, digits, `-` and `_`, at most 63.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$", example = "agent-1")]
    pub name: String,
    /// Base64 WireGuard public key (32 bytes); the private key stays on the agent.
    #[schema(pattern = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")]
    pub wg_public_key: String,
}

/// `POST /api/v1/agents/register` with an agent token bound to an origin.
#[utoipa::path(
    post,
    path = "/api/v1/agents/register",
    operation_id = "register_agent",
    tag = "agents",
    request_body = RegisterAgent,
    responses(
        (status = 201, description = "The agent and its own token (shown once)", body = Registered<Agent>,
            headers(("x-kokoa-index" = u64, description = "Raft log index of the write"))),
        crate::openapi::WriteErrors,
    )
)]
pub async fn register(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: Result<ApiJson<RegisterAgent>, ApiError>,
) -> Result<Response, ApiError> {
    let bootstrap = authenticate(&ctx, bearer_of(&headers), Role::Agent).await?;
    // The token first: a caller without one learns nothing about the body we expect.
    let ApiJson(req) = body?;
    let Some(Subject::Origin(origin_id)) = bootstrap.subject.clone() else {
        return Err(ApiError::forbidden(
            "this is an agent's own token; register with an agent token made for an origin",
        ));
    };
    let id = new_id("a");
    let now = unix_now();
    let spec = TokenSpec {
        subject: Some(Subject::Agent(id.clone())),
        ..TokenSpec::role(Role::Agent)
    };
    let made = new_token(spec, now, &ctx.cluster_secret, None)?;
    let agent = Agent {
        id: id.clone(),
        origin_id,
        name: req.name,
        wg_public_key: req.wg_public_key,
        tunnel_ip: None,
        created_at: now,
    };
    let cmd = Command::RegisterAgent {
        agent,
        token: made.record,
        bootstrap_id: bootstrap.id,
        now,
    };
    let index = ctx.write(cmd).await?;
    let stored = ctx
        .read_after(index, move |r| r.agent(&id))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(committed(
        StatusCode::CREATED,
        index,
        Some(Registered {
            record: stored,
            token: made.secret_string,
        }),
    ))
}

/// An agent as admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    #[serde(flatten)]
    pub agent: Agent,
    pub last_seen: Option<u64>,
}

/// The agents, with when they last pulled.
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    operation_id = "list_agents",
    tag = "agents",
    params(ReadQuery),
    responses(
        (status = 200, description = "The agents, with when they were last seen", body = Items<AgentView>),
        crate::openapi::ReadErrors,
    )
)]
pub async fn list(
    State(ctx): State<ApiContext>,
    mode: ReadMode,
) -> Result<Json<Items<AgentView>>, ApiError> {
    let (agents, seen) = ctx
        .read(mode, |r| Ok((r.agents()?, r.last_seen()?)))
        .await?;
    let seen: HashMap<String, u64> = seen.into_iter().collect();
    let items = agents
        .into_iter()
        .map(|agent| AgentView {
            last_seen: last_seen(&ctx, &seen, &agent.id),
            agent,
        })
        .collect();
    Ok(Json(Items { items }))
}

/// Removes an agent; its token stops working.
#[utoipa::path(
    delete,
    path = "/api/v1/agents/{id}",
    operation_id = "delete_agent",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        crate::openapi::Removed,
        crate::openapi::RecordErrors,
    )
)]
pub async fn remove(
    State(ctx): State<ApiContext>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    removed(&ctx, Command::DeleteAgent { id }).await
}

/// `GET /api/v1/agents/me/config` with the agent's own token: its origin's config only.
#[utoipa::path(
    get,
    path = "/api/v1/agents/me/config",
    operation_id = "pull_agent_config",
    tag = "agents",
    params(PullParams),
    responses(
        (status = 200, description = "The config", body = AgentConfigDoc),
        (status = 304, description = "No change within `wait`",
            headers(("x-kokoa-version" = u64, description = "This replica's state version"))),
        crate::openapi::RecordErrors,
    )
)]
pub async fn my_config(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PullQuery>,
) -> Result<Response, ApiError> {
    let token = authenticate(&ctx, bearer_of(&headers), Role::Agent).await?;
    let Some(Subject::Agent(agent_id)) = token.subject else {
        return Err(ApiError::forbidden(
            "a registration token cannot pull config; register first",
        ));
    };
    serve_pull(&ctx, &q, agent_id, "agent", agent_config).await
}
