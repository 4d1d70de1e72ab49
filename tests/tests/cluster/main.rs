//! Cluster integration tests: one test binary, one file per topic, every test on its own
//! cluster of real `kokoa server` processes started by the `kokoa_tests` harness.
//!
//! Build the binary first: `cargo build -p kokoa && cargo test -p kokoa-tests`.

mod common;
mod edge_common;
mod fleet;

mod bad_input;
mod cli;
mod crash_burst;
mod disk_full;
mod dns_settings;
mod edge_hostile;
mod edge_resilience;
mod edge_routing;
mod failover;
mod formation;
mod membership;
mod openapi;
mod pulls;
mod registration;
mod shutdown;
mod snapshot;
mod ui;
mod writes;
