//! What a run records: acknowledged writes, the register's operations, the config versions
//! edges and agents applied. Times are microseconds since the run started.

use serde::{Deserialize, Serialize};

/// A write the control plane acknowledged (2xx with `X-Kokoa-Index`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// What was written, as found in a replica's state: `route:ID` or `dns:ID`.
    pub what: String,
    /// The raft log index the replica answered with.
    pub index: u64,
    /// When the request was sent.
    #[serde(default)]
    pub sent_us: u64,
    /// When the acknowledgement arrived.
    pub at_us: u64,
}

/// One register operation: the call and what came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterOp {
    pub client: usize,
    pub call: RegisterCall,
    pub result: RegisterResult,
    /// When the request was sent.
    pub start_us: u64,
    /// When its answer (or its failure) arrived.
    pub end_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterCall {
    /// Set the register to this value (every write's value is unique in a run).
    Write(u32),
    Read,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterResult {
    /// The write was acknowledged.
    WriteOk,
    /// The read returned this value.
    ReadOk(u32),
    /// Certainly not applied (refused before it reached the log, e.g. a 4xx).
    Failed,
    /// No answer, or an error after which the write may or may not have been applied.
    Unknown,
}

/// A config version an edge or agent applied, in the order its log shows them (across restarts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionObs {
    /// `edge:NAME` or `agent:NAME`.
    pub who: String,
    pub version: u64,
    /// 1-based line of its log where it was seen.
    pub line: usize,
}
