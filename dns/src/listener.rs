//! The DNS sockets: several UDP sockets sharing one port with `SO_REUSEPORT` (one per core, so
//! the kernel spreads queries over them) and a TCP listener on the same address, served by
//! hickory's `Server` until shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::catalog::DnsService;
use crate::error::DnsError;

/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Outgoing responses buffered per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Tries at finding a port free for both UDP and TCP when the port is 0.
const BIND_ATTEMPTS: usize = 20;
/// Receive buffer asked for each UDP socket (the kernel may cap it).
const UDP_RECV_BUFFER: usize = 1 << 20;
/// Listen backlog of the TCP socket.
const TCP_BACKLOG: i32 = 1024;

/// Bound DNS sockets, not yet served.
#[derive(Debug)]
pub struct DnsListeners {
    udp: Vec<UdpSocket>,
    tcp: TcpListener,
    addr: SocketAddr,
}

impl DnsListeners {
    /// Binds `udp_sockets` (at least one) UDP sockets and a TCP listener on `addr`; port 0 picks
    /// a port free for both. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, udp_sockets: usize) -> Result<Self, DnsError> {
        let bind_err = |source| DnsError::Bind { addr, source };
        let attempts = if addr.port() == 0 { BIND_ATTEMPTS } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            match bind_once(addr, udp_sockets.max(1)) {
                Ok(bound) => return Ok(bound),
                Err(e) => last = Some(e),
            }
        }
        Err(bind_err(last.unwrap_or_else(|| {
            std::io::Error::other("no attempt was made")
        })))
    }

    /// The bound address (UDP and TCP share it).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `service` on these sockets until `shutdown`.
    pub async fn serve(self, service: DnsService, shutdown: CancellationToken) {
        let mut server = Server::new(service);
        for socket in self.udp {
            server.register_socket(socket);
        }
        server.register_listener(self.tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::info!(addr = %self.addr, "DNS server started");
        tokio::select! {
            _ = shutdown.cancelled() => {
                if let Err(error) = server.shutdown_gracefully().await {
                    tracing::warn!(%error, "DNS server stopped with an error");
                }
            }
            result = server.block_until_done() => {
                if let Err(error) = result {
                    tracing::error!(%error, "DNS server stopped");
                }
            }
        }
    }
}

fn bind_once(addr: SocketAddr, udp_sockets: usize) -> std::io::Result<DnsListeners> {
    let first = udp_socket(addr)?;
    let addr = first.local_addr()?;
    let mut udp = vec![first];
    for _ in 1..udp_sockets {
        udp.push(udp_socket(addr)?);
    }
    let tcp = tcp_listener(addr)?;
    Ok(DnsListeners { udp, tcp, addr })
}

fn domain(addr: SocketAddr) -> Domain {
    if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(domain(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    if let Err(error) = socket.set_recv_buffer_size(UDP_RECV_BUFFER) {
        tracing::debug!(%error, "cannot enlarge the DNS UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(domain(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    TcpListener::from_std(socket.into())
}
