//! Kokoa's replicated state: the domain model, the commands that change it, the deterministic
//! state machine that applies them, and the redb tables that hold both the raft log and the state.
//!
//! This crate owns *what* the state is and *how* a committed command changes it. It must never do
//! networking, read a clock, draw random numbers or know about openraft's types: everything
//! non-deterministic (ids, timestamps, token hashes) is made by the proposer and carried inside the
//! [`Command`]. redb's API is blocking; callers run it off the async workers.

mod apply;
pub mod codec;
pub mod command;
pub mod error;
pub mod log_db;
pub mod model;
pub mod private_file;
pub mod pulled;
pub mod snapshot_file;
pub mod state_db;
mod tables;
pub mod validate;

pub use command::{Command, Outcome, Rejection};
pub use error::StoreError;
pub use log_db::{LoadedLog, LogDb, LogWrite};
pub use model::{
    Agent, Certificate, DnsRecord, DnsType, DnsZone, EdgeHealth, EdgeNode, Origin, OriginKind,
    RateLimit, ReplicaInfo, Role, Route, Settings, StateImage, Subject, Token,
};
pub use snapshot_file::{SnapshotFile, StoredSnapshot};
pub use state_db::{AppliedMeta, StateDb, StateReader};
pub use validate::ValidationError;
