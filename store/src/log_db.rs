//! `log.redb`: the raft log and the vote, as opaque bytes from the raft layer.
//!
//! Writes are grouped by the caller into one transaction and committed with
//! `Durability::Immediate`: when [`LogDb::commit`] returns `Ok`, everything in the group is on
//! disk (fsynced). All methods block: call them from a dedicated thread.

use std::path::Path;

use redb::{Database, Durability, ReadableTable};

use crate::tables::{LOG, LOG_META};
use crate::StoreError;

/// One change to the log database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogWrite {
    /// Stores the entry at `index`.
    Put { index: u64, entry: Vec<u8> },
    /// Removes every entry at or after `index`.
    TruncateFrom { index: u64 },
    /// Removes every entry at or before `index`.
    PurgeUpTo { index: u64 },
    /// Sets a metadata value (`vote`, `committed`, `purged`).
    SetMeta { key: &'static str, value: Vec<u8> },
}

/// Everything stored in the log database, as read at start-up.
#[derive(Debug, Default)]
pub struct LoadedLog {
    /// `(index, entry)` in index order.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Metadata values by key.
    pub meta: Vec<(String, Vec<u8>)>,
}

/// The log database of one replica.
#[derive(Debug)]
pub struct LogDb {
    db: Database,
}

impl LogDb {
    /// Opens (or creates) the log database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(LOG)?;
        tx.open_table(LOG_META)?;
        tx.commit()?;
        Ok(LogDb { db })
    }

    /// Reads the whole log and its metadata, checking that the log has no hole.
    pub fn load(&self) -> Result<LoadedLog, StoreError> {
        let tx = self.db.begin_read()?;
        let log = tx.open_table(LOG)?;
        let mut entries = Vec::new();
        for row in log.iter()? {
            let (k, v) = row?;
            let index = k.value();
            if let Some((prev, _)) = entries.last() {
                if index != prev + 1 {
                    return Err(StoreError::Corrupt(format!(
                        "hole in the raft log between {prev} and {index}"
                    )));
                }
            }
            entries.push((index, v.value().to_vec()));
        }
        let meta_table = tx.open_table(LOG_META)?;
        let mut meta = Vec::new();
        for row in meta_table.iter()? {
            let (k, v) = row?;
            meta.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(LoadedLog { entries, meta })
    }

    /// Applies `writes` in order in one transaction and returns once it is durable.
    pub fn commit(&self, writes: &[LogWrite]) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate);
        {
            let mut log = tx.open_table(LOG)?;
            let mut meta = tx.open_table(LOG_META)?;
            for w in writes {
                match w {
                    LogWrite::Put { index, entry } => {
                        log.insert(*index, entry.as_slice())?;
                    }
                    LogWrite::TruncateFrom { index } => {
                        log.retain_in(*index.., |_, _| false)?;
                    }
                    LogWrite::PurgeUpTo { index } => {
                        log.retain_in(..=*index, |_, _| false)?;
                    }
                    LogWrite::SetMeta { key, value } => {
                        meta.insert(*key, value.as_slice())?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(index: u64) -> LogWrite {
        LogWrite::Put {
            index,
            entry: vec![index as u8],
        }
    }

    #[test]
    fn commit_load_truncate_purge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        {
            let db = LogDb::open(&path).unwrap();
            db.commit(&(1..=10).map(put).collect::<Vec<_>>()).unwrap();
            db.commit(&[
                LogWrite::TruncateFrom { index: 8 },
                LogWrite::PurgeUpTo { index: 3 },
                LogWrite::SetMeta {
                    key: "vote",
                    value: vec![7],
                },
            ])
            .unwrap();
        }
        let db = LogDb::open(&path).unwrap();
        let loaded = db.load().unwrap();
        let indexes: Vec<u64> = loaded.entries.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![4, 5, 6, 7]);
        assert_eq!(loaded.meta, vec![("vote".to_string(), vec![7])]);
    }
}
