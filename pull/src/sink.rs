//! Where pulled configs go: [`ConfigSink`], implemented by each role's live state (the edge's
//! routing tables, the agent's tunnel), and the pull status it keeps.

use kokoa_store::pulled::Pulled;

/// How the config pulls are going (for the edge's `/health`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullStatus {
    /// Unix seconds of the last answer from a replica (a config or "no change"); 0: never.
    pub last_pulled: u64,
    /// The replica that answered last.
    pub control: Option<String>,
    /// The last error, cleared by the next answer.
    pub last_error: Option<String>,
    /// Whether the config being served was loaded from disk and not yet confirmed by a replica.
    pub from_disk: bool,
}

/// What serves a role's config.
///
/// Contract: [`ConfigSink::install`] is called only with a config already saved on disk, and
/// only from one task at a time; it must not block for long (it runs on the async workers).
/// [`ConfigSink::version`] must reflect an install as soon as `install` returns `true`.
pub trait ConfigSink<C>: Send + Sync {
    /// The version being served (0: none).
    fn version(&self) -> u64;

    /// Serves `pulled` from now on if it is newer than what is served; returns whether it was.
    fn install(&self, pulled: &Pulled<C>) -> bool;

    /// Changes the pull status. A sink that reports no status ignores it (the default); the
    /// puller logs errors either way.
    fn update_status(&self, f: impl FnOnce(&mut PullStatus)) {
        let _ = f;
    }
}
