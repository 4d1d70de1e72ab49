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
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("kokoa-log-writer".into())
            .spawn(move || writer_loop(db, rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the log writer: {e}")))?;
        Ok(LogStore {
            cache: Arc::new(RwLock::new(cache)),
            writer: tx,
        })
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

/// Commits queued jobs in groups, in order. Ends when the queue closes.
fn writer_loop(db: LogDb, mut rx: mpsc::Receiver<Job>) {
    let mut failed: Option<String> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let result = match &failed {
            Some(msg) => Err(msg.clone()),
            None => {
                let writes: Vec<LogWrite> = jobs
                    .iter_mut()
                    .flat_map(|j| std::mem::take(&mut j.writes))
                    .collect();
                db.commit(&writes).map_err(|e| e.to_string())
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
        let value = encode(&log_id).map_err(write_error)?;
        self.write_and_wait(vec![
            LogWrite::SetMeta {
                key: META_PURGED,
                value,
            },
            LogWrite::PurgeUpTo {
                index: log_id.index,
            },
        ])
        .await
    }
}
