//! When edges and agents last pulled their config, kept in memory by the replica that served
//! the pull (a pull never costs a raft write) and committed coarsely: [`flush_seen`] proposes one
//! `RecordSeen` with the ids whose time moved by at least [`SEEN_COMMIT_EVERY`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kokoa_raft::Command;

use crate::{ApiContext, ApiError};

/// How far an in-memory last-seen time may run ahead of the committed one.
pub const SEEN_COMMIT_EVERY: Duration = Duration::from_secs(30);
/// Most ids tracked (pulls authenticate first, so this only bounds a misbehaving cluster).
const MAX_TRACKED: usize = 100_000;

/// Last pull times (Unix seconds) by edge or agent id, on this replica.
#[derive(Debug, Default)]
pub struct SeenRegistry {
    inner: Mutex<HashMap<String, u64>>,
}

impl SeenRegistry {
    /// Notes that `id` pulled at `now`.
    pub fn saw(&self, id: &str, now: u64) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = m.get_mut(id) {
            *at = now;
        } else if m.len() < MAX_TRACKED {
            m.insert(id.to_string(), now);
        }
    }

    /// The last time this replica saw `id`.
    pub fn get(&self, id: &str) -> Option<u64> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Commits the last-seen times that moved enough since they were last committed.
pub async fn flush_seen(ctx: &ApiContext) -> Result<usize, ApiError> {
    let committed: HashMap<String, u64> = ctx
        .read_local(|r| r.last_seen())
        .await?
        .into_iter()
        .collect();
    let due: Vec<(String, u64)> = ctx
        .seen
        .snapshot()
        .into_iter()
        .filter(|(id, at)| {
            committed
                .get(id)
                .is_none_or(|c| at.saturating_sub(*c) >= SEEN_COMMIT_EVERY.as_secs())
        })
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let n = due.len();
    ctx.write(Command::RecordSeen { seen: due }).await?;
    Ok(n)
}

/// The later of the committed and the in-memory last-seen time of `id`.
pub fn last_seen(ctx: &ApiContext, committed: &HashMap<String, u64>, id: &str) -> Option<u64> {
    match (committed.get(id).copied(), ctx.seen.get(id)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
