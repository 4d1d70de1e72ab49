//! Errors of the DNS listeners.

use std::net::SocketAddr;

/// Why the DNS server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// A UDP or TCP socket could not be set up on the address.
    #[error("cannot listen for DNS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
