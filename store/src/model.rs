//! The domain model: what an origin, a route, a token, an edge node and a replica are.
//!
//! These are plain data. Times are Unix seconds chosen by the proposer of the command that
//! created the record; ids are made by the proposer too.

use serde::{Deserialize, Serialize};

/// A place services run: a home server reached through agents ("tunnel"), or a host the edge
/// reaches itself ("direct").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    pub id: String,
    pub name: String,
    pub kind: OriginKind,
    pub created_at: u64,
}

/// How edges reach an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OriginKind {
    /// Through the origin's agents over WireGuard.
    #[default]
    Tunnel,
    /// The edge dials the target address itself.
    Direct,
}

/// A public hostname published from an origin's target (`HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: String,
    /// Normalised: lowercase ASCII (IDNA), optionally starting with `*.`.
    pub hostname: String,
    pub origin_id: String,
    pub target: String,
    pub created_at: u64,
}

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The admin API.
    Admin,
    /// Joining a new replica to the cluster.
    Server,
    /// Registering an edge.
    Edge,
    /// Registering an agent.
    Agent,
}

impl Role {
    /// The role's name as used in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Server => "server",
            Role::Edge => "edge",
            Role::Agent => "agent",
        }
    }
}

/// A bearer token. Only the SHA-256 of its secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub id: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the secret part of the token.
    pub secret_hash: String,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub revoked: bool,
}

impl Token {
    /// Whether the token may still be presented at time `now`.
    pub fn usable_at(&self, now: u64) -> Result<(), crate::Rejection> {
        use crate::Rejection;
        if self.revoked {
            return Err(Rejection::TokenRevoked);
        }
        if self.expires_at.is_some_and(|t| now >= t) {
            return Err(Rejection::TokenExpired);
        }
        if self.max_uses.is_some_and(|m| self.uses >= m) {
            return Err(Rejection::TokenUsedUp);
        }
        Ok(())
    }
}

/// A public edge server that registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeNode {
    pub id: String,
    pub name: String,
    pub public_ip: String,
    /// Base64 WireGuard public key (the private key never leaves the edge).
    pub wg_public_key: String,
    pub created_at: u64,
}

/// What the cluster knows about a replica beyond raft's membership: where its API listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaInfo {
    pub id: u64,
    pub api_addr: String,
}

/// The whole replicated state, sorted: what a snapshot carries and what a state dump shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateImage {
    /// Log index of the last command that changed the state.
    pub version: u64,
    pub origins: Vec<Origin>,
    pub routes: Vec<Route>,
    pub tokens: Vec<Token>,
    pub edge_nodes: Vec<EdgeNode>,
    pub replicas: Vec<ReplicaInfo>,
}
