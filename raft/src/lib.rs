//! Replication of Kokoa's state with openraft: the storage adapters over `kokoa-store`, the
//! peer transport, bootstrap and membership, forwarding writes to the leader and linearizable
//! reads.
//!
//! openraft's types stay inside this crate: callers see [`RaftNode`], [`Command`]s in and
//! [`Outcome`]s out. This crate must never serve the public API or know about HTTP routes other
//! than its own peer RPC.

mod batcher;
mod log_store;
mod network;
mod node;
mod peer_server;
mod rpc;
mod state_machine;
mod transport;
mod types;

pub use kokoa_store::{Command, Outcome};
pub use log_store::LogStore;
pub use node::{ClusterStatus, Member, RaftNode, RaftNodeError, RaftOptions, Written};
pub use state_machine::{AppliedPosition, StateMachine};
pub use transport::TransportError;
pub use types::{NodeId, ReplicaNode, TypeConfig};
