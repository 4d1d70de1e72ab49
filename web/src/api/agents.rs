//! `/api/v1/agents`: agents register with a token bound to their origin, pull their config with
//! their own token, and are listed and removed by admins.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use kokoa_raft::Command;
use kokoa_store::{Agent, Role, Subject};
use serde::{Deserialize, Serialize};

use super::edges::{bearer_of, Registered};
use super::{committed, new_id, Items};
use crate::auth::{authenticate, new_token, unix_now, TokenSpec};
use crate::extract::{ApiJson, ReadMode};
use crate::pull::{agent_config, is_stale, no_change, wait_for_change, PullQuery, Pulled};
use crate::seen::last_seen;
use crate::{ApiContext, ApiError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    pub name: String,
    /// Base64 WireGuard public key; the private key stays on the agent.
    pub wg_public_key: String,
}

/// `POST /api/v1/agents/register` with an agent token bound to an origin.
pub async fn register(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RegisterAgent>,
) -> Result<Response, ApiError> {
    let bootstrap = authenticate(&ctx, bearer_of(&headers), Role::Agent).await?;
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
#[derive(Debug, Serialize)]
pub struct AgentView {
    #[serde(flatten)]
    pub agent: Agent,
    pub last_seen: Option<u64>,
}

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

pub async fn remove(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let index = ctx.write(Command::DeleteAgent { id }).await?;
    Ok(committed::<()>(StatusCode::NO_CONTENT, index, None))
}

/// `GET /api/v1/agents/me/config` with the agent's own token: its origin's config only.
pub async fn my_config(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Query(q): Query<PullQuery>,
) -> Result<Response, ApiError> {
    let token = authenticate(&ctx, bearer_of(&headers), Role::Agent).await?;
    let Some(Subject::Agent(agent_id)) = token.subject else {
        return Err(ApiError::forbidden(
            "a registration token cannot pull config; register first",
        ));
    };
    ctx.seen.saw(&agent_id, unix_now());
    if !wait_for_change(&ctx, &q).await? {
        return Ok(no_change(&ctx));
    }
    let (version, config) = ctx
        .read_local(move |r| agent_config(r, &agent_id))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(Pulled::new(version, config, is_stale(&ctx))?.into_response())
}
