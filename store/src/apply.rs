//! The deterministic state machine: how one committed [`Command`] changes the state tables.
//!
//! Runs inside the caller's write transaction; it reads nothing but the tables, so every
//! replica computes the same result from the same log.

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

/// Applies one command inside `tx`.
pub(crate) fn apply_command(tx: &WriteTransaction, cmd: &Command) -> Result<Applied, StoreError> {
    if let Err(e) = cmd.validate() {
        return Ok(Applied::rejected(e.into()));
    }
    match cmd {
        Command::CreateOrigin(o) => create_origin(tx, o),
        Command::DeleteOrigin { id } => delete_origin(tx, id),
        Command::CreateRoute(r) => create_route(tx, r),
        Command::DeleteRoute { id } => delete_route(tx, id),
        Command::CreateToken(t) => {
            let mut tokens = tx.open_table(TOKENS)?;
            insert_new(&mut tokens, t.id.as_str(), t)
        }
        Command::RevokeToken { id } => {
            let mut tokens = tx.open_table(TOKENS)?;
            update(&mut tokens, id.as_str(), |t: &mut Token| {
                let changed = !t.revoked;
                t.revoked = true;
                Ok(changed)
            })
        }
        Command::UseToken { id, now } => {
            let mut tokens = tx.open_table(TOKENS)?;
            update(&mut tokens, id.as_str(), |t: &mut Token| {
                t.usable_at(*now)?;
                t.uses += 1;
                Ok(true)
            })
        }
        Command::UpsertEdgeNode(e) => {
            let mut edges = tx.open_table(EDGE_NODES)?;
            let old: Option<EdgeNode> = get(&edges, e.id.as_str())?;
            if old.as_ref() == Some(e) {
                return Ok(Applied::unchanged());
            }
            edges.insert(e.id.as_str(), encode(e)?.as_slice())?;
            Ok(Applied::changed())
        }
        Command::DeleteEdgeNode { id } => {
            let mut edges = tx.open_table(EDGE_NODES)?;
            remove_existing(&mut edges, id.as_str())
        }
        Command::SetReplica(r) => {
            let mut replicas = tx.open_table(REPLICAS)?;
            let old: Option<ReplicaInfo> = get(&replicas, r.id)?;
            if old.as_ref() == Some(r) {
                return Ok(Applied::unchanged());
            }
            replicas.insert(r.id, encode(r)?.as_slice())?;
            Ok(Applied::changed())
        }
        Command::RemoveReplica { id } => {
            let mut replicas = tx.open_table(REPLICAS)?;
            remove_existing(&mut replicas, *id)
        }
    }
}

fn create_origin(tx: &WriteTransaction, o: &Origin) -> Result<Applied, StoreError> {
    let mut origins = tx.open_table(ORIGINS)?;
    let mut names = tx.open_table(ORIGIN_NAMES)?;
    if let Some(existing) = get::<_, Origin>(&origins, o.id.as_str())? {
        return Ok(if &existing == o {
            Applied::unchanged()
        } else {
            Applied::rejected(Rejection::IdTaken(o.id.clone()))
        });
    }
    if names.get(o.name.as_str())?.is_some() {
        return Ok(Applied::rejected(Rejection::NameTaken(o.name.clone())));
    }
    origins.insert(o.id.as_str(), encode(o)?.as_slice())?;
    names.insert(o.name.as_str(), o.id.as_str())?;
    Ok(Applied::changed())
}

fn delete_origin(tx: &WriteTransaction, id: &str) -> Result<Applied, StoreError> {
    let mut origins = tx.open_table(ORIGINS)?;
    let Some(origin) = get::<_, Origin>(&origins, id)? else {
        return Ok(Applied::rejected(Rejection::NotFound));
    };
    let in_use = {
        let by_origin = tx.open_table(ORIGIN_ROUTES)?;
        let mut n = 0;
        for row in by_origin.range((id, "")..)? {
            let (key, _) = row?;
            if key.value().0 != id {
                break;
            }
            n += 1;
        }
        n
    };
    if in_use > 0 {
        return Ok(Applied::rejected(Rejection::OriginInUse(
            origin.name,
            in_use,
        )));
    }
    origins.remove(id)?;
    tx.open_table(ORIGIN_NAMES)?.remove(origin.name.as_str())?;
    Ok(Applied::changed())
}

fn create_route(tx: &WriteTransaction, r: &Route) -> Result<Applied, StoreError> {
    let mut routes = tx.open_table(ROUTES)?;
    let mut hosts = tx.open_table(ROUTE_HOSTS)?;
    if let Some(existing) = get::<_, Route>(&routes, r.id.as_str())? {
        return Ok(if &existing == r {
            Applied::unchanged()
        } else {
            Applied::rejected(Rejection::IdTaken(r.id.clone()))
        });
    }
    if hosts.get(r.hostname.as_str())?.is_some() {
        return Ok(Applied::rejected(Rejection::HostnameTaken(
            r.hostname.clone(),
        )));
    }
    if tx.open_table(ORIGINS)?.get(r.origin_id.as_str())?.is_none() {
        return Ok(Applied::rejected(Rejection::UnknownOrigin(
            r.origin_id.clone(),
        )));
    }
    routes.insert(r.id.as_str(), encode(r)?.as_slice())?;
    hosts.insert(r.hostname.as_str(), r.id.as_str())?;
    tx.open_table(ORIGIN_ROUTES)?
        .insert((r.origin_id.as_str(), r.id.as_str()), ())?;
    Ok(Applied::changed())
}

fn delete_route(tx: &WriteTransaction, id: &str) -> Result<Applied, StoreError> {
    let mut routes = tx.open_table(ROUTES)?;
    let Some(route) = get::<_, Route>(&routes, id)? else {
        return Ok(Applied::rejected(Rejection::NotFound));
    };
    routes.remove(id)?;
    tx.open_table(ROUTE_HOSTS)?
        .remove(route.hostname.as_str())?;
    tx.open_table(ORIGIN_ROUTES)?
        .remove((route.origin_id.as_str(), id))?;
    Ok(Applied::changed())
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
        return Ok(if &existing == value {
            Applied::unchanged()
        } else {
            Applied::rejected(Rejection::IdTaken(key.to_string()))
        });
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
