//! Kokoa's tunnel: WireGuard without root, a TUN device or an inbound port on the origin.
//!
//! - [`net::Tunnel`]: every WireGuard peer on one UDP socket (boringtun's `Tunn` for the noise
//!   protocol), a userspace TCP/IP stack (smoltcp) per peer, and TCP streams over it
//!   ([`stream::TcpStream`]). Inner packets are accepted from a peer only with its own address
//!   as source and ours as destination, so nothing is ever forwarded between peers.
//! - [`mux`]: many byte streams over one tunnelled TCP connection (HTTP/2 CONNECT).
//! - [`gateway::Gateway`] (edge side): accepts the agents' connections and opens streams to an
//!   origin's targets through any of its connected agents.
//! - [`connector::Connector`] (agent side): connects to every edge and forwards each stream to
//!   a configured target, never anywhere else.

pub mod connector;
pub mod gateway;
pub mod keys;
pub mod mux;
pub mod net;
pub mod stream;

mod device;
mod link;

pub use keys::{KeyError, PublicKey, StaticSecret};
pub use net::{PeerConfig, PeerStatus, Tunnel, TunnelConfig, TunnelError};
pub use stream::TcpStream;

/// The TCP port agents connect to on an edge's tunnel address, carrying the multiplexed streams.
pub const MUX_PORT: u16 = 4000;

#[cfg(test)]
mod tests;
