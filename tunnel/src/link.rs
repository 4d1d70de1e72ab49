//! One WireGuard peer: its noise session (`Tunn`), its own userspace TCP/IP stack, and the
//! datagrams on their way to it. Every peer has a stack of its own, so packets from one peer
//! can only ever reach sockets made for that peer: there is no path between peers at all.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use boringtun::noise::{Tunn, TunnResult};
use parking_lot::{Mutex, MutexGuard};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Packet};

use crate::device::{Outbox, TunnelDevice};
use crate::keys::PublicKey;
use crate::net::{Core, NO_DEADLINE};
use crate::stream::TcpStream;

/// Receive and send buffer of every tunnelled TCP connection (window scaling makes the whole
/// buffer usable as the window).
pub const TCP_BUFFER: usize = 1 << 20;
/// Most TCP sockets (connections and listeners) one peer may hold; more SYNs are refused.
pub const MAX_SOCKETS_PER_PEER: usize = 32;
/// A connection closed by its owner is given this long to finish before it is aborted.
const CLOSE_GRACE_MICROS: u64 = 30_000_000;
/// Unacknowledged data older than this aborts a connection.
const TCP_USER_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(30);
/// Inner packets waiting for the stack; beyond this a peer's packets are dropped (TCP resends).
const RX_QUEUE_LIMIT: usize = 4096;
/// Rounds of poll-then-send while the outbox keeps filling up.
const MAX_POLL_ROUNDS: usize = 16;
/// WireGuard message types (the first byte of a datagram; the rest of the word is zero).
const HANDSHAKE_INITIATION: u8 = 1;
const HANDSHAKE_RESPONSE: u8 = 2;

/// A peer and its stack.
pub(crate) struct Link {
    pub key: PublicKey,
    /// Our receiver index for it (`Tunn`'s indexes are this shifted left by 8).
    pub index: u32,
    pub core: Arc<Core>,
    /// When its stack next wants a poll (micros since the tunnel's epoch).
    pub deadline: std::sync::atomic::AtomicU64,
    state: Mutex<LinkState>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("key", &crate::keys::to_base64(&self.key))
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Everything behind a link's lock.
pub(crate) struct LinkState {
    pub tunn: Tunn,
    /// Where its datagrams go: configured, or learned from its last authenticated packet.
    pub endpoint: Option<SocketAddr>,
    /// The only inner source address accepted from it.
    pub allowed_ip: Ipv4Addr,
    pub removed: bool,
    /// The peer started a session we answered, and has yet to send on it: once it does, the
    /// session is ours to send on too, and `Core::peer_handshakes` hears of it.
    peer_session_unconfirmed: bool,
    /// Its datagrams wait for the UDP socket to become writable.
    pub blocked: bool,
    iface: Interface,
    pub sockets: SocketSet<'static>,
    rx: VecDeque<Vec<u8>>,
    outbox: Outbox,
    /// Listening sockets by port.
    listening: Vec<(u16, SocketHandle)>,
    /// Connections their owners closed, and when to give up on them.
    closing: Vec<(SocketHandle, u64)>,
    next_port: u16,
    /// Connections that left the listening state, to hand to their listeners.
    established: Vec<(u16, SocketHandle)>,
}

impl Link {
    pub fn new(
        core: Arc<Core>,
        key: PublicKey,
        index: u32,
        mut tunn: Tunn,
        endpoint: Option<SocketAddr>,
        allowed_ip: Ipv4Addr,
        ports: &[u16],
    ) -> Arc<Link> {
        let mut rx = VecDeque::new();
        let mut outbox = Outbox::default();
        let mut device = TunnelDevice {
            rx: &mut rx,
            tunn: &mut tunn,
            outbox: &mut outbox,
            mtu: core.mtu,
        };
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, core.now());
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(core.address), 32));
        });
        // Everything goes to the peer: there is no other next hop.
        let _ = iface.routes_mut().add_default_ipv4_route(allowed_ip);
        let mut state = LinkState {
            tunn,
            endpoint,
            allowed_ip,
            removed: false,
            peer_session_unconfirmed: false,
            blocked: false,
            iface,
            sockets: SocketSet::new(Vec::new()),
            rx,
            outbox,
            listening: Vec::new(),
            closing: Vec::new(),
            next_port: 49152 + rand::random::<u16>() % 16384,
            established: Vec::new(),
        };
        for &port in ports {
            state.listen(port);
        }
        Arc::new(Link {
            key,
            index,
            core,
            deadline: std::sync::atomic::AtomicU64::new(NO_DEADLINE),
            state: Mutex::new(state),
        })
    }

    /// Runs `f` on the link's state, then lets the stack process what it did (and whatever
    /// arrived), sends what is ready, and hands new connections to their listeners.
    pub fn with<R>(self: &Arc<Self>, f: impl FnOnce(&mut LinkState) -> R) -> R {
        let mut state = self.state.lock();
        let result = f(&mut state);
        self.poll_locked(&mut state);
        let established = std::mem::take(&mut state.established);
        drop(state);
        self.hand_over(established);
        result
    }

    /// The state, without polling afterwards (for reads of status).
    pub fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock()
    }

    fn poll_locked(&self, st: &mut LinkState) {
        if st.removed {
            return;
        }
        let mut now = self.core.now();
        for _ in 0..MAX_POLL_ROUNDS {
            let mut device = TunnelDevice {
                rx: &mut st.rx,
                tunn: &mut st.tunn,
                outbox: &mut st.outbox,
                mtu: self.core.mtu,
            };
            st.iface.poll(now, &mut device, &mut st.sockets);
            st.collect_established();
            st.reap_closed(now.total_micros() as u64);
            let was_full = st.outbox.is_full();
            self.flush(st);
            if !(was_full && st.outbox.queue.is_empty()) && st.rx.is_empty() {
                break;
            }
            now = self.core.now();
        }
        let at = st
            .iface
            .poll_at(now, &st.sockets)
            .map_or(NO_DEADLINE, |t| t.total_micros().max(0) as u64);
        let at = match st.closing.iter().map(|&(_, d)| d).min() {
            Some(d) => at.min(d),
            None => at,
        };
        self.deadline.store(at, Ordering::Relaxed);
        self.core.schedule_at(at);
    }

    /// Sends queued datagrams until the socket would block.
    fn flush(&self, st: &mut LinkState) {
        let Some(endpoint) = st.endpoint else {
            // Nowhere to send yet (the peer has not shown up): drop, TCP resends later.
            while let Some(d) = st.outbox.queue.pop_front() {
                st.outbox.recycle(d);
            }
            return;
        };
        while let Some(datagram) = st.outbox.queue.front() {
            match self.core.socket.try_send_to(datagram, endpoint) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    st.blocked = true;
                    self.core.wait_writable();
                    return;
                }
                Err(e) => {
                    tracing::trace!(error = %e, %endpoint, "sending a datagram failed");
                }
            }
            if let Some(d) = st.outbox.queue.pop_front() {
                st.outbox.recycle(d);
            }
        }
        st.blocked = false;
    }

    fn hand_over(self: &Arc<Self>, established: Vec<(u16, SocketHandle)>) {
        for (port, handle) in established {
            let stream = TcpStream::new(self.clone(), handle);
            let sender = self.core.listeners.lock().get(&port).cloned();
            match sender {
                Some(tx) => {
                    if let Err(e) = tx.try_send((self.key, stream)) {
                        tracing::debug!(port, "listener not accepting: {e}");
                    }
                }
                // Dropping the stream closes the connection.
                None => drop(stream),
            }
        }
    }

    /// Handles one authenticated-or-not datagram from `from` addressed to this peer's session.
    /// `scratch` must hold a whole datagram.
    pub fn receive(
        &self,
        st: &mut LinkState,
        datagram: &[u8],
        from: SocketAddr,
        scratch: &mut [u8],
    ) {
        match st.tunn.decapsulate(Some(from.ip()), datagram, scratch) {
            TunnResult::WriteToNetwork(packet) => {
                // A handshake answer or cookie; queued packets may follow.
                st.endpoint = Some(from);
                if datagram.first() == Some(&HANDSHAKE_INITIATION)
                    && packet.first() == Some(&HANDSHAKE_RESPONSE)
                {
                    tracing::debug!(peer = %crate::keys::to_base64(&self.key), %from, "the peer starts a session");
                    st.peer_session_unconfirmed = true;
                }
                self.core.send_now(packet, from);
                while let TunnResult::WriteToNetwork(packet) =
                    st.tunn.decapsulate(None, &[], scratch)
                {
                    self.core.send_now(packet, from);
                }
            }
            TunnResult::WriteToTunnelV4(packet, source) => {
                let to_us = Ipv4Packet::new_checked(&*packet)
                    .is_ok_and(|p| p.dst_addr() == self.core.address);
                if source != st.allowed_ip || !to_us {
                    self.core.counters.forbidden.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                st.endpoint = Some(from);
                self.peer_session_confirmed(st);
                if st.rx.len() < RX_QUEUE_LIMIT {
                    let mut buf = st.outbox.buffer(packet.len());
                    buf.copy_from_slice(packet);
                    st.rx.push_back(buf);
                } else {
                    self.core.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            TunnResult::WriteToTunnelV6(..) => {
                self.core.counters.forbidden.fetch_add(1, Ordering::Relaxed);
            }
            // A keep-alive (what the peer sends first on a session it started), or nothing.
            TunnResult::Done => self.peer_session_confirmed(st),
            TunnResult::Err(e) => {
                tracing::trace!(error = ?e, %from, "datagram refused");
                self.core.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The peer sent on the session it started: tell `Core::peer_handshakes`' followers
    /// (nobody following is fine).
    fn peer_session_confirmed(&self, st: &mut LinkState) {
        if std::mem::take(&mut st.peer_session_unconfirmed) {
            tracing::debug!(peer = %crate::keys::to_base64(&self.key), "the peer's session is confirmed");
            let _ = self.core.peer_handshakes.send(self.key);
        }
    }

    /// Runs WireGuard's timers (handshake retries, rekeys, keepalives). `scratch` must hold a
    /// handshake initiation.
    pub fn update_timers(&self, scratch: &mut [u8]) {
        let mut st = self.state.lock();
        let endpoint = st.endpoint;
        match st.tunn.update_timers(scratch) {
            TunnResult::WriteToNetwork(packet) => {
                if let Some(to) = endpoint {
                    self.core.send_now(packet, to);
                }
            }
            TunnResult::Err(e) => tracing::trace!(error = ?e, "wireguard timer"),
            _ => {}
        }
    }

    /// Starts a new handshake now (after the peer seems to have lost our session).
    pub fn rehandshake(&self, scratch: &mut [u8]) {
        let mut st = self.state.lock();
        let endpoint = st.endpoint;
        if let TunnResult::WriteToNetwork(packet) =
            st.tunn.format_handshake_initiation(scratch, true)
        {
            if let Some(to) = endpoint {
                self.core.send_now(packet, to);
            }
        }
    }

    /// Opens a connection to `remote` over this peer: the SYN is on its way when this returns.
    pub fn connect(self: &Arc<Self>, remote: SocketAddrV4) -> Result<TcpStream, ConnectError> {
        let handle = self.with(|st| st.connect(remote))?;
        Ok(TcpStream::new(self.clone(), handle))
    }

    /// Stops everything on this link: its connections are aborted and it sends no more.
    pub fn remove(self: &Arc<Self>) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let handles: Vec<SocketHandle> = st.sockets.iter().map(|(h, _)| h).collect();
        for h in handles {
            st.sockets.get_mut::<tcp::Socket>(h).abort();
        }
        let mut device = TunnelDevice {
            rx: &mut st.rx,
            tunn: &mut st.tunn,
            outbox: &mut st.outbox,
            mtu: self.core.mtu,
        };
        // Let the RSTs out, then go quiet.
        let now = self.core.now();
        let _ = device.rx.drain(..);
        st.iface.poll(now, &mut device, &mut st.sockets);
        self.flush(st);
        st.removed = true;
        self.deadline.store(NO_DEADLINE, Ordering::Relaxed);
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("too many connections to this peer")]
    TooMany,
    #[error("the peer was removed")]
    Removed,
    #[error("cannot connect: {0}")]
    Stack(#[from] tcp::ConnectError),
}

impl LinkState {
    fn new_socket(&self) -> tcp::Socket<'static> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
        );
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        socket.set_congestion_control(tcp::CongestionControl::Cubic);
        socket.set_timeout(Some(TCP_USER_TIMEOUT));
        socket
    }

    /// Starts listening on `port` (one listening socket; renewed after each connection).
    pub fn listen(&mut self, port: u16) {
        if self.removed
            || self.listening.iter().any(|&(p, _)| p == port)
            || self.sockets.iter().count() >= MAX_SOCKETS_PER_PEER
        {
            return;
        }
        let mut socket = self.new_socket();
        if socket.listen(port).is_ok() {
            let handle = self.sockets.add(socket);
            self.listening.push((port, handle));
        }
    }

    /// Stops listening on `port`.
    pub fn unlisten(&mut self, port: u16) {
        self.listening.retain(|&(p, handle)| {
            if p == port {
                self.sockets.remove(handle);
            }
            p != port
        });
    }

    fn connect(&mut self, remote: SocketAddrV4) -> Result<SocketHandle, ConnectError> {
        if self.removed {
            return Err(ConnectError::Removed);
        }
        if self.sockets.iter().count() >= MAX_SOCKETS_PER_PEER {
            return Err(ConnectError::TooMany);
        }
        let mut socket = self.new_socket();
        let port = self.next_port;
        self.next_port = if port == u16::MAX { 49152 } else { port + 1 };
        socket.connect(self.iface.context(), (*remote.ip(), remote.port()), port)?;
        Ok(self.sockets.add(socket))
    }

    /// Marks `handle` closed by its owner: FIN now, removed once finished (or aborted after a
    /// grace period).
    pub fn close(&mut self, handle: SocketHandle, now_micros: u64) {
        self.sockets.get_mut::<tcp::Socket>(handle).close();
        self.closing
            .push((handle, now_micros.saturating_add(CLOSE_GRACE_MICROS)));
    }

    fn collect_established(&mut self) {
        let mut renew = Vec::new();
        self.listening.retain(|&(port, handle)| {
            let socket = self.sockets.get::<tcp::Socket>(handle);
            if socket.state() == tcp::State::Listen {
                return true;
            }
            self.established.push((port, handle));
            renew.push(port);
            false
        });
        for port in renew {
            self.listen(port);
        }
    }

    fn reap_closed(&mut self, now_micros: u64) {
        let sockets = &mut self.sockets;
        self.closing.retain(|&(handle, give_up)| {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            let done = matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait);
            if done || now_micros >= give_up {
                socket.abort();
                sockets.remove(handle);
                return false;
            }
            true
        });
    }
}
