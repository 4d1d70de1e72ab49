//! The two systems under test and what the failover driver needs from a replicated cluster.

use std::fmt;

use serde::Serialize;

/// Which system a figure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Kokoa,
    Etcd,
}

impl System {
    /// The lowercase name used in `RESULT` lines and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            System::Kokoa => "kokoa",
            System::Etcd => "etcd",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cluster of real server processes with a leader, as the load and failover drivers see it.
///
/// Members are numbered `0..size()`; the numbering never changes across kills and restarts.
/// Waiting methods poll until a generous deadline and fail (or panic, through the harness)
/// naming what they saw last; they never sleep for a guessed time.
pub(crate) trait Replicated {
    /// Which system this is.
    fn system(&self) -> System;

    /// Number of members.
    fn size(&self) -> usize;

    /// `http://IP:PORT` of member `i`'s client API.
    fn api_url(&self, i: usize) -> String;

    /// A short human name of member `i` for logs (e.g. `replica 2 (127.0.0.1:4000)`).
    fn describe(&self, i: usize) -> String;

    /// Waits until every member runs, all agree on one leader and all are voters; returns it.
    async fn leader(&self) -> anyhow::Result<usize>;

    /// SIGKILL member `i` and reap it. Returns at once.
    fn kill9(&mut self, i: usize);

    /// Restarts killed member `i` from its data dir with its old command line, then waits until
    /// the cluster has all members as voters, agrees on a leader, and `i` has caught up with it.
    async fn recover(&mut self, i: usize) -> anyhow::Result<()>;

    /// Prints the tail of every member's log on stderr.
    fn dump_logs(&self);
}
