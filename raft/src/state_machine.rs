//! The raft state machine over `state.redb`: applies committed commands, builds and installs
//! snapshots.
//!
//! Each batch of entries is applied in one transaction together with the last applied log id and
//! membership, so a crash never half-applies a batch. Like etcd's backend, most of these commits
//! skip the fsync: the raft log is durable and replays whatever a crash took back; a durable
//! commit follows at least every [`STATE_FLUSH_INTERVAL`] (the next apply's, or, when none
//! comes, an empty one from [`StateMachine::flush_when_idle`]), and every snapshot is durable, so
//! the log is never purged past what the state has on disk. redb calls run on tokio's blocking pool. After every apply or install
//! the new position is published on a watch channel, which the API uses to wait for its writes
//! and the pulls will use to wake up.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kokoa_store::codec::{decode, encode};
use kokoa_store::{
    AppliedMeta, Command, Outcome, SnapshotFile, StateDb, StateImage, StoreError, StoredSnapshot,
};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftLogId, RaftSnapshotBuilder};
use tokio::sync::{watch, Notify};

use crate::types::{
    read_error, write_error, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

/// Longest time between durable state commits. Applies in between are committed without fsync;
/// after a crash the durable raft log replays them.
const STATE_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Where the state machine stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedPosition {
    /// Raft log index of the last applied entry.
    pub index: u64,
    /// Log index of the last command that changed the state.
    pub version: u64,
    /// Changes whenever tokens may have changed: caches of tokens are valid while it stays.
    pub auth_epoch: u64,
}

/// Kokoa's [`RaftStateMachine`]; clones share the database.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<StateDb>,
    membership: Arc<Mutex<StoredMembership>>,
    position: Arc<watch::Sender<AppliedPosition>>,
    version: Arc<watch::Sender<u64>>,
    snapshot_seq: Arc<AtomicU64>,
    last_flush: Arc<Mutex<Instant>>,
    /// Rung after an apply that skipped the fsync.
    unflushed: Arc<Notify>,
    snapshot_file: SnapshotFile,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("position", &*self.position.borrow())
            .finish()
    }
}

impl StateMachine {
    /// Opens the state at `path`.
    /// Opens the state in `dir` (`state.redb`, and `snapshot.bin` for the current snapshot).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = StateDb::open(&dir.join("state.redb"))?;
        let meta = db.applied_meta()?;
        let applied: Option<LogId> = meta.applied.as_deref().map(decode).transpose()?;
        let membership: StoredMembership = meta
            .membership
            .as_deref()
            .map(decode)
            .transpose()?
            .unwrap_or_default();
        let index = applied.map_or(0, |l| l.index);
        let position = AppliedPosition {
            index,
            version: db.version()?,
            auth_epoch: index,
        };
        Ok(StateMachine {
            db: Arc::new(db),
            membership: Arc::new(Mutex::new(membership)),
            version: Arc::new(watch::channel(position.version).0),
            position: Arc::new(watch::channel(position).0),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            last_flush: Arc::new(Mutex::new(Instant::now())),
            unflushed: Arc::new(Notify::new()),
            snapshot_file: SnapshotFile::new(dir.join("snapshot.bin")),
        })
    }

    /// The state database, for reads.
    pub fn db(&self) -> &Arc<StateDb> {
        &self.db
    }

    /// Follows the applied position.
    pub fn position(&self) -> watch::Receiver<AppliedPosition> {
        self.position.subscribe()
    }

    /// Follows the state version only: it changes when the state does, not on every applied
    /// entry, so thousands of waiting pulls are not woken for nothing.
    pub fn version_watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn publish(&self, position: AppliedPosition) {
        self.position.send_replace(position);
        self.version.send_if_modified(|v| {
            let moved = *v != position.version;
            *v = position.version;
            moved
        });
    }

    /// Makes the applies that skipped the fsync durable once [`STATE_FLUSH_INTERVAL`] has
    /// passed without a durable commit, when no later apply did it. Runs until the state
    /// database is dropped; spawn it once.
    pub fn flush_when_idle(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let unflushed = self.unflushed.clone();
        let last_flush = self.last_flush.clone();
        let db = Arc::downgrade(&self.db);
        async move {
            loop {
                unflushed.notified().await;
                tokio::time::sleep(STATE_FLUSH_INTERVAL).await;
                let Some(db) = db.upgrade() else { return };
                let due = {
                    let mut last = last_flush.lock().unwrap_or_else(|p| p.into_inner());
                    let due = last.elapsed() >= STATE_FLUSH_INTERVAL;
                    if due {
                        *last = Instant::now();
                    }
                    due
                };
                if due {
                    match tokio::task::spawn_blocking(move || db.flush()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "cannot flush the state"),
                        Err(e) => tracing::warn!(error = %e, "state flush task failed"),
                    }
                }
            }
        }
    }

    /// Makes every apply so far durable (at shutdown: a restart then starts where this stopped).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.blocking(|db| db.flush()).await
    }

    /// Whether the next apply should be a durable commit, and if so restarts the interval.
    fn flush_due(&self) -> bool {
        let mut last = self.last_flush.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= STATE_FLUSH_INTERVAL {
            *last = Instant::now();
            true
        } else {
            false
        }
    }

    fn membership(&self) -> StoredMembership {
        self.membership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_membership(&self, m: StoredMembership) {
        *self.membership.lock().unwrap_or_else(|p| p.into_inner()) = m;
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StateDb) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Corrupt(format!("state task failed: {e}")))?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let meta = self
            .blocking(|db| db.applied_meta())
            .await
            .map_err(read_error)?;
        let applied: Option<LogId> = meta
            .applied
            .as_deref()
            .map(decode)
            .transpose()
            .map_err(read_error)?;
        Ok((applied, self.membership()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch: Vec<(u64, Option<Command>)> = Vec::new();
        let mut last: Option<LogId> = None;
        let mut membership = None;
        for entry in entries {
            let log_id = *entry.get_log_id();
            last = Some(log_id);
            match entry.payload {
                EntryPayload::Normal(cmd) => batch.push((log_id.index, Some(cmd))),
                EntryPayload::Blank => batch.push((log_id.index, None)),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(log_id), m));
                    batch.push((log_id.index, None));
                }
            }
        }
        let Some(last) = last else {
            return Ok(Vec::new());
        };
        let touches_tokens = batch
            .iter()
            .any(|(_, c)| c.as_ref().is_some_and(Command::touches_tokens));
        let meta = AppliedMeta {
            applied: Some(encode(&last).map_err(write_error)?),
            membership: membership
                .as_ref()
                .map(encode)
                .transpose()
                .map_err(write_error)?,
        };
        // Membership changes are made durable at once; other batches at least every
        // STATE_FLUSH_INTERVAL (the raft log, always durable, replays anything lost).
        let durable = membership.is_some() || self.flush_due();
        let ((outcomes, version), batch) = self
            .blocking(move |db| {
                let refs: Vec<(u64, Option<&Command>)> =
                    batch.iter().map(|(i, c)| (*i, c.as_ref())).collect();
                Ok((db.apply_batch(&refs, &meta, durable)?, batch))
            })
            .await
            .map_err(write_error)?;
        if let Some(m) = membership {
            self.set_membership(m);
        }
        if !durable {
            self.unflushed.notify_one();
        }
        let auth_epoch = if touches_tokens {
            last.index
        } else {
            self.position.borrow().auth_epoch
        };
        self.publish(AppliedPosition {
            index: last.index,
            version,
            auth_epoch,
        });
        // One response per entry: raft's own entries answer `Applied`.
        let mut outcomes = outcomes.into_iter();
        Ok(batch
            .iter()
            .map(|(_, cmd)| match cmd {
                Some(_) => outcomes.next().unwrap_or(Outcome::Applied),
                None => Outcome::Applied,
            })
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: StateImage = decode(&data).map_err(write_error)?;
        let applied = AppliedMeta {
            applied: meta
                .last_log_id
                .map(|l| encode(&l))
                .transpose()
                .map_err(write_error)?,
            membership: Some(encode(&meta.last_membership).map_err(write_error)?),
        };
        let stored = StoredSnapshot {
            meta: encode(meta).map_err(write_error)?,
            data,
        };
        let version = image.version;
        let file = self.snapshot_file.clone();
        self.blocking(move |db| {
            db.install(&image, &applied)?;
            file.save(&stored)
        })
        .await
        .map_err(write_error)?;
        self.set_membership(meta.last_membership.clone());
        let index = meta.last_log_id.map_or(0, |l| l.index);
        self.publish(AppliedPosition {
            index,
            version,
            auth_epoch: index,
        });
        tracing::info!(snapshot = %meta.snapshot_id, index, version, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let file = self.snapshot_file.clone();
        let Some(stored) = self
            .blocking(move |_| file.load())
            .await
            .map_err(read_error)?
        else {
            return Ok(None);
        };
        let meta: SnapshotMeta = decode(&stored.meta).map_err(read_error)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        // The image and the applied log id come from one read transaction: they match.
        let (image, applied) = self
            .blocking(|db| {
                let reader = db.reader()?;
                Ok((reader.image()?, reader.applied_meta()?))
            })
            .await
            .map_err(read_error)?;
        let last_log_id: Option<LogId> = applied
            .applied
            .as_deref()
            .map(decode)
            .transpose()
            .map_err(read_error)?;
        let last_membership: StoredMembership = applied
            .membership
            .as_deref()
            .map(decode)
            .transpose()
            .map_err(read_error)?
            .unwrap_or_default();
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, seq),
            None => format!("0-0-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let data = encode(&image).map_err(write_error)?;
        let stored = StoredSnapshot {
            meta: encode(&meta).map_err(write_error)?,
            data: data.clone(),
        };
        let file = self.snapshot_file.clone();
        // The state on disk must cover the snapshot before raft purges the log behind it:
        // flush the (mostly unsynced) applies first, then keep the snapshot file.
        self.blocking(move |db| {
            db.flush()?;
            file.save(&stored)
        })
        .await
        .map_err(write_error)?;
        tracing::debug!(snapshot = %meta.snapshot_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
