//! The raft log on redb, with group commit.
//!
//! Entries are kept in memory (the log is bounded by snapshotting and purging) so that reads
//! never touch the disk or block; every change goes, in order, to one writer thread that
//! commits whatever has queued up in a single durable redb transaction and only then reports
//! the entries flushed. Votes, truncation and purges go through the same queue and are awaited.
//! After a failed disk write the writer refuses everything: the raft node stops rather than
//! carry on with a log that may have a hole.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, RwLock};

use kokoa_store::codec::{decode, encode};
use kokoa_store::{LogDb, LogWrite, StoreError};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId, RaftLogReader};
use tokio::sync::{mpsc, oneshot};

use crate::types::{write_error, Entry, LogId, StorageError, TypeConfig, Vote};

const META_VOTE: &str = "vote";
const META_PURGED: &str = "purged";
/// Most queued jobs committed in one transaction.
const MAX_GROUP: usize = 4096;
/// Most purged entries deleted from disk in one commit.
const PURGE_CHUNK: u64 = 256;
/// Depth of the queue to the writer thread (back-pressure beyond it).
const QUEUE_DEPTH: usize = 4096;

/// The in-memory view of the log.
#[derive(Debug, Default)]
struct Cache {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
}

/// What the writer thread reports back to.
enum Done {
    Flushed(LogFlushed<TypeConfig>),
    Notify(oneshot::Sender<Result<(), String>>),
    /// Nobody waits (a purge: losing it in a crash only keeps old entries a while longer).
    Nothing,
}

struct Job {
    writes: Vec<LogWrite>,
    done: Done,
}

/// Kokoa's [`RaftLogStorage`]: cheap to clone; clones share the log.
#[derive(Clone)]
pub struct LogStore {
    cache: Arc<RwLock<Cache>>,
    writer: mpsc::Sender<Job>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens the log at `path`, loads it into memory, and starts its writer thread (which ends
    /// when every clone of the store is dropped).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = LogDb::open(path)?;
        let loaded = db.load()?;
        let mut cache = Cache::default();
        for (index, bytes) in loaded.entries {
            let entry: Entry = decode(&bytes)?;
            if entry.get_log_id().index != index {
                return Err(StoreError::Corrupt(format!(
                    "entry stored at {index} says otherwise"
                )));
            }
            cache.entries.insert(index, entry);
        }
        for (key, value) in loaded.meta {
            match key.as_str() {
                META_VOTE => cache.vote = Some(decode(&value)?),
                META_PURGED => cache.last_purged = Some(decode(&value)?),
                _ => {}
            }
        }
        // Entries behind the purge mark may still be on disk (deleted lazily): not part of the log.
        let mut backlog = PurgeBacklog::default();
        if let Some(purged) = cache.last_purged {
            backlog.target = purged.index;
            backlog.done = cache
                .entries
                .keys()
                .next()
                .map_or(purged.index, |first| first.saturating_sub(1));
            cache.entries = cache.entries.split_off(&(purged.index + 1));
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("kokoa-log-writer".into())
            .spawn(move || writer_loop(db, rx, backlog))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the log writer: {e}")))?;
        Ok(LogStore {
            cache: Arc::new(RwLock::new(cache)),
            writer: tx,
        })
    }

    /// Index of the last entry in the log (or of the last purged one; 0 for an empty log).
    pub fn last_index(&self) -> u64 {
        let cache = self.cache_read();
        let last = cache.entries.keys().next_back().copied();
        last.or(cache.last_purged.map(|l| l.index)).unwrap_or(0)
    }

    fn cache_read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn cache_write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `writes` and waits until they are durable.
    async fn write_and_wait(&self, writes: Vec<LogWrite>) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Job {
                writes,
                done: Done::Notify(tx),
            })
            .await
            .map_err(|_| write_error(WriterGone))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(write_error(std::io::Error::other(msg))),
            Err(_) => Err(write_error(WriterGone)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the log writer thread has stopped")]
struct WriterGone;

/// Physical deletion of purged entries that is still to do: entries up to `target` are purged
/// logically (the `purged` mark is durable) and deleted from disk a chunk at a time, alongside
/// later commits, so a purge never holds up appends.
#[derive(Debug, Default)]
struct PurgeBacklog {
    /// Everything at or before this index is deleted from disk.
    done: u64,
    /// Everything at or before this index is to be deleted.
    target: u64,
}

impl PurgeBacklog {
    /// Takes the logical purges out of `writes`, and adds the next chunk of deletion.
    fn plan(&mut self, writes: &mut Vec<LogWrite>) -> Option<u64> {
        writes.retain(|w| match w {
            LogWrite::PurgeUpTo { index } => {
                self.target = self.target.max(*index);
                false
            }
            _ => true,
        });
        if self.done >= self.target {
            return None;
        }
        let upto = self.target.min(self.done + PURGE_CHUNK);
        writes.push(LogWrite::PurgeUpTo { index: upto });
        Some(upto)
    }
}

/// Commits queued jobs in groups, in order. Ends when the queue closes.
fn writer_loop(db: LogDb, mut rx: mpsc::Receiver<Job>, mut backlog: PurgeBacklog) {
    let mut failed: Option<String> = None;
    loop {
        let first = if backlog.done < backlog.target && failed.is_none() {
            match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.blocking_recv() {
                Some(job) => Some(job),
                None => break,
            }
        };
        let mut jobs: Vec<Job> = first.into_iter().collect();
        while !jobs.is_empty() && jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let result = match &failed {
            Some(msg) => Err(msg.clone()),
            None => {
                let mut writes: Vec<LogWrite> = jobs
                    .iter_mut()
                    .flat_map(|j| std::mem::take(&mut j.writes))
                    .collect();
                let deleted = backlog.plan(&mut writes);
                let r = db.commit(&writes).map_err(|e| e.to_string());
                if let (Ok(()), Some(upto)) = (&r, deleted) {
                    backlog.done = upto;
                }
                r
            }
        };
        if let Err(msg) = &result {
            if failed.is_none() {
                tracing::error!(error = %msg, "raft log write failed; refusing further writes");
            }
            failed = Some(msg.clone());
        }
        for job in jobs {
            match job.done {
                Done::Flushed(cb) => {
                    cb.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                Done::Notify(tx) => {
                    let _ = tx.send(result.clone());
                }
                Done::Nothing => {}
            }
        }
    }
}

fn range_entries<RB: RangeBounds<u64>>(cache: &Cache, range: RB) -> Vec<Entry> {
    cache.entries.range(range).map(|(_, e)| e.clone()).collect()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(range_entries(&self.cache_read(), range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let cache = self.cache_read();
        let last = cache.entries.values().next_back().map(|e| *e.get_log_id());
        Ok(LogState {
            last_purged_log_id: cache.last_purged,
            last_log_id: last.or(cache.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let value = encode(vote).map_err(write_error)?;
        self.write_and_wait(vec![LogWrite::SetMeta {
            key: META_VOTE,
            value,
        }])
        .await?;
        self.cache_write().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.cache_read().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut writes = Vec::new();
        {
            let mut cache = self.cache_write();
            for entry in entries {
                let index = entry.get_log_id().index;
                let bytes = encode(&entry).map_err(write_error)?;
                writes.push(LogWrite::Put {
                    index,
                    entry: bytes,
                });
                cache.entries.insert(index, entry);
            }
        }
        self.writer
            .send(Job {
                writes,
                done: Done::Flushed(callback),
            })
            .await
            .map_err(|_| write_error(WriterGone))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.cache_write().entries.split_off(&log_id.index);
        self.write_and_wait(vec![LogWrite::TruncateFrom {
            index: log_id.index,
        }])
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut cache = self.cache_write();
            let keep = cache.entries.split_off(&(log_id.index + 1));
            cache.entries = keep;
            cache.last_purged = Some(log_id);
        }
        // The mark is written at once; the entries behind it are deleted in chunks later
        // (see `PurgeBacklog`), and skipped when the log is loaded.
        let value = encode(&log_id).map_err(write_error)?;
        let writes = vec![
            LogWrite::SetMeta {
                key: META_PURGED,
                value,
            },
            LogWrite::PurgeUpTo {
                index: log_id.index,
            },
        ];
        self.writer
            .send(Job {
                writes,
                done: Done::Nothing,
            })
            .await
            .map_err(|_| write_error(WriterGone))
    }
}
