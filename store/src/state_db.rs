//! `state.redb`: the applied state, read by the API and written only by `apply` and snapshot
//! install.
//!
//! The state tables and the raft metadata that must move with them (last applied log id,
//! membership, version) are always written in one transaction, so a crash never leaves a
//! half-applied batch. All methods block: call them from a blocking thread.

use std::path::Path;

use redb::{
    Database, Durability, ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction,
};
use serde::de::DeserializeOwned;

use crate::apply::{get, StateTables};
use crate::codec::{decode, encode};
use crate::command::{Command, Outcome};
use crate::model::{EdgeNode, Origin, ReplicaInfo, Route, StateImage, Token};
use crate::tables::*;
use crate::StoreError;

/// Raft metadata stored with the state, opaque to this crate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedMeta {
    /// The encoded last applied log id.
    pub applied: Option<Vec<u8>>,
    /// The encoded last applied membership.
    pub membership: Option<Vec<u8>>,
}

/// The state database of one replica.
#[derive(Debug)]
pub struct StateDb {
    db: Database,
}

impl StateDb {
    /// Opens (or creates) the state database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        create_tables(&tx)?;
        tx.commit()?;
        Ok(StateDb { db })
    }

    /// Applies a batch of committed entries in one transaction. `entries` holds each entry's
    /// log index and its command (`None` for raft's own entries: blank, membership). Returns one
    /// outcome per entry with a command, in order, and the version afterwards.
    ///
    /// With `durable` false the commit is not fsynced: a crash may lose it (whole, never half),
    /// and the raft log, which is durable, replays it. A later durable commit (the next
    /// `durable` batch, a snapshot) persists every earlier one.
    pub fn apply_batch(
        &self,
        entries: &[(u64, Option<&Command>)],
        meta: &AppliedMeta,
        durable: bool,
    ) -> Result<(Vec<Outcome>, u64), StoreError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut version = None;
        {
            let mut tables = StateTables::open(&tx)?;
            for (index, command) in entries {
                let Some(command) = command else { continue };
                let applied = tables.apply(command)?;
                if applied.changed {
                    version = Some(*index);
                }
                outcomes.push(applied.outcome);
            }
        }
        let version = {
            let mut m = tx.open_table(STATE_META)?;
            if let Some(v) = version {
                m.insert(META_VERSION, v.to_be_bytes().as_slice())?;
            }
            put_meta(&mut m, meta)?;
            match version {
                Some(v) => v,
                None => read_version_from(&m)?,
            }
        };
        tx.commit()?;
        Ok((outcomes, version))
    }

    /// The raft metadata stored with the state.
    pub fn applied_meta(&self) -> Result<AppliedMeta, StoreError> {
        self.reader()?.applied_meta()
    }

    /// Log index of the last command that changed the state (0 before any).
    pub fn version(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        read_version(&tx)
    }

    /// A consistent reader over the current state.
    pub fn reader(&self) -> Result<StateReader, StoreError> {
        Ok(StateReader {
            tx: self.db.begin_read()?,
        })
    }

    /// The whole state from one consistent read, as a snapshot carries it.
    pub fn image(&self) -> Result<StateImage, StoreError> {
        self.reader()?.image()
    }

    /// Replaces the whole state with `image` and its raft metadata in one durable transaction.
    pub fn install(&self, image: &StateImage, meta: &AppliedMeta) -> Result<(), StoreError> {
        let tx = self.begin_write()?;
        for name in [ORIGINS, ROUTES, TOKENS, EDGE_NODES] {
            tx.delete_table(name)?;
        }
        tx.delete_table(ORIGIN_NAMES)?;
        tx.delete_table(ROUTE_HOSTS)?;
        tx.delete_table(ORIGIN_ROUTES)?;
        tx.delete_table(REPLICAS)?;
        create_tables(&tx)?;
        {
            let mut origins = tx.open_table(ORIGINS)?;
            let mut names = tx.open_table(ORIGIN_NAMES)?;
            for o in &image.origins {
                origins.insert(o.id.as_str(), encode(o)?.as_slice())?;
                names.insert(o.name.as_str(), o.id.as_str())?;
            }
            let mut routes = tx.open_table(ROUTES)?;
            let mut hosts = tx.open_table(ROUTE_HOSTS)?;
            let mut by_origin = tx.open_table(ORIGIN_ROUTES)?;
            for r in &image.routes {
                routes.insert(r.id.as_str(), encode(r)?.as_slice())?;
                hosts.insert(r.hostname.as_str(), r.id.as_str())?;
                by_origin.insert((r.origin_id.as_str(), r.id.as_str()), ())?;
            }
            let mut tokens = tx.open_table(TOKENS)?;
            for t in &image.tokens {
                tokens.insert(t.id.as_str(), encode(t)?.as_slice())?;
            }
            let mut edges = tx.open_table(EDGE_NODES)?;
            for e in &image.edge_nodes {
                edges.insert(e.id.as_str(), encode(e)?.as_slice())?;
            }
            let mut replicas = tx.open_table(REPLICAS)?;
            for r in &image.replicas {
                replicas.insert(r.id, encode(r)?.as_slice())?;
            }
            let mut m = tx.open_table(STATE_META)?;
            m.insert(META_VERSION, image.version.to_be_bytes().as_slice())?;
            m.remove(META_APPLIED)?;
            m.remove(META_MEMBERSHIP)?;
            put_meta(&mut m, meta)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes every earlier commit durable (one small fsynced commit).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.begin_write()?.commit()?;
        Ok(())
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate);
        Ok(tx)
    }
}

fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(STATE_META)?;
    tx.open_table(ORIGINS)?;
    tx.open_table(ORIGIN_NAMES)?;
    tx.open_table(ROUTES)?;
    tx.open_table(ROUTE_HOSTS)?;
    tx.open_table(ORIGIN_ROUTES)?;
    tx.open_table(TOKENS)?;
    tx.open_table(EDGE_NODES)?;
    tx.open_table(REPLICAS)?;
    Ok(())
}

fn put_meta(
    m: &mut redb::Table<&'static str, &'static [u8]>,
    meta: &AppliedMeta,
) -> Result<(), StoreError> {
    if let Some(applied) = &meta.applied {
        m.insert(META_APPLIED, applied.as_slice())?;
    }
    if let Some(membership) = &meta.membership {
        m.insert(META_MEMBERSHIP, membership.as_slice())?;
    }
    Ok(())
}

fn read_version(tx: &ReadTransaction) -> Result<u64, StoreError> {
    read_version_from(&tx.open_table(STATE_META)?)
}

fn read_version_from(
    m: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<u64, StoreError> {
    let Some(v) = m.get(META_VERSION)? else {
        return Ok(0);
    };
    let bytes: [u8; 8] = v
        .value()
        .try_into()
        .map_err(|_| StoreError::Corrupt("version is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// A consistent, read-only view of the state (one redb read transaction).
#[derive(Debug)]
pub struct StateReader {
    tx: ReadTransaction,
}

impl StateReader {
    /// The raft metadata stored with this state.
    pub fn applied_meta(&self) -> Result<AppliedMeta, StoreError> {
        let m = self.tx.open_table(STATE_META)?;
        Ok(AppliedMeta {
            applied: m.get(META_APPLIED)?.map(|g| g.value().to_vec()),
            membership: m.get(META_MEMBERSHIP)?.map(|g| g.value().to_vec()),
        })
    }

    /// Log index of the last command that changed the state.
    pub fn version(&self) -> Result<u64, StoreError> {
        read_version(&self.tx)
    }

    pub fn origins(&self) -> Result<Vec<Origin>, StoreError> {
        let mut v: Vec<Origin> = all(&self.tx, ORIGINS)?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    pub fn origin(&self, id: &str) -> Result<Option<Origin>, StoreError> {
        get(&self.tx.open_table(ORIGINS)?, id)
    }

    /// Looks an origin up by name.
    pub fn origin_by_name(&self, name: &str) -> Result<Option<Origin>, StoreError> {
        let names = self.tx.open_table(ORIGIN_NAMES)?;
        match names.get(name)? {
            Some(id) => self.origin(id.value()),
            None => Ok(None),
        }
    }

    pub fn routes(&self) -> Result<Vec<Route>, StoreError> {
        let mut v: Vec<Route> = all(&self.tx, ROUTES)?;
        v.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        Ok(v)
    }

    pub fn route(&self, id: &str) -> Result<Option<Route>, StoreError> {
        get(&self.tx.open_table(ROUTES)?, id)
    }

    /// Looks a route up by its (normalised) hostname.
    pub fn route_by_hostname(&self, hostname: &str) -> Result<Option<Route>, StoreError> {
        let hosts = self.tx.open_table(ROUTE_HOSTS)?;
        match hosts.get(hostname)? {
            Some(id) => self.route(id.value()),
            None => Ok(None),
        }
    }

    pub fn route_count(&self) -> Result<u64, StoreError> {
        Ok(self.tx.open_table(ROUTES)?.len()?)
    }

    pub fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        let mut v: Vec<Token> = all(&self.tx, TOKENS)?;
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    pub fn token(&self, id: &str) -> Result<Option<Token>, StoreError> {
        get(&self.tx.open_table(TOKENS)?, id)
    }

    pub fn edge_nodes(&self) -> Result<Vec<EdgeNode>, StoreError> {
        let mut v: Vec<EdgeNode> = all(&self.tx, EDGE_NODES)?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    pub fn replicas(&self) -> Result<Vec<ReplicaInfo>, StoreError> {
        let table = self.tx.open_table(REPLICAS)?;
        let mut v = Vec::new();
        for row in table.iter()? {
            v.push(decode(row?.1.value())?);
        }
        Ok(v)
    }

    /// The whole state, sorted.
    pub fn image(&self) -> Result<StateImage, StoreError> {
        Ok(StateImage {
            version: self.version()?,
            origins: self.origins()?,
            routes: self.routes()?,
            tokens: self.tokens()?,
            edge_nodes: self.edge_nodes()?,
            replicas: self.replicas()?,
        })
    }
}

fn all<V: DeserializeOwned>(
    tx: &ReadTransaction,
    def: redb::TableDefinition<&'static str, &'static [u8]>,
) -> Result<Vec<V>, StoreError> {
    let table = tx.open_table(def)?;
    let mut v = Vec::new();
    for row in table.iter()? {
        v.push(decode(row?.1.value())?);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OriginKind;
    use crate::Rejection;

    fn origin(id: &str, name: &str) -> Command {
        Command::CreateOrigin(Origin {
            id: id.into(),
            name: name.into(),
            kind: OriginKind::Tunnel,
            created_at: 1,
        })
    }

    fn route(id: &str, host: &str, origin_id: &str) -> Command {
        Command::CreateRoute(Route {
            id: id.into(),
            hostname: host.into(),
            origin_id: origin_id.into(),
            target: "localhost:8080".into(),
            created_at: 2,
        })
    }

    fn open() -> (tempfile::TempDir, StateDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state.redb")).unwrap();
        (dir, db)
    }

    fn apply(db: &StateDb, index: u64, cmd: &Command) -> Outcome {
        let meta = AppliedMeta {
            applied: Some(index.to_be_bytes().to_vec()),
            membership: None,
        };
        db.apply_batch(&[(index, Some(cmd))], &meta, index.is_multiple_of(2))
            .unwrap()
            .0
            .remove(0)
    }

    #[test]
    fn rejected_commands_change_nothing_and_keep_the_version() {
        let (_d, db) = open();
        assert_eq!(apply(&db, 1, &origin("o1", "home")), Outcome::Applied);
        assert_eq!(
            apply(&db, 2, &route("r1", "app.example.com", "o1")),
            Outcome::Applied
        );
        let before = db.image().unwrap();
        assert_eq!(before.version, 2);
        let rejected = [
            (route("r2", "app.example.com", "o1"), "hostname_taken"),
            (route("r3", "b.example.com", "nope"), "unknown_origin"),
            (route("r4", "Not Valid", "o1"), "invalid_hostname"),
            (origin("o2", "home"), "name_taken"),
            (Command::DeleteOrigin { id: "o1".into() }, "origin_in_use"),
            (Command::DeleteRoute { id: "zz".into() }, "not_found"),
        ];
        for (i, (cmd, code)) in rejected.iter().enumerate() {
            match apply(&db, 3 + i as u64, cmd) {
                Outcome::Rejected(r) => assert_eq!(r.code(), *code, "{cmd:?}"),
                other => panic!("{cmd:?} gave {other:?}"),
            }
        }
        assert_eq!(db.image().unwrap(), before);
        assert_eq!(
            db.applied_meta().unwrap().applied,
            Some(8u64.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn a_batch_applies_each_command_on_its_own() {
        let (_d, db) = open();
        apply(&db, 1, &origin("o1", "home"));
        let batch = Command::Batch(vec![
            route("r1", "a.example.com", "o1"),
            route("r2", "a.example.com", "o1"),
            route("r3", "bad host", "o1"),
            route("r4", "b.example.com", "o1"),
        ]);
        let Outcome::Batch(outcomes) = apply(&db, 2, &batch) else {
            panic!("not a batch outcome")
        };
        let codes: Vec<&str> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Applied => "applied",
                Outcome::Rejected(r) => r.code(),
                Outcome::Batch(_) => "batch",
            })
            .collect();
        assert_eq!(
            codes,
            ["applied", "hostname_taken", "invalid_hostname", "applied"]
        );
        assert_eq!(db.version().unwrap(), 2);
        let nested = Command::Batch(vec![Command::Batch(vec![])]);
        assert!(matches!(apply(&db, 3, &nested), Outcome::Rejected(_)));
        assert_eq!(db.version().unwrap(), 2);
    }

    #[test]
    fn a_repeated_create_is_idempotent() {
        let (_d, db) = open();
        apply(&db, 1, &origin("o1", "home"));
        assert_eq!(apply(&db, 2, &origin("o1", "home")), Outcome::Applied);
        assert_eq!(db.version().unwrap(), 1);
        assert_eq!(
            apply(&db, 3, &origin("o1", "other")),
            Outcome::Rejected(Rejection::IdTaken("o1".into()))
        );
    }

    #[test]
    fn delete_frees_the_hostname_and_the_origin() {
        let (_d, db) = open();
        apply(&db, 1, &origin("o1", "home"));
        apply(&db, 2, &route("r1", "app.example.com", "o1"));
        assert_eq!(
            apply(&db, 3, &Command::DeleteRoute { id: "r1".into() }),
            Outcome::Applied
        );
        assert_eq!(
            apply(&db, 4, &Command::DeleteOrigin { id: "o1".into() }),
            Outcome::Applied
        );
        apply(&db, 5, &origin("o2", "home"));
        assert_eq!(
            apply(&db, 6, &route("r2", "app.example.com", "o2")),
            Outcome::Applied
        );
        let r = db.reader().unwrap();
        assert_eq!(
            r.route_by_hostname("app.example.com").unwrap().unwrap().id,
            "r2"
        );
        assert_eq!(r.origin_by_name("home").unwrap().unwrap().id, "o2");
    }

    #[test]
    fn tokens_are_used_up_expire_and_revoke() {
        let (_d, db) = open();
        let token = Token {
            id: "t1".into(),
            role: crate::Role::Server,
            secret_hash: "00".into(),
            created_at: 0,
            expires_at: Some(100),
            max_uses: Some(1),
            uses: 0,
            revoked: false,
        };
        apply(&db, 1, &Command::CreateToken(token));
        let use_at = |now| Command::UseToken {
            id: "t1".into(),
            now,
        };
        assert_eq!(apply(&db, 2, &use_at(10)), Outcome::Applied);
        assert_eq!(
            apply(&db, 3, &use_at(11)),
            Outcome::Rejected(Rejection::TokenUsedUp)
        );
        apply(&db, 4, &Command::RevokeToken { id: "t1".into() });
        assert_eq!(
            apply(&db, 5, &use_at(12)),
            Outcome::Rejected(Rejection::TokenRevoked)
        );
    }

    #[test]
    fn install_replaces_everything_in_one_go() {
        let (_d, a) = open();
        apply(&a, 1, &origin("o1", "home"));
        apply(&a, 2, &route("r1", "app.example.com", "o1"));
        let image = a.image().unwrap();
        let (_d2, b) = open();
        apply(&b, 1, &origin("x", "stale"));
        let meta = AppliedMeta {
            applied: Some(vec![2]),
            membership: Some(vec![9]),
        };
        b.install(&image, &meta).unwrap();
        assert_eq!(b.image().unwrap(), image);
        assert_eq!(b.applied_meta().unwrap(), meta);
        assert!(b
            .reader()
            .unwrap()
            .origin_by_name("stale")
            .unwrap()
            .is_none());
    }
}
