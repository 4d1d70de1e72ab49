//! The configs edges and agents pull (`GET /api/v1/{edge-nodes,agents}/me/config`), as they
//! travel in JSON: built by the replicas, read back by `kokoa edge` and `kokoa agent`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{OriginKind, RateLimit};

/// A pulled config: the state version it was read at, the hash of its payload, whether the
/// replica that served it had lost touch with the leader, and the role's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pulled<T> {
    pub version: u64,
    /// SHA-256 (hex) of the payload's JSON.
    pub config_hash: String,
    /// True when the serving replica had not heard from a leader for a while.
    pub stale: bool,
    #[serde(flatten)]
    pub config: T,
}

/// Where an edge sends a hostname's requests, and how it guards them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backend {
    pub origin_id: String,
    pub origin: String,
    pub kind: OriginKind,
    /// `HOST:PORT`: dialled by the edge (direct) or by the origin's agents (tunnel).
    pub target: String,
    /// Per-client-IP limit; `None` means the edge's default.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Plain HTTP is served rather than redirected to HTTPS.
    #[serde(default)]
    pub allow_http: bool,
}

/// An agent as edges see it: a WireGuard peer allowed only its own address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentPeer {
    pub agent_id: String,
    pub origin_id: String,
    pub wg_public_key: String,
    pub tunnel_ip: Option<String>,
    pub allowed_ips: Vec<String>,
}

/// An edge as agents see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgePeer {
    pub id: String,
    pub name: String,
    pub public_ip: String,
    pub wg_port: u16,
    pub wg_public_key: String,
    pub tunnel_ip: Option<String>,
}

/// A certificate with its private key, as edges get it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgeCertificate {
    pub id: String,
    /// Names it serves (`*.` for wildcards).
    pub names: Vec<String>,
    /// Leaf first, then intermediates (PEM).
    pub chain_pem: String,
    /// The private key (PEM).
    pub key_pem: String,
    /// Unix seconds.
    pub not_after: u64,
}

/// Everything an edge needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EdgeConfig {
    pub edge: EdgePeer,
    /// Hostname (exact, or `*.` wildcard) -> backend, for every route.
    pub routes: BTreeMap<String, Backend>,
    pub hostnames: Vec<String>,
    /// Agents of tunnel origins.
    pub peers: Vec<AgentPeer>,
    pub certificates: Vec<EdgeCertificate>,
    /// ACME HTTP-01 token -> key authorization.
    pub acme_http01: BTreeMap<String, String>,
}

/// An agent's origin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OriginView {
    pub id: String,
    pub name: String,
    pub subnet: Option<String>,
}

/// Everything an agent needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentConfig {
    pub agent: AgentPeer,
    pub origin: OriginView,
    /// Every edge to dial.
    pub edges: Vec<EdgePeer>,
    /// Hostname -> target, for this origin's routes only.
    pub routes: BTreeMap<String, String>,
    /// The only targets this agent may forward to.
    pub targets: Vec<String>,
}
