//! The redb table definitions, in one place. Values are bincode ([`crate::codec`]).
//!
//! `log.redb` holds the raft log and the vote; `state.redb` holds the applied state together
//! with the raft metadata that must move with it (last applied log id, membership, version).

use redb::TableDefinition;

// ---- log.redb ----

/// Raft log: index -> encoded entry.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Raft log metadata: vote, committed, last purged (opaque bytes from the raft layer).
pub(crate) const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");

// ---- state.redb ----

/// State metadata: `version` (u64), `applied` and `membership` (opaque raft bytes).
pub(crate) const STATE_META: TableDefinition<&str, &[u8]> = TableDefinition::new("state_meta");
pub(crate) const ORIGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("origins");
/// Unique index: origin name -> id.
pub(crate) const ORIGIN_NAMES: TableDefinition<&str, &str> = TableDefinition::new("origin_names");
pub(crate) const ROUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("routes");
/// Unique index: hostname -> route id.
pub(crate) const ROUTE_HOSTS: TableDefinition<&str, &str> = TableDefinition::new("route_hosts");
/// Index: (origin id, route id) for the routes of an origin.
pub(crate) const ORIGIN_ROUTES: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("origin_routes");
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
pub(crate) const EDGE_NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("edge_nodes");
pub(crate) const REPLICAS: TableDefinition<u64, &[u8]> = TableDefinition::new("replicas");
pub(crate) const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
pub(crate) const DNS_RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("dns_records");
pub(crate) const DNS_ZONES: TableDefinition<&str, &[u8]> = TableDefinition::new("dns_zones");
/// Edge id -> its last committed health.
pub(crate) const EDGE_HEALTH: TableDefinition<&str, &[u8]> = TableDefinition::new("edge_health");
pub(crate) const CERTIFICATES: TableDefinition<&str, &[u8]> = TableDefinition::new("certificates");
/// Edge or agent id -> last time (Unix seconds) it was seen pulling, recorded coarsely.
pub(crate) const LAST_SEEN: TableDefinition<&str, u64> = TableDefinition::new("last_seen");

pub(crate) const META_VERSION: &str = "version";
pub(crate) const META_APPLIED: &str = "applied";
pub(crate) const META_MEMBERSHIP: &str = "membership";
pub(crate) const META_SETTINGS: &str = "settings";
