//! Cluster integration tests: one test binary, one file per topic, every test on its own
//! cluster of real `kokoa server` processes started by the `kokoa_tests` harness.
//!
//! Build the binary first: `cargo build -p kokoa && cargo test -p kokoa-tests`.

mod common;

mod bad_input;
mod cli;
mod crash_burst;
mod disk_full;
mod failover;
mod formation;
mod membership;
mod shutdown;
mod snapshot;
mod writes;
