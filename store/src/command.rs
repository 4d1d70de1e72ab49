//! The commands that change the replicated state, and what applying one yields.
//!
//! A command is complete: everything non-deterministic (ids, timestamps, the current time for
//! token checks, token hashes) was chosen by the proposer. [`Command::validate`] checks what
//! can be checked without the state; `apply` checks the rest (uniqueness, references).

use serde::{Deserialize, Serialize};

use crate::model::{
    Agent, Certificate, DnsRecord, DnsZone, EdgeHealth, EdgeNode, Origin, ReplicaInfo, Route,
    Settings, Token,
};
use crate::validate::{
    normalize_dns_record, normalize_hostname, normalize_ip, normalize_target, validate_id,
    validate_name, validate_pools, validate_rate_limit, validate_settings, validate_socket_addr,
    validate_wg_key, validate_zone, ValidationError,
};

/// A change to the replicated state, as carried in the raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateOrigin(Origin),
    DeleteOrigin {
        id: String,
    },
    CreateRoute(Route),
    DeleteRoute {
        id: String,
    },
    CreateToken(Token),
    RevokeToken {
        id: String,
    },
    /// Counts one use of a token (registration, join) if it is still usable at `now`.
    UseToken {
        id: String,
        now: u64,
    },
    /// An edge registers with a bootstrap edge token (`bootstrap_id`), which counts one use;
    /// `token` is its new persistent token. The edge's tunnel address is assigned here.
    RegisterEdge {
        edge: EdgeNode,
        token: Token,
        bootstrap_id: String,
        now: u64,
    },
    /// Removes an edge and its tokens.
    DeleteEdgeNode {
        id: String,
    },
    /// An agent registers with an agent token bound to its origin (`bootstrap_id`), which
    /// counts one use; `token` is its new persistent token. Its tunnel address is assigned here.
    RegisterAgent {
        agent: Agent,
        token: Token,
        bootstrap_id: String,
        now: u64,
    },
    /// Removes an agent and its tokens.
    DeleteAgent {
        id: String,
    },
    CreateDnsRecord(DnsRecord),
    DeleteDnsRecord {
        id: String,
    },
    /// The health checker's verdict on an edge changed.
    SetEdgeHealth(EdgeHealth),
    CreateDnsZone(DnsZone),
    DeleteDnsZone {
        name: String,
    },
    /// Stores a certificate; it replaces (removes) `replaces` if that still exists, so a
    /// renewal swaps certificates in one step.
    CreateCertificate {
        certificate: Certificate,
        replaces: Option<String>,
    },
    DeleteCertificate {
        id: String,
    },
    SetSettings(Settings),
    /// Coarse "last seen pulling" times of edges and agents, by id. Does not move the version.
    RecordSeen {
        seen: Vec<(String, u64)>,
    },
    /// Records (or updates) where a replica's API listens.
    SetReplica(ReplicaInfo),
    RemoveReplica {
        id: u64,
    },
    /// Several commands proposed together (the leader batches concurrent writes into one log
    /// entry). Applied in order; each has its own outcome. Never nested.
    Batch(Vec<Command>),
}

impl Command {
    /// Checks everything that does not depend on the state: syntax of hostnames, targets,
    /// names, ids and addresses, and that values are already in normal form.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Command::CreateOrigin(o) => {
                validate_id(&o.id)?;
                validate_name(&o.name)
            }
            Command::CreateRoute(r) => {
                validate_id(&r.id)?;
                validate_id(&r.origin_id)?;
                if normalize_hostname(&r.hostname)? != r.hostname {
                    return Err(ValidationError::Hostname(
                        r.hostname.clone(),
                        "not in normal form".into(),
                    ));
                }
                if normalize_target(&r.target)? != r.target {
                    return Err(ValidationError::Target(
                        r.target.clone(),
                        "not in normal form".into(),
                    ));
                }
                r.rate_limit.as_ref().map_or(Ok(()), validate_rate_limit)
            }
            Command::SetEdgeHealth(h) => {
                validate_id(&h.edge_id)?;
                h.unreachable_origins
                    .iter()
                    .try_for_each(|id| validate_id(id))
            }
            Command::CreateDnsZone(z) => validate_zone(&z.name),
            Command::DeleteDnsZone { name } => validate_zone(name),
            Command::CreateCertificate {
                certificate,
                replaces,
            } => {
                validate_id(&certificate.id)?;
                if let Some(id) = replaces {
                    validate_id(id)?;
                }
                if certificate.names.is_empty() {
                    return Err(ValidationError::Certificate("it names no host".into()));
                }
                for name in &certificate.names {
                    if &normalize_hostname(name)? != name {
                        return Err(ValidationError::Hostname(
                            name.clone(),
                            "not in normal form".into(),
                        ));
                    }
                }
                Ok(())
            }
            Command::CreateToken(t) => validate_id(&t.id),
            Command::RegisterEdge {
                edge,
                token,
                bootstrap_id,
                ..
            } => {
                validate_id(&edge.id)?;
                validate_id(&token.id)?;
                validate_id(bootstrap_id)?;
                validate_name(&edge.name)?;
                validate_wg_key(&edge.wg_public_key)?;
                if normalize_ip(&edge.public_ip)? != edge.public_ip {
                    return Err(ValidationError::Ip(edge.public_ip.clone()));
                }
                Ok(())
            }
            Command::RegisterAgent {
                agent,
                token,
                bootstrap_id,
                ..
            } => {
                validate_id(&agent.id)?;
                validate_id(&agent.origin_id)?;
                validate_id(&token.id)?;
                validate_id(bootstrap_id)?;
                validate_name(&agent.name)?;
                validate_wg_key(&agent.wg_public_key)
            }
            Command::CreateDnsRecord(r) => {
                validate_id(&r.id)?;
                let (name, value) = normalize_dns_record(&r.name, r.rtype, &r.value, r.ttl)?;
                if name != r.name || value != r.value {
                    return Err(ValidationError::DnsRecord("not in normal form".into()));
                }
                Ok(())
            }
            Command::SetSettings(settings) => {
                validate_pools(&settings.tunnel_pool, &settings.edge_pool)?;
                validate_settings(settings)
            }
            Command::RecordSeen { seen } => seen.iter().try_for_each(|(id, _)| validate_id(id)),
            Command::SetReplica(r) => validate_socket_addr(&r.api_addr),
            Command::DeleteOrigin { id }
            | Command::DeleteRoute { id }
            | Command::RevokeToken { id }
            | Command::UseToken { id, .. }
            | Command::DeleteEdgeNode { id }
            | Command::DeleteAgent { id }
            | Command::DeleteDnsRecord { id }
            | Command::DeleteCertificate { id } => validate_id(id),
            Command::RemoveReplica { .. } => Ok(()),
            // Each inner command is validated when it is applied, on its own: one bad command
            // does not sink the others.
            Command::Batch(cmds) => {
                if cmds.iter().any(|c| matches!(c, Command::Batch(_))) {
                    return Err(ValidationError::Nested);
                }
                Ok(())
            }
        }
    }

    /// Whether applying this command may change a token (so cached tokens must be dropped).
    pub fn touches_tokens(&self) -> bool {
        match self {
            Command::CreateToken(_) | Command::RevokeToken { .. } | Command::UseToken { .. } => {
                true
            }
            Command::Batch(cmds) => cmds.iter().any(Command::touches_tokens),
            _ => false,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::CreateOrigin(_) => "create_origin",
            Command::DeleteOrigin { .. } => "delete_origin",
            Command::CreateRoute(_) => "create_route",
            Command::DeleteRoute { .. } => "delete_route",
            Command::CreateToken(_) => "create_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::UseToken { .. } => "use_token",
            Command::RegisterEdge { .. } => "register_edge",
            Command::DeleteEdgeNode { .. } => "delete_edge_node",
            Command::RegisterAgent { .. } => "register_agent",
            Command::DeleteAgent { .. } => "delete_agent",
            Command::CreateDnsRecord(_) => "create_dns_record",
            Command::DeleteDnsRecord { .. } => "delete_dns_record",
            Command::SetEdgeHealth(_) => "set_edge_health",
            Command::CreateDnsZone(_) => "create_dns_zone",
            Command::DeleteDnsZone { .. } => "delete_dns_zone",
            Command::CreateCertificate { .. } => "create_certificate",
            Command::DeleteCertificate { .. } => "delete_certificate",
            Command::SetSettings(_) => "set_settings",
            Command::RecordSeen { .. } => "record_seen",
            Command::SetReplica(_) => "set_replica",
            Command::RemoveReplica { .. } => "remove_replica",
            Command::Batch(_) => "batch",
        }
    }
}

/// The result of applying one command. A rejected command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The command took effect (or had already taken effect: commands are idempotent on their
    /// ids, so a retried create is not a conflict with itself).
    Applied,
    /// The command was refused; the state did not change.
    Rejected(Rejection),
    /// The outcomes of a [`Command::Batch`], in order.
    Batch(Vec<Outcome>),
}

/// Why `apply` refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Rejection {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the name {0:?} is already used")]
    NameTaken(String),
    #[error("the hostname {0:?} already has a route")]
    HostnameTaken(String),
    #[error("the id {0:?} is already used by a different record")]
    IdTaken(String),
    #[error("there is no origin {0:?}")]
    UnknownOrigin(String),
    #[error("origin {0:?} still has {1} route(s); delete them first")]
    OriginInUse(String, usize),
    #[error("not found")]
    NotFound,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the token has been revoked")]
    TokenRevoked,
    #[error("the token has been used up")]
    TokenUsedUp,
    #[error("this token cannot register that")]
    WrongToken,
    #[error("origin {0:?} is not a tunnel origin")]
    NotTunnel(String),
    #[error("no free address is left in the pool {0}")]
    PoolExhausted(String),
}

impl Rejection {
    /// A stable, machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Invalid(v) => v.code(),
            Rejection::NameTaken(_) => "name_taken",
            Rejection::HostnameTaken(_) => "hostname_taken",
            Rejection::IdTaken(_) => "id_taken",
            Rejection::UnknownOrigin(_) => "unknown_origin",
            Rejection::OriginInUse(..) => "origin_in_use",
            Rejection::NotFound => "not_found",
            Rejection::TokenExpired => "token_expired",
            Rejection::TokenRevoked => "token_revoked",
            Rejection::TokenUsedUp => "token_used_up",
            Rejection::WrongToken => "wrong_token",
            Rejection::NotTunnel(_) => "not_tunnel",
            Rejection::PoolExhausted(_) => "pool_exhausted",
        }
    }
}
