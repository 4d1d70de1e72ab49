//! An edge's or an agent's side of the control plane, written once for both roles
//! ([`role::Role`]): its identity in its data dir ([`identity`]: the WireGuard key it made, the
//! registration it got), registering with a bootstrap token, long-polling its config from any
//! replica with backoff ([`Control`]), refusing answers older than what it serves, and saving
//! each newer config ([`saved`]) before handing it to the role ([`ConfigSink`]).
//!
//! It must never serve traffic or know what a config means: that is the role's business.

pub mod backoff;
pub mod control;
pub mod follow;
pub mod identity;
pub mod role;
pub mod saved;
pub mod sink;

pub use backoff::Backoff;
pub use control::{Control, ControlError};
pub use follow::serve_saved;
pub use identity::{IdentityError, Registration, WgKeys};
pub use role::{AgentRole, EdgeRole, RegisterAgent, RegisterEdge, Role};
pub use saved::SavedError;
pub use sink::{ConfigSink, PullStatus};

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod fake;
