//! The deterministic state machine: how one committed [`Command`] changes the state tables.
//!
//! Runs inside the caller's write transaction, with the tables opened once per batch; it reads
//! nothing but the tables, so every replica computes the same result from the same log.

use redb::{ReadableTable, Table, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode, encode};
use crate::command::{Command, Outcome, Rejection};
use crate::model::{EdgeNode, Origin, ReplicaInfo, Route, Token};
use crate::tables::*;
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
            Command::UpsertEdgeNode(e) => {
                let old: Option<EdgeNode> = get(&self.edge_nodes, e.id.as_str())?;
                if old.as_ref() == Some(e) {
                    return Ok(Applied::unchanged());
                }
                self.edge_nodes
                    .insert(e.id.as_str(), encode(e)?.as_slice())?;
                Ok(Applied::changed())
            }
            Command::DeleteEdgeNode { id } => remove_existing(&mut self.edge_nodes, id.as_str()),
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
            return Ok(same_or_taken(&existing == o, &o.id));
        }
        if self.origin_names.get(o.name.as_str())?.is_some() {
            return Ok(Applied::rejected(Rejection::NameTaken(o.name.clone())));
        }
        self.origins.insert(o.id.as_str(), encode(o)?.as_slice())?;
        self.origin_names.insert(o.name.as_str(), o.id.as_str())?;
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
