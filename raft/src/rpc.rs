//! Messages a replica sends to the leader on behalf of its clients.

use kokoa_store::{Command, Outcome};
use serde::{Deserialize, Serialize};

use crate::types::{NodeId, ReplicaNode};

/// Work only the leader can do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ForwardRequest {
    /// Propose a command; answer once it is committed and applied.
    Write(Box<Command>),
    /// Confirm leadership and return the index a linearizable read must wait for.
    ReadIndex,
    /// Add a replica as a learner, wait for it to catch up, then make it a voter.
    AddVoter { id: NodeId, node: ReplicaNode },
    /// Remove a replica from the membership.
    RemoveVoter { id: NodeId },
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ForwardResponse {
    /// The log index of the committed write (or membership change, or read index) and, for
    /// writes, the outcome.
    Done { index: u64, outcome: Outcome },
    /// This replica is not (or no longer) the leader; nothing was done.
    NotLeader,
    /// The leader tried and failed.
    Failed(String),
}
