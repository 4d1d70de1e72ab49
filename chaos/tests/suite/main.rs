//! The chaos suite's tests: the checkers against planted faults, partitions between real
//! replicas, and the short chaos run.

mod partition;
mod planted;
mod short;

/// Held by the tests that start real processes, so that they run one at a time: the short
/// run's availability figures must not depend on what else the 2 cores are doing.
pub static ONE_DEPLOYMENT_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
