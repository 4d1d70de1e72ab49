//! The deterministic state machine: how one committed [`Command`] changes the state tables.
//!
//! Runs inside the caller's write transaction, with the tables opened once per batch; it reads
//! nothing but the tables, so every replica computes the same result from the same log.

use redb::{ReadableTable, Table, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode, encode};
use crate::command::{Command, Outcome, Rejection};
use crate::model::{
    Agent, DnsZone, EdgeHealth, EdgeNode, Origin, OriginKind, ReplicaInfo, Route, Settings,
    Subject, Token,
};
use crate::tables::*;
use crate::validate::Ipv4Net;
use crate::StoreError;

/// What applying one command did.
pub(crate) struct Applied {
    pub outcome: Outcome,
    /// Whether the state changed (a rejected or repeated command changes nothing).
    pub changed: bool,
}

impl Applied {
    fn changed() -> Self {
        Applied {
            outcome: Outcome::Applied,
            changed: true,
        }
    }
    fn unchanged() -> Self {
        Applied {
            outcome: Outcome::Applied,
            changed: false,
        }
    }
    fn rejected(r: Rejection) -> Self {
        Applied {
            outcome: Outcome::Rejected(r),
            changed: false,
        }
    }
}

/// Every state table, opened once for a batch of commands in one write transaction.
pub(crate) struct StateTables<'txn> {
    origins: Table<'txn, &'static str, &'static [u8]>,
    origin_names: Table<'txn, &'static str, &'static str>,
    routes: Table<'txn, &'static str, &'static [u8]>,
    route_hosts: Table<'txn, &'static str, &'static str>,
    origin_routes: Table<'txn, (&'static str, &'static str), ()>,
    tokens: Table<'txn, &'static str, &'static [u8]>,
    edge_nodes: Table<'txn, &'static str, &'static [u8]>,
    replicas: Table<'txn, u64, &'static [u8]>,
    agents: Table<'txn, &'static str, &'static [u8]>,
    dns_records: Table<'txn, &'static str, &'static [u8]>,
    certificates: Table<'txn, &'static str, &'static [u8]>,
    dns_zones: Table<'txn, &'static str, &'static [u8]>,
    edge_health: Table<'txn, &'static str, &'static [u8]>,
    last_seen: Table<'txn, &'static str, u64>,
    meta: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> StateTables<'txn> {
    pub(crate) fn open(tx: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(StateTables {
            origins: tx.open_table(ORIGINS)?,
            origin_names: tx.open_table(ORIGIN_NAMES)?,
            routes: tx.open_table(ROUTES)?,
            route_hosts: tx.open_table(ROUTE_HOSTS)?,
            origin_routes: tx.open_table(ORIGIN_ROUTES)?,
            tokens: tx.open_table(TOKENS)?,
            edge_nodes: tx.open_table(EDGE_NODES)?,
            replicas: tx.open_table(REPLICAS)?,
            agents: tx.open_table(AGENTS)?,
            dns_records: tx.open_table(DNS_RECORDS)?,
            certificates: tx.open_table(CERTIFICATES)?,
            dns_zones: tx.open_table(DNS_ZONES)?,
            edge_health: tx.open_table(EDGE_HEALTH)?,
            last_seen: tx.open_table(LAST_SEEN)?,
            meta: tx.open_table(STATE_META)?,
        })
    }

    /// Applies one command.
    pub(crate) fn apply(&mut self, cmd: &Command) -> Result<Applied, StoreError> {
        if let Err(e) = cmd.validate() {
            return Ok(Applied::rejected(e.into()));
        }
        match cmd {
            Command::CreateOrigin(o) => self.create_origin(o),
            Command::DeleteOrigin { id } => self.delete_origin(id),
            Command::CreateRoute(r) => self.create_route(r),
            Command::DeleteRoute { id } => self.delete_route(id),
            Command::CreateToken(t) => insert_new(&mut self.tokens, t.id.as_str(), t),
            Command::RevokeToken { id } => {
                update(&mut self.tokens, id.as_str(), |t: &mut Token| {
                    let changed = !t.revoked;
                    t.revoked = true;
                    Ok(changed)
                })
            }
            Command::UseToken { id, now } => {
                update(&mut self.tokens, id.as_str(), |t: &mut Token| {
                    t.usable_at(*now)?;
                    t.uses += 1;
                    Ok(true)
                })
            }
            Command::RegisterEdge {
                edge,
                token,
                bootstrap_id,
                now,
            } => self.register_edge(edge, token, bootstrap_id, *now),
            Command::DeleteEdgeNode { id } => {
                let applied = remove_existing(&mut self.edge_nodes, id.as_str())?;
                if applied.changed {
                    self.forget(&Subject::Edge(id.clone()), id)?;
                    self.edge_health.remove(id.as_str())?;
                }
                Ok(applied)
            }
            Command::RegisterAgent {
                agent,
                token,
                bootstrap_id,
                now,
            } => self.register_agent(agent, token, bootstrap_id, *now),
            Command::DeleteAgent { id } => {
                let applied = remove_existing(&mut self.agents, id.as_str())?;
                if applied.changed {
                    self.forget(&Subject::Agent(id.clone()), id)?;
                }
                Ok(applied)
            }
            Command::CreateDnsRecord(r) => insert_new(&mut self.dns_records, r.id.as_str(), r),
            Command::DeleteDnsRecord { id } => remove_existing(&mut self.dns_records, id.as_str()),
            Command::CreateCertificate {
                certificate,
                replaces,
            } => {
                let applied =
                    insert_new(&mut self.certificates, certificate.id.as_str(), certificate)?;
                if let (true, Some(old)) = (applied.changed, replaces) {
                    self.certificates.remove(old.as_str())?;
                }
                Ok(applied)
            }
            Command::SetEdgeHealth(health) => self.set_edge_health(health),
            Command::CreateDnsZone(zone) => {
                if get::<&str, DnsZone>(&self.dns_zones, zone.name.as_str())?.is_some() {
                    return Ok(Applied::rejected(Rejection::NameTaken(zone.name.clone())));
                }
                insert_new(&mut self.dns_zones, zone.name.as_str(), zone)
            }
            Command::DeleteDnsZone { name } => remove_existing(&mut self.dns_zones, name.as_str()),
            Command::DeleteCertificate { id } => {
                remove_existing(&mut self.certificates, id.as_str())
            }
            Command::SetSettings(settings) => {
                if &self.settings()? == settings {
                    return Ok(Applied::unchanged());
                }
                self.meta
                    .insert(META_SETTINGS, encode(settings)?.as_slice())?;
                Ok(Applied::changed())
            }
            Command::RecordSeen { seen } => {
                for (id, at) in seen {
                    let known = self.edge_nodes.get(id.as_str())?.is_some()
                        || self.agents.get(id.as_str())?.is_some();
                    let newer = self
                        .last_seen
                        .get(id.as_str())?
                        .is_none_or(|g| g.value() < *at);
                    if known && newer {
                        self.last_seen.insert(id.as_str(), *at)?;
                    }
                }
                // Liveness, not configuration: the version stays.
                Ok(Applied::unchanged())
            }
            Command::SetReplica(r) => {
                let old: Option<ReplicaInfo> = get(&self.replicas, r.id)?;
                if old.as_ref() == Some(r) {
                    return Ok(Applied::unchanged());
                }
                self.replicas.insert(r.id, encode(r)?.as_slice())?;
                Ok(Applied::changed())
            }
            Command::RemoveReplica { id } => remove_existing(&mut self.replicas, *id),
            Command::Batch(cmds) => {
                let mut outcomes = Vec::with_capacity(cmds.len());
                let mut changed = false;
                for cmd in cmds {
                    let applied = self.apply(cmd)?;
                    changed |= applied.changed;
                    outcomes.push(applied.outcome);
                }
                Ok(Applied {
                    outcome: Outcome::Batch(outcomes),
                    changed,
                })
            }
        }
    }

    fn create_origin(&mut self, o: &Origin) -> Result<Applied, StoreError> {
        if let Some(existing) = get::<_, Origin>(&self.origins, o.id.as_str())? {
            let same = Origin {
                subnet: existing.subnet.clone(),
                ..o.clone()
            } == existing;
            return Ok(same_or_taken(same, &o.id));
        }
        if self.origin_names.get(o.name.as_str())?.is_some() {
            return Ok(Applied::rejected(Rejection::NameTaken(o.name.clone())));
        }
        let mut origin = o.clone();
        origin.subnet = None;
        if origin.kind == OriginKind::Tunnel {
            let pool = stored_net(&self.settings()?.tunnel_pool)?;
            let used: Vec<String> = self
                .all::<Origin>(Which::Origins)?
                .into_iter()
                .filter_map(|o| o.subnet)
                .collect();
            match pool
                .subnets(24)
                .map(|n| n.to_string())
                .find(|n| !used.contains(n))
            {
                Some(subnet) => origin.subnet = Some(subnet),
                None => {
                    return Ok(Applied::rejected(Rejection::PoolExhausted(
                        pool.to_string(),
                    )))
                }
            }
        }
        self.origins
            .insert(origin.id.as_str(), encode(&origin)?.as_slice())?;
        self.origin_names
            .insert(origin.name.as_str(), origin.id.as_str())?;
        Ok(Applied::changed())
    }

    fn delete_origin(&mut self, id: &str) -> Result<Applied, StoreError> {
        let Some(origin) = get::<_, Origin>(&self.origins, id)? else {
            return Ok(Applied::rejected(Rejection::NotFound));
        };
        let mut in_use = 0;
        for row in self.origin_routes.range((id, "")..)? {
            let (key, _) = row?;
            if key.value().0 != id {
                break;
            }
            in_use += 1;
        }
        if in_use > 0 {
            return Ok(Applied::rejected(Rejection::OriginInUse(
                origin.name,
                in_use,
            )));
        }
        self.origins.remove(id)?;
        self.origin_names.remove(origin.name.as_str())?;
        // Its agents and the tokens bound to it go with it.
        for agent in self.all::<Agent>(Which::Agents)? {
            if agent.origin_id == id {
                self.agents.remove(agent.id.as_str())?;
                self.forget(&Subject::Agent(agent.id.clone()), &agent.id)?;
            }
        }
        self.forget(&Subject::Origin(id.to_string()), id)?;
        Ok(Applied::changed())
    }

    fn create_route(&mut self, r: &Route) -> Result<Applied, StoreError> {
        if let Some(existing) = get::<_, Route>(&self.routes, r.id.as_str())? {
            return Ok(same_or_taken(&existing == r, &r.id));
        }
        if self.route_hosts.get(r.hostname.as_str())?.is_some() {
            return Ok(Applied::rejected(Rejection::HostnameTaken(
                r.hostname.clone(),
            )));
        }
        if self.origins.get(r.origin_id.as_str())?.is_none() {
            return Ok(Applied::rejected(Rejection::UnknownOrigin(
                r.origin_id.clone(),
            )));
        }
        self.routes.insert(r.id.as_str(), encode(r)?.as_slice())?;
        self.route_hosts
            .insert(r.hostname.as_str(), r.id.as_str())?;
        self.origin_routes
            .insert((r.origin_id.as_str(), r.id.as_str()), ())?;
        Ok(Applied::changed())
    }

    fn delete_route(&mut self, id: &str) -> Result<Applied, StoreError> {
        let Some(route) = get::<_, Route>(&self.routes, id)? else {
            return Ok(Applied::rejected(Rejection::NotFound));
        };
        self.routes.remove(id)?;
        self.route_hosts.remove(route.hostname.as_str())?;
        self.origin_routes.remove((route.origin_id.as_str(), id))?;
        Ok(Applied::changed())
    }
}

/// A network stored in the state (validated when it was written).
fn stored_net(s: &str) -> Result<Ipv4Net, StoreError> {
    Ipv4Net::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Which table [`StateTables::all`] reads.
#[derive(Clone, Copy)]
enum Which {
    Origins,
    Agents,
    Edges,
    Tokens,
}

impl StateTables<'_> {
    pub(crate) fn settings(&self) -> Result<Settings, StoreError> {
        match self.meta.get(META_SETTINGS)? {
            Some(g) => decode(g.value()),
            None => Ok(Settings::default()),
        }
    }

    fn all<V: DeserializeOwned>(&self, which: Which) -> Result<Vec<V>, StoreError> {
        let table = match which {
            Which::Origins => &self.origins,
            Which::Agents => &self.agents,
            Which::Edges => &self.edge_nodes,
            Which::Tokens => &self.tokens,
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(decode(row?.1.value())?);
        }
        Ok(out)
    }

    /// Removes the tokens bound to `subject` and the last-seen time of `id`.
    fn forget(&mut self, subject: &Subject, id: &str) -> Result<(), StoreError> {
        for token in self.all::<Token>(Which::Tokens)? {
            if token.subject.as_ref() == Some(subject) {
                self.tokens.remove(token.id.as_str())?;
            }
        }
        self.last_seen.remove(id)?;
        Ok(())
    }

    /// Checks and counts one use of a registration token: it must exist, be usable at `now`,
    /// have `role` and be bound to `subject`.
    fn use_bootstrap(
        &mut self,
        id: &str,
        role: crate::Role,
        subject: Option<&Subject>,
        now: u64,
    ) -> Result<Result<(), Rejection>, StoreError> {
        let Some(mut token) = get::<_, Token>(&self.tokens, id)? else {
            return Ok(Err(Rejection::WrongToken));
        };
        if token.role != role || token.subject.as_ref() != subject {
            return Ok(Err(Rejection::WrongToken));
        }
        if let Err(r) = token.usable_at(now) {
            return Ok(Err(r));
        }
        token.uses += 1;
        self.tokens.insert(id, encode(&token)?.as_slice())?;
        Ok(Ok(()))
    }

    /// Records a health transition of an existing edge; the same verdict again changes nothing
    /// (no version bump), so a new leader re-committing what it found is harmless.
    fn set_edge_health(&mut self, health: &EdgeHealth) -> Result<Applied, StoreError> {
        if get::<&str, EdgeNode>(&self.edge_nodes, health.edge_id.as_str())?.is_none() {
            return Ok(Applied::rejected(Rejection::NotFound));
        }
        let current = get::<&str, EdgeHealth>(&self.edge_health, health.edge_id.as_str())?;
        let mut next = health.clone();
        if let Some(current) = current {
            if current.healthy == health.healthy {
                if current.unreachable_origins == health.unreachable_origins {
                    return Ok(Applied::unchanged());
                }
                // Only the origins changed: the transition's time and reason stay.
                next.since = current.since;
                next.reason = current.reason;
            }
        }
        self.edge_health
            .insert(health.edge_id.as_str(), encode(&next)?.as_slice())?;
        Ok(Applied::changed())
    }

    fn register_edge(
        &mut self,
        edge: &EdgeNode,
        token: &Token,
        bootstrap: &str,
        now: u64,
    ) -> Result<Applied, StoreError> {
        if self
            .all::<EdgeNode>(Which::Edges)?
            .iter()
            .any(|e| e.name == edge.name || e.id == edge.id)
        {
            return Ok(Applied::rejected(Rejection::NameTaken(edge.name.clone())));
        }
        if token.role != crate::Role::Edge || token.subject != Some(Subject::Edge(edge.id.clone()))
        {
            return Ok(Applied::rejected(Rejection::WrongToken));
        }
        let pool = stored_net(&self.settings()?.edge_pool)?;
        let used: Vec<String> = self
            .all::<EdgeNode>(Which::Edges)?
            .into_iter()
            .filter_map(|e| e.tunnel_ip)
            .collect();
        let Some(ip) = pool
            .hosts()
            .map(|h| h.to_string())
            .find(|h| !used.contains(h))
        else {
            return Ok(Applied::rejected(Rejection::PoolExhausted(
                pool.to_string(),
            )));
        };
        if let Err(r) = self.use_bootstrap(bootstrap, crate::Role::Edge, None, now)? {
            return Ok(Applied::rejected(r));
        }
        let edge = EdgeNode {
            tunnel_ip: Some(ip),
            ..edge.clone()
        };
        self.edge_nodes
            .insert(edge.id.as_str(), encode(&edge)?.as_slice())?;
        self.tokens
            .insert(token.id.as_str(), encode(token)?.as_slice())?;
        Ok(Applied::changed())
    }

    fn register_agent(
        &mut self,
        agent: &Agent,
        token: &Token,
        bootstrap: &str,
        now: u64,
    ) -> Result<Applied, StoreError> {
        let Some(origin) = get::<_, Origin>(&self.origins, agent.origin_id.as_str())? else {
            return Ok(Applied::rejected(Rejection::UnknownOrigin(
                agent.origin_id.clone(),
            )));
        };
        let Some(subnet) = origin
            .subnet
            .as_deref()
            .filter(|_| origin.kind == OriginKind::Tunnel)
        else {
            return Ok(Applied::rejected(Rejection::NotTunnel(origin.name)));
        };
        let agents = self.all::<Agent>(Which::Agents)?;
        if agents
            .iter()
            .any(|a| a.id == agent.id || (a.origin_id == agent.origin_id && a.name == agent.name))
        {
            return Ok(Applied::rejected(Rejection::NameTaken(agent.name.clone())));
        }
        if token.role != crate::Role::Agent
            || token.subject != Some(Subject::Agent(agent.id.clone()))
        {
            return Ok(Applied::rejected(Rejection::WrongToken));
        }
        let net = stored_net(subnet)?;
        let used: Vec<String> = agents
            .into_iter()
            .filter(|a| a.origin_id == origin.id)
            .filter_map(|a| a.tunnel_ip)
            .collect();
        let Some(ip) = net
            .hosts()
            .map(|h| h.to_string())
            .find(|h| !used.contains(h))
        else {
            return Ok(Applied::rejected(Rejection::PoolExhausted(
                subnet.to_string(),
            )));
        };
        let bound_to = Subject::Origin(origin.id.clone());
        if let Err(r) = self.use_bootstrap(bootstrap, crate::Role::Agent, Some(&bound_to), now)? {
            return Ok(Applied::rejected(r));
        }
        let agent = Agent {
            tunnel_ip: Some(ip),
            ..agent.clone()
        };
        self.agents
            .insert(agent.id.as_str(), encode(&agent)?.as_slice())?;
        self.tokens
            .insert(token.id.as_str(), encode(token)?.as_slice())?;
        Ok(Applied::changed())
    }
}

/// A create whose id exists already: a repeat of the same record is a no-op, anything else a
/// conflict.
fn same_or_taken(same: bool, id: &str) -> Applied {
    if same {
        Applied::unchanged()
    } else {
        Applied::rejected(Rejection::IdTaken(id.to_string()))
    }
}

/// Reads and decodes one record.
pub(crate) fn get<'k, K, V>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: impl std::borrow::Borrow<K::SelfType<'k>>,
) -> Result<Option<V>, StoreError>
where
    K: redb::Key + 'static,
    V: DeserializeOwned,
{
    match table.get(key)? {
        Some(guard) => Ok(Some(decode(guard.value())?)),
        None => Ok(None),
    }
}

/// Inserts a record under a new key; the same record again is a no-op, a different one a
/// conflict.
fn insert_new<V: Serialize + DeserializeOwned + PartialEq>(
    table: &mut Table<&'static str, &'static [u8]>,
    key: &str,
    value: &V,
) -> Result<Applied, StoreError> {
    if let Some(existing) = get::<&str, V>(table, key)? {
        return Ok(same_or_taken(&existing == value, key));
    }
    table.insert(key, encode(value)?.as_slice())?;
    Ok(Applied::changed())
}

/// Changes a record in place; `f` says whether it changed, or why the change is refused.
fn update<V: Serialize + DeserializeOwned>(
    table: &mut Table<&'static str, &'static [u8]>,
    key: &str,
    f: impl FnOnce(&mut V) -> Result<bool, Rejection>,
) -> Result<Applied, StoreError> {
    let Some(mut value) = get::<&str, V>(table, key)? else {
        return Ok(Applied::rejected(Rejection::NotFound));
    };
    match f(&mut value) {
        Ok(true) => {
            table.insert(key, encode(&value)?.as_slice())?;
            Ok(Applied::changed())
        }
        Ok(false) => Ok(Applied::unchanged()),
        Err(r) => Ok(Applied::rejected(r)),
    }
}

fn remove_existing<'a, K: redb::Key + 'static>(
    table: &mut Table<K, &'static [u8]>,
    key: impl std::borrow::Borrow<K::SelfType<'a>>,
) -> Result<Applied, StoreError> {
    Ok(match table.remove(key)? {
        Some(_) => Applied::changed(),
        None => Applied::rejected(Rejection::NotFound),
    })
}
