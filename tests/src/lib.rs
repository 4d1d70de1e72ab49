//! Harness for tests and benchmarks that run real `kokoa` processes.
//!
//! It owns: finding the `kokoa` binary ([`kokoa_bin`]), picking loopback ports ([`free_port`]),
//! running any `kokoa` child process ([`KokoaProcess`]: spawn, ready line, signals, logs),
//! replicas ([`Replica`]), edges ([`Edge`]) and agents ([`Agent`]) on top of it, forming
//! clusters and waiting for them to agree ([`Cluster`]), an admin HTTP client ([`Api`]), a
//! condition waiter ([`wait_until`]), and what edge tests put around an edge: origin apps
//! ([`OriginApp`]), a test CA issuing certificates ([`TestCa`]) and clients that resolve every
//! hostname to an edge ([`edge_client`], [`curl_edge`]). For the tunnel: network namespaces
//! with a veth link ([`Netns`], root only) and wireguard-go in them as the reference WireGuard
//! peer ([`WireguardGo`]).
//!
//! It must never link against Kokoa's own crates: it speaks only the public contract in
//! `docs/interfaces.md` (flags, environment, the `listening api=… peer=…`,
//! `edge listening http=… https=… id=…` and `agent running id=… tunnel_ip=…` log lines, HTTP
//! API v1, the edge's HTTP and HTTPS), so what it tests is what users get. It never sleeps for
//! a fixed time to wait for something: it polls a condition until a generous deadline and fails
//! with what it saw last.
//!
//! When a test panics, every replica, edge and agent prints the tail of its log and the
//! cluster's temporary directory is kept (its path is printed) so the full logs can be read
//! afterwards.

mod agent;
mod api;
mod binary;
mod clients;
mod cluster;
mod edge;
pub mod netns;
mod origin;
mod ports;
mod process;
mod puller;
mod replica;
mod tls;
mod tmpfs;
mod wait;
pub mod wireguard_go;

pub use agent::{Agent, AgentSpec};
pub use api::{error_chain, write_index, Api, ApiResponse};
pub use binary::kokoa_bin;
pub use clients::{curl_edge, edge_client, ClientOptions, CurlOutput};
pub use cluster::{voter_ids, Cluster};
pub use edge::{next_edge_ip, Edge, EdgeSpec};
pub use netns::{missing_prerequisites, require_netns_prerequisites, Netns, NetnsError, VethEnd};
pub use origin::{pattern_block, OriginApp, PatternChecker, SeenRequest, PATTERN_BLOCK};
pub use ports::{free_port, free_ports};
pub use process::{strip_ansi, KokoaProcess, StartError, PROXY_VARS};
pub use puller::PullerSpec;
pub use replica::{Join, Replica, ReplicaSpec};
pub use tls::{
    probe_tls, sha256_hex, tls_connect, tls_connect_any_cert, IssuedCert, TestCa, TlsProbe,
};
pub use tmpfs::Tmpfs;
pub use wait::{try_wait_until_ok, wait_until, wait_until_ok, wait_until_ok_every};
pub use wireguard_go::{WgKeys, WgPeer, WireguardGo, WireguardGoSpec};

use std::time::Duration;

/// How long a replica or an edge may take to log its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a cluster may take to elect a leader, replicate, or converge.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a replica or an edge may take to exit after SIGTERM (the contract says 5 s).
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
