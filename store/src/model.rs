//! The domain model: what an origin, a route, a token, an edge node and a replica are.
//!
//! These are plain data. Times are Unix seconds chosen by the proposer of the command that
//! created the record; ids are made by the proposer too.

use serde::{Deserialize, Serialize};

/// A place services run: a home server reached through agents ("tunnel"), or a host the edge
/// reaches itself ("direct").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Origin {
    pub id: String,
    pub name: String,
    pub kind: OriginKind,
    pub created_at: u64,
    /// A tunnel origin's own subnet (`100.96.N.0/24`), assigned when it is created from the
    /// tunnel pool; its agents get addresses inside it. `None` for direct origins.
    pub subnet: Option<String>,
}

/// How edges reach an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: String,
    /// Normalised: lowercase ASCII (IDNA), optionally starting with `*.`.
    pub hostname: String,
    pub origin_id: String,
    pub target: String,
    pub created_at: u64,
    /// The per-client-IP request rate limit edges apply to this route; `None` is the edge's
    /// default (10 requests/s, burst 20).
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Serve plain HTTP on port 80 instead of redirecting to HTTPS.
    #[serde(default)]
    pub allow_http: bool,
}

/// A token-bucket request rate limit, per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (1 to 1,000,000).
    pub per_second: u32,
    /// Requests allowed at once above the sustained rate (1 to 1,000,000).
    pub burst: u32,
}

/// A TLS certificate the edges serve for the names it covers (uploaded, or issued by ACME).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub id: String,
    /// The DNS names it is valid for (its subject alternative names), normalised; `*.` for
    /// wildcards.
    pub names: Vec<String>,
    /// The leaf first, then its intermediates (PEM).
    pub chain_pem: String,
    /// The private key, sealed with the cluster key (never served by the API).
    pub sealed_key: String,
    /// Validity, Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    /// SHA-256 of the leaf (DER), hex.
    pub fingerprint: String,
    pub created_at: u64,
}

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// What the token is bound to: an origin (agent registration), an edge or an agent (their
    /// persistent tokens). `None` for admin, server and edge bootstrap tokens.
    pub subject: Option<Subject>,
}

/// The record a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Origin(String),
    Edge(String),
    Agent(String),
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EdgeNode {
    pub id: String,
    pub name: String,
    pub public_ip: String,
    /// Base64 WireGuard public key (the private key never leaves the edge).
    pub wg_public_key: String,
    /// UDP port of the edge's WireGuard endpoint on `public_ip`.
    pub wg_port: u16,
    /// TCP port of the edge's plain HTTP listener on `public_ip` (where `/health` is probed).
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// The edge's address inside the tunnels, from the edge pool (assigned at registration).
    pub tunnel_ip: Option<String>,
    pub created_at: u64,
}

fn default_http_port() -> u16 {
    80
}

/// A process next to an origin's services that dials every edge over WireGuard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub id: String,
    pub origin_id: String,
    pub name: String,
    /// Base64 WireGuard public key (the private key never leaves the agent).
    pub wg_public_key: String,
    /// The agent's address inside its origin's subnet (assigned at registration).
    pub tunnel_ip: Option<String>,
    pub created_at: u64,
}

/// The type of a static DNS record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DnsType {
    A,
    AAAA,
    CNAME,
    TXT,
}

/// A static DNS record in a managed zone (`kokoa dns add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    pub id: String,
    /// Lowercase, relative to the zone (`app1`, `www.app1`) or `@` for the apex.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: DnsType,
    pub value: String,
    pub ttl: u32,
    pub created_at: u64,
}

/// What the health checker last committed about an edge (only transitions are committed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EdgeHealth {
    pub edge_id: String,
    pub healthy: bool,
    /// Unix seconds of the transition.
    pub since: u64,
    /// Why, in a few words (`3 failed probes: connection refused`, `2 good probes`).
    pub reason: String,
    /// Origins this edge reported it cannot reach, sorted: tunnel origins without a connected
    /// agent, direct origins whose last dial failed. Updated when the edge's report changes.
    #[serde(default)]
    pub unreachable_origins: Vec<String>,
}

/// A DNS zone the replicas answer for (authoritatively, with `--dns-listen`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DnsZone {
    /// Normalised, without a final dot: `example.com`.
    pub name: String,
    pub created_at: u64,
}

/// Cluster-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// IPv4 pool that tunnel origins' /24 subnets come from.
    pub tunnel_pool: String,
    /// IPv4 pool that edges' tunnel addresses come from.
    pub edge_pool: String,
    /// TTL (seconds) of the answers the built-in DNS makes (route and NS records).
    #[serde(default = "defaults::dns_ttl")]
    pub dns_ttl: u32,
    /// Names of the zones' NS records (e.g. `ns1.example.net`); empty: `ns1`, `ns2`, ... inside
    /// each zone, one per replica, with glue A records to the replicas' DNS addresses.
    #[serde(default)]
    pub dns_ns: Vec<String>,
    /// Seconds between two health probes of an edge.
    #[serde(default = "defaults::health_interval")]
    pub health_interval_secs: u32,
    /// Seconds a health probe may take.
    #[serde(default = "defaults::health_timeout")]
    pub health_timeout_secs: u32,
    /// Consecutive failed probes that make an edge unhealthy.
    #[serde(default = "defaults::health_fail_after")]
    pub health_fail_after: u32,
    /// Consecutive good probes that make it healthy again.
    #[serde(default = "defaults::health_pass_after")]
    pub health_pass_after: u32,
    /// An edge that has not pulled its config for this many seconds is unhealthy.
    #[serde(default = "defaults::edge_stale")]
    pub edge_stale_secs: u32,
}

/// Defaults of [`Settings`], also used when a stored or sent settings object lacks a field.
mod defaults {
    pub fn dns_ttl() -> u32 {
        30
    }
    pub fn health_interval() -> u32 {
        5
    }
    pub fn health_timeout() -> u32 {
        2
    }
    pub fn health_fail_after() -> u32 {
        3
    }
    pub fn health_pass_after() -> u32 {
        2
    }
    pub fn edge_stale() -> u32 {
        180
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tunnel_pool: "100.96.0.0/12".into(),
            edge_pool: "100.64.0.0/16".into(),
            dns_ttl: defaults::dns_ttl(),
            dns_ns: Vec::new(),
            health_interval_secs: defaults::health_interval(),
            health_timeout_secs: defaults::health_timeout(),
            health_fail_after: defaults::health_fail_after(),
            health_pass_after: defaults::health_pass_after(),
            edge_stale_secs: defaults::edge_stale(),
        }
    }
}

/// What the cluster knows about a replica beyond raft's membership: where its API listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    pub agents: Vec<Agent>,
    pub dns_records: Vec<DnsRecord>,
    pub dns_zones: Vec<DnsZone>,
    pub edge_health: Vec<EdgeHealth>,
    pub certificates: Vec<Certificate>,
    pub settings: Settings,
    /// Last time (Unix seconds) each edge or agent was seen pulling, recorded coarsely.
    pub last_seen: Vec<(String, u64)>,
    pub replicas: Vec<ReplicaInfo>,
}
