//! kokoa-chaos: the chaos and failover suite. It starts a whole deployment as real processes
//! (3 replicas, edges, agents, origin apps), drives a steady workload, injects faults from a
//! seeded schedule and checks invariants from the recorded history: no acknowledged write lost,
//! a linearizable register, config versions never going backwards, the data plane serving.
//!
//! It never touches anything but the processes, loopback addresses, tmpfs mounts and nftables
//! table it made.

pub mod check;
pub mod deployment;
pub mod dns;
pub mod faults;
pub mod history;
pub mod partition;
pub mod report;
pub mod run;
pub mod schedule;
pub mod targets;
pub mod workload;
