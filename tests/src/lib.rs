//! Harness for tests and benchmarks that run real `kokoa` processes.
//!
//! It owns: finding the `kokoa` binary ([`kokoa_bin`]), picking loopback ports ([`free_port`]),
//! starting, signalling and restarting replicas ([`Replica`]), forming clusters and waiting for
//! them to agree ([`Cluster`]), an admin HTTP client ([`Api`]) and a condition waiter
//! ([`wait_until`]).
//!
//! It must never link against Kokoa's own crates: it speaks only the public contract in
//! `docs/interfaces.md` (flags, environment, the `listening api=… peer=…` log line, HTTP API v1),
//! so what it tests is what users get. It never sleeps for a fixed time to wait for something:
//! it polls a condition until a generous deadline and fails with what it saw last.
//!
//! When a test panics, every replica prints the tail of its log and the cluster's temporary
//! directory is kept (its path is printed) so the full logs can be read afterwards.

mod api;
mod binary;
mod cluster;
mod ports;
mod replica;
mod wait;

pub use api::{write_index, Api, ApiResponse};
pub use binary::kokoa_bin;
pub use cluster::{voter_ids, Cluster};
pub use ports::{free_port, free_ports};
pub use replica::{Join, Replica, ReplicaSpec, StartError};
pub use wait::{wait_until, wait_until_ok};

use std::time::Duration;

/// How long a replica may take to log its `listening` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a cluster may take to elect a leader, replicate, or converge.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a replica may take to exit after SIGTERM (the contract says 5 s).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one HTTP request may take (a write may wait through an election).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A random lowercase hex string of `bytes` random bytes (from `/dev/urandom`).
///
/// Used for cluster secrets, admin tokens and unique names; not for anything cryptographic
/// beyond a test's lifetime.
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
