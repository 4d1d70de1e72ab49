//! The invariant checkers: pure functions over a run's recorded history, without clocks or I/O,
//! so that planted faults can be fed to them in tests.
//!
//! * [`lost_writes`]: every acknowledged write is on every replica after healing.
//! * [`linearizable`]: the register's reads and writes have a linearization.
//! * [`monotonic_versions`]: no edge or agent applies an older config version than it had.
//! * [`availability`]: a success ratio at or above the required one.
//!
//! Each reports [`Violation`]s; [`RecordedHistory`] bundles a run's history so it can be dumped
//! as JSON and checked again with [`RecordedHistory::check`].

mod availability;
mod lost_writes;
mod recorded;
mod register;
mod register_prepare;
mod register_search;
#[cfg(test)]
mod register_tests;
mod versions;
mod violation;

pub use availability::availability;
pub use lost_writes::lost_writes;
pub use recorded::{AvailabilityTally, CheckReport, RecordedHistory};
pub use register::{linearizable, linearizable_within, LinearizabilityStats, DEFAULT_MAX_STATES};
pub use versions::monotonic_versions;
pub use violation::{describe_ops, Violation, MAX_OPS_SHOWN};
