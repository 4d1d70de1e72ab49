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
use crate::model::{
    Agent, Certificate, DnsRecord, DnsZone, EdgeHealth, EdgeNode, Origin, ReplicaInfo, Route,
    Settings, StateImage, Token,
};
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
        for def in [
            ORIGINS,
            ROUTES,
            TOKENS,
            EDGE_NODES,
            AGENTS,
            DNS_RECORDS,
            DNS_ZONES,
            EDGE_HEALTH,
            CERTIFICATES,
        ] {
            tx.delete_table(def)?;
        }
        tx.delete_table(ORIGIN_NAMES)?;
        tx.delete_table(ROUTE_HOSTS)?;
        tx.delete_table(ORIGIN_ROUTES)?;
        tx.delete_table(REPLICAS)?;
        tx.delete_table(LAST_SEEN)?;
        create_tables(&tx)?;
        put_records(&tx, ORIGINS, &image.origins, |o| &o.id)?;
        put_records(&tx, ROUTES, &image.routes, |r| &r.id)?;
        put_records(&tx, TOKENS, &image.tokens, |t| &t.id)?;
        put_records(&tx, EDGE_NODES, &image.edge_nodes, |e| &e.id)?;
        put_records(&tx, AGENTS, &image.agents, |a| &a.id)?;
        put_records(&tx, DNS_RECORDS, &image.dns_records, |r| &r.id)?;
        put_records(&tx, CERTIFICATES, &image.certificates, |c| &c.id)?;
        put_records(&tx, DNS_ZONES, &image.dns_zones, |z| &z.name)?;
        put_records(&tx, EDGE_HEALTH, &image.edge_health, |h| &h.edge_id)?;
        {
            let mut names = tx.open_table(ORIGIN_NAMES)?;
            for o in &image.origins {
                names.insert(o.name.as_str(), o.id.as_str())?;
            }
            let mut hosts = tx.open_table(ROUTE_HOSTS)?;
            let mut by_origin = tx.open_table(ORIGIN_ROUTES)?;
            for r in &image.routes {
                hosts.insert(r.hostname.as_str(), r.id.as_str())?;
                by_origin.insert((r.origin_id.as_str(), r.id.as_str()), ())?;
            }
            let mut replicas = tx.open_table(REPLICAS)?;
            for r in &image.replicas {
                replicas.insert(r.id, encode(r)?.as_slice())?;
            }
            let mut seen = tx.open_table(LAST_SEEN)?;
            for (id, at) in &image.last_seen {
                seen.insert(id.as_str(), *at)?;
            }
            let mut m = tx.open_table(STATE_META)?;
            m.insert(META_VERSION, image.version.to_be_bytes().as_slice())?;
            m.insert(META_SETTINGS, encode(&image.settings)?.as_slice())?;
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
    tx.open_table(AGENTS)?;
    tx.open_table(DNS_RECORDS)?;
    tx.open_table(CERTIFICATES)?;
    tx.open_table(DNS_ZONES)?;
    tx.open_table(EDGE_HEALTH)?;
    tx.open_table(LAST_SEEN)?;
    Ok(())
}

/// Inserts encoded records keyed by their id.
fn put_records<T: serde::Serialize>(
    tx: &WriteTransaction,
    def: redb::TableDefinition<&'static str, &'static [u8]>,
    items: &[T],
    id: impl Fn(&T) -> &String,
) -> Result<(), StoreError> {
    let mut table = tx.open_table(def)?;
    for item in items {
        table.insert(id(item).as_str(), encode(item)?.as_slice())?;
    }
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
            agents: self.agents()?,
            dns_records: self.dns_records()?,
            certificates: self.certificates()?,
            dns_zones: self.dns_zones()?,
            edge_health: self.edge_health()?,
            settings: self.settings()?,
            last_seen: self.last_seen()?,
            replicas: self.replicas()?,
        })
    }

    /// Agents, by origin then name.
    pub fn agents(&self) -> Result<Vec<Agent>, StoreError> {
        let mut v: Vec<Agent> = all(&self.tx, AGENTS)?;
        v.sort_by(|a, b| (&a.origin_id, &a.name).cmp(&(&b.origin_id, &b.name)));
        Ok(v)
    }

    pub fn agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
        get(&self.tx.open_table(AGENTS)?, id)
    }

    pub fn edge_node(&self, id: &str) -> Result<Option<EdgeNode>, StoreError> {
        get(&self.tx.open_table(EDGE_NODES)?, id)
    }

    /// Static DNS records, by name then type.
    pub fn dns_records(&self) -> Result<Vec<DnsRecord>, StoreError> {
        let mut v: Vec<DnsRecord> = all(&self.tx, DNS_RECORDS)?;
        v.sort_by(|a, b| {
            (&a.name, a.rtype as u8, &a.value).cmp(&(&b.name, b.rtype as u8, &b.value))
        });
        Ok(v)
    }

    pub fn dns_record(&self, id: &str) -> Result<Option<DnsRecord>, StoreError> {
        get(&self.tx.open_table(DNS_RECORDS)?, id)
    }

    /// Managed DNS zones, by name.
    pub fn dns_zones(&self) -> Result<Vec<DnsZone>, StoreError> {
        all(&self.tx, DNS_ZONES)
    }

    /// The last committed health of every edge that has one, by edge id.
    pub fn edge_health(&self) -> Result<Vec<EdgeHealth>, StoreError> {
        all(&self.tx, EDGE_HEALTH)
    }

    /// TLS certificates, by id.
    pub fn certificates(&self) -> Result<Vec<Certificate>, StoreError> {
        all(&self.tx, CERTIFICATES)
    }

    pub fn certificate(&self, id: &str) -> Result<Option<Certificate>, StoreError> {
        get(&self.tx.open_table(CERTIFICATES)?, id)
    }

    pub fn settings(&self) -> Result<Settings, StoreError> {
        let m = self.tx.open_table(STATE_META)?;
        match m.get(META_SETTINGS)? {
            Some(g) => decode(g.value()),
            None => Ok(Settings::default()),
        }
    }

    /// Committed last-seen times, by id.
    pub fn last_seen(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let table = self.tx.open_table(LAST_SEEN)?;
        let mut v = Vec::new();
        for row in table.iter()? {
            let (k, at) = row?;
            v.push((k.value().to_string(), at.value()));
        }
        Ok(v)
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
            subnet: None,
        })
    }

    fn route(id: &str, host: &str, origin_id: &str) -> Command {
        Command::CreateRoute(Route {
            id: id.into(),
            hostname: host.into(),
            origin_id: origin_id.into(),
            target: "localhost:8080".into(),
            created_at: 2,
            rate_limit: None,
            allow_http: false,
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

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn token(id: &str, role: crate::Role, subject: Option<crate::Subject>) -> Token {
        Token {
            id: id.into(),
            role,
            secret_hash: "00".into(),
            created_at: 0,
            expires_at: None,
            max_uses: Some(2),
            uses: 0,
            revoked: false,
            subject,
        }
    }

    fn register_edge(id: &str, name: &str, bootstrap: &str) -> Command {
        Command::RegisterEdge {
            edge: EdgeNode {
                id: id.into(),
                name: name.into(),
                public_ip: "203.0.113.7".into(),
                wg_public_key: KEY.into(),
                wg_port: 51820,
                http_port: 80,
                tunnel_ip: None,
                created_at: 5,
            },
            token: token(
                &format!("{id}-t"),
                crate::Role::Edge,
                Some(crate::Subject::Edge(id.into())),
            ),
            bootstrap_id: bootstrap.into(),
            now: 5,
        }
    }

    fn register_agent(id: &str, origin: &str, bootstrap: &str) -> Command {
        Command::RegisterAgent {
            agent: Agent {
                id: id.into(),
                origin_id: origin.into(),
                name: id.into(),
                wg_public_key: KEY.into(),
                tunnel_ip: None,
                created_at: 5,
            },
            token: token(
                &format!("{id}-t"),
                crate::Role::Agent,
                Some(crate::Subject::Agent(id.into())),
            ),
            bootstrap_id: bootstrap.into(),
            now: 5,
        }
    }

    #[test]
    fn tunnel_origins_get_free_subnets_and_reuse_freed_ones() {
        let (_d, db) = open();
        apply(&db, 1, &origin("o1", "a"));
        apply(&db, 2, &origin("o2", "b"));
        let subnet = |id: &str| db.reader().unwrap().origin(id).unwrap().unwrap().subnet;
        assert_eq!(subnet("o1").as_deref(), Some("100.96.0.0/24"));
        assert_eq!(subnet("o2").as_deref(), Some("100.96.1.0/24"));
        apply(&db, 3, &Command::DeleteOrigin { id: "o1".into() });
        apply(&db, 4, &origin("o3", "c"));
        assert_eq!(subnet("o3").as_deref(), Some("100.96.0.0/24"));
        let direct = Command::CreateOrigin(Origin {
            id: "o4".into(),
            name: "d".into(),
            kind: OriginKind::Direct,
            created_at: 1,
            subnet: None,
        });
        apply(&db, 5, &direct);
        assert_eq!(subnet("o4"), None);
    }

    #[test]
    fn edges_and_agents_register_with_their_tokens() {
        let (_d, db) = open();
        apply(&db, 1, &origin("o1", "home"));
        apply(
            &db,
            2,
            &Command::CreateToken(token("boot", crate::Role::Edge, None)),
        );
        apply(
            &db,
            3,
            &Command::CreateToken(token(
                "ag",
                crate::Role::Agent,
                Some(crate::Subject::Origin("o1".into())),
            )),
        );
        assert_eq!(
            apply(&db, 4, &register_edge("e1", "edge-a", "boot")),
            Outcome::Applied
        );
        assert_eq!(
            apply(&db, 5, &register_edge("e2", "edge-a", "boot")),
            Outcome::Rejected(Rejection::NameTaken("edge-a".into()))
        );
        assert_eq!(
            apply(&db, 6, &register_edge("e3", "edge-b", "ag")),
            Outcome::Rejected(Rejection::WrongToken)
        );
        assert_eq!(
            apply(&db, 7, &register_edge("e4", "edge-c", "boot")),
            Outcome::Applied
        );
        // max_uses 2: used up now.
        assert_eq!(
            apply(&db, 8, &register_edge("e5", "edge-d", "boot")),
            Outcome::Rejected(Rejection::TokenUsedUp)
        );
        let r = db.reader().unwrap();
        assert_eq!(
            r.edge_node("e1").unwrap().unwrap().tunnel_ip.as_deref(),
            Some("100.64.0.1")
        );
        assert_eq!(
            r.edge_node("e4").unwrap().unwrap().tunnel_ip.as_deref(),
            Some("100.64.0.2")
        );
        assert!(r.token("e1-t").unwrap().is_some());
        drop(r);

        assert_eq!(
            apply(&db, 9, &register_agent("a1", "o1", "ag")),
            Outcome::Applied
        );
        assert_eq!(
            apply(&db, 10, &register_agent("a2", "o1", "boot")),
            Outcome::Rejected(Rejection::WrongToken)
        );
        let r = db.reader().unwrap();
        assert_eq!(
            r.agent("a1").unwrap().unwrap().tunnel_ip.as_deref(),
            Some("100.96.0.1")
        );
        drop(r);

        // Deleting the edge takes its token; deleting the origin takes its agents and tokens.
        apply(&db, 11, &Command::DeleteEdgeNode { id: "e1".into() });
        assert!(db.reader().unwrap().token("e1-t").unwrap().is_none());
        apply(&db, 12, &Command::DeleteOrigin { id: "o1".into() });
        let r = db.reader().unwrap();
        assert!(r.agents().unwrap().is_empty());
        assert!(r.token("a1-t").unwrap().is_none());
        assert!(r.token("ag").unwrap().is_none());
    }

    #[test]
    fn edge_health_keeps_its_transition_when_only_the_origins_change() {
        let (_d, db) = open();
        apply(
            &db,
            1,
            &Command::CreateToken(token("boot", crate::Role::Edge, None)),
        );
        apply(&db, 2, &register_edge("e1", "edge-a", "boot"));
        let health = |healthy: bool, since: u64, reason: &str, origins: &[&str]| {
            Command::SetEdgeHealth(EdgeHealth {
                edge_id: "e1".into(),
                healthy,
                since,
                reason: reason.into(),
                unreachable_origins: origins.iter().map(|o| o.to_string()).collect(),
            })
        };
        let stored = || db.reader().unwrap().edge_health().unwrap();
        apply(&db, 3, &health(true, 10, "2 good probes", &[]));
        // The same verdict again changes nothing (no new version).
        apply(&db, 4, &health(true, 20, "2 good probes", &[]));
        assert_eq!(stored()[0].since, 10);
        assert_eq!(db.version().unwrap(), 3);
        // Only the origins: the transition's time and reason stay.
        apply(&db, 5, &health(true, 30, "ignored", &["o1"]));
        assert_eq!(stored()[0].since, 10);
        assert_eq!(stored()[0].reason, "2 good probes");
        assert_eq!(stored()[0].unreachable_origins, ["o1"]);
        // A transition takes everything.
        apply(&db, 6, &health(false, 40, "3 failed probes", &["o1"]));
        assert_eq!(stored()[0].since, 40);
        assert!(!stored()[0].healthy);
        assert!(matches!(
            apply(&db, 7, &health(true, 50, "x", &["not an id"])),
            Outcome::Rejected(_)
        ));
    }

    #[test]
    fn certificates_are_replaced_in_one_write_and_survive_install() {
        let (_d, db) = open();
        let cert = |id: &str, names: &[&str]| crate::Certificate {
            id: id.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            chain_pem: "PEM".into(),
            sealed_key: "sealed".into(),
            not_before: 1,
            not_after: 2,
            fingerprint: "00".into(),
            created_at: 1,
        };
        let create = |c, replaces: Option<&str>| Command::CreateCertificate {
            certificate: c,
            replaces: replaces.map(str::to_string),
        };
        assert_eq!(
            apply(&db, 1, &create(cert("c1", &["a.example.com"]), None)),
            Outcome::Applied
        );
        assert!(matches!(
            apply(&db, 2, &create(cert("c2", &[]), None)),
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            apply(&db, 3, &create(cert("c3", &["Not Normal.com"]), None)),
            Outcome::Rejected(_)
        ));
        assert_eq!(
            apply(&db, 4, &create(cert("c4", &["*.example.com"]), Some("c1"))),
            Outcome::Applied
        );
        let ids = |db: &StateDb| -> Vec<String> {
            let r = db.reader().unwrap();
            r.certificates()
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(ids(&db), vec!["c4"]);
        let image = db.image().unwrap();
        let (_d2, other) = open();
        other
            .install(&image, &AppliedMeta::default())
            .expect("install");
        assert_eq!(ids(&other), vec!["c4"]);
        assert_eq!(
            apply(&db, 5, &Command::DeleteCertificate { id: "c4".into() }),
            Outcome::Applied
        );
        assert!(ids(&db).is_empty());
    }

    #[test]
    fn dns_records_settings_and_last_seen() {
        let (_d, db) = open();
        let rec = Command::CreateDnsRecord(crate::DnsRecord {
            id: "d1".into(),
            name: "app1".into(),
            rtype: crate::DnsType::A,
            value: "1.2.3.4".into(),
            ttl: 30,
            created_at: 1,
        });
        assert_eq!(apply(&db, 1, &rec), Outcome::Applied);
        let bad = Command::SetSettings(crate::Settings {
            tunnel_pool: "10.0.0.0/25".into(),
            edge_pool: "100.64.0.0/16".into(),
            ..crate::Settings::default()
        });
        assert!(matches!(apply(&db, 2, &bad), Outcome::Rejected(_)));
        let good = Command::SetSettings(crate::Settings {
            tunnel_pool: "10.8.0.0/16".into(),
            edge_pool: "10.9.0.0/24".into(),
            ..crate::Settings::default()
        });
        let slow = Command::SetSettings(crate::Settings {
            health_timeout_secs: 10,
            health_interval_secs: 5,
            ..crate::Settings::default()
        });
        assert!(matches!(apply(&db, 2, &slow), Outcome::Rejected(_)));
        assert_eq!(apply(&db, 3, &good), Outcome::Applied);
        apply(&db, 4, &origin("o1", "home"));
        assert_eq!(
            db.reader()
                .unwrap()
                .origin("o1")
                .unwrap()
                .unwrap()
                .subnet
                .as_deref(),
            Some("10.8.0.0/24")
        );
        apply(
            &db,
            5,
            &Command::CreateToken(token("boot", crate::Role::Edge, None)),
        );
        apply(&db, 6, &register_edge("e1", "edge-a", "boot"));
        let version = db.version().unwrap();
        apply(
            &db,
            7,
            &Command::RecordSeen {
                seen: vec![("e1".into(), 100), ("nobody".into(), 100)],
            },
        );
        apply(
            &db,
            8,
            &Command::RecordSeen {
                seen: vec![("e1".into(), 50)],
            },
        );
        assert_eq!(
            db.version().unwrap(),
            version,
            "last-seen times do not move the version"
        );
        assert_eq!(
            db.reader().unwrap().last_seen().unwrap(),
            vec![("e1".to_string(), 100)]
        );
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
            subject: None,
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
