//! Kokoa's built-in authoritative DNS. Every replica answers for the managed zones from its own
//! replicated state, so all replicas give the same answers.
//!
//! - [`snapshot`]: `ZoneSnapshot`, the immutable records of every managed zone at one state
//!   version (SOA serial = version, NS, route hostnames → the IPs of the healthy edges that can
//!   reach the route's tunnel origin, failing open; static records), and the lookup rules over it.
//! - [`handler`]: `SnapshotZone`, the hickory `ZoneHandler` of one zone, reading the snapshot.
//! - [`catalog`]: `DnsService`, the swapped snapshot and hickory `Catalog` (a `RequestHandler`).
//! - [`feed`]: `serve_state`, which answers once the first snapshot is in and republishes it on
//!   every state version.
//! - [`listener`]: `DnsListeners`, UDP (`SO_REUSEPORT`, one socket per core) and TCP sockets.
//!
//! hickory's `Catalog` and `Server` do the protocol work: REFUSED outside the zones, EDNS,
//! truncation over UDP, TCP framing and malformed packets.

pub mod catalog;
pub mod error;
pub mod feed;
pub mod handler;
pub mod listener;
pub mod snapshot;

pub use catalog::DnsService;
pub use error::DnsError;
pub use feed::{read_view, serve_state};
pub use listener::DnsListeners;
pub use snapshot::{Answer, StateView, ZoneSnapshot};
