//! Cluster integration tests: one test binary, one file per topic, every test on its own
//! cluster of real `kokoa server` processes started by the `kokoa_tests` harness.
//!
//! Build the binary first: `cargo build -p kokoa && cargo test -p kokoa-tests`.

mod common;
mod edge_common;
mod fleet;

mod agent;
mod bad_input;
mod cli;
mod crash_burst;
mod disk_full;
mod dns;
mod dns_client;
mod dns_fuzz;
mod dns_settings;
mod edge_hostile;
mod edge_resilience;
mod edge_routing;
mod failover;
mod formation;
mod health;
mod health_api;
mod membership;
mod netns;
mod openapi;
mod pulls;
mod registration;
mod shutdown;
mod snapshot;
mod tunnel;
mod ui;
mod whole_crash;
mod writes;
