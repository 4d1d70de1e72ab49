//! openraft's type configuration for Kokoa, declared once. Nothing outside this crate names
//! openraft types, so a move to openraft 0.10 stays inside `raft/`.

use std::fmt;
use std::io::Cursor;

use kokoa_store::{Command, Outcome};
use serde::{Deserialize, Serialize};

/// A replica as raft's membership knows it: where its peer RPC and its API listen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaNode {
    /// `HOST:PORT` of `--peer-listen`.
    pub peer_addr: String,
    /// `HOST:PORT` of `--listen` (empty when not known yet, as for static `--peers`).
    pub api_addr: String,
}

impl fmt::Display for ReplicaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} api={}", self.peer_addr, self.api_addr)
    }
}

/// A replica's id, `--id N`.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Kokoa's raft type configuration.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = ReplicaNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, ReplicaNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, ReplicaNode>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;

/// Wraps a storage failure as openraft's write error (which stops the raft node).
pub(crate) fn write_error(e: impl std::error::Error + 'static) -> StorageError {
    openraft::StorageIOError::write(openraft::AnyError::new(&e)).into()
}

/// Wraps a storage failure as openraft's read error (which stops the raft node).
pub(crate) fn read_error(e: impl std::error::Error + 'static) -> StorageError {
    openraft::StorageIOError::read(openraft::AnyError::new(&e)).into()
}
