//! The current snapshot of a replica, kept as one file beside the databases (not inside redb, so
//! writing a large snapshot never holds redb's write lock while entries are being applied).
//!
//! Written atomically: a temporary file, fsynced, renamed over the old one, and the directory
//! fsynced. The file holds raft's encoded snapshot metadata and the encoded state image.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::StoreError;

/// A snapshot as stored: raft's encoded metadata and the encoded [`crate::StateImage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: Vec<u8>,
    pub data: Vec<u8>,
}

/// The snapshot file of one replica.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    path: PathBuf,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Corrupt(format!("{what} {}: {e}", path.display()))
}

impl SnapshotFile {
    pub fn new(path: PathBuf) -> Self {
        SnapshotFile { path }
    }

    /// Replaces the stored snapshot, durably.
    pub fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let bytes = encode(snapshot)?;
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = fs::File::create(&tmp).map_err(|e| io_error("cannot create", &tmp, e))?;
            f.write_all(&bytes)
                .map_err(|e| io_error("cannot write", &tmp, e))?;
            f.sync_all().map_err(|e| io_error("cannot sync", &tmp, e))?;
        }
        fs::rename(&tmp, &self.path).map_err(|e| io_error("cannot rename to", &self.path, e))?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error("cannot sync", dir, e))?;
        }
        Ok(())
    }

    /// The stored snapshot, if there is one.
    pub fn load(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(decode(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("cannot read", &self.path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path().join("snapshot.bin"));
        assert_eq!(file.load().unwrap(), None);
        let snap = StoredSnapshot {
            meta: vec![1, 2],
            data: vec![3; 1000],
        };
        file.save(&snap).unwrap();
        file.save(&snap).unwrap();
        assert_eq!(file.load().unwrap(), Some(snap));
    }
}
