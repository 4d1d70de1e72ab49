//! [`Tunnel`]: one UDP socket carrying WireGuard to every peer, and TCP over it.
//!
//! Incoming datagrams are dispatched as boringtun's own device does: handshake initiations by
//! the initiator's static key (decrypted without knowing the peer first), everything else by
//! our receiver index. A shared rate limiter answers handshake floods with cookie replies.
//! Two background tasks run per tunnel: the receiver, and the scheduler that drives
//! WireGuard's timers every 250 ms and polls each stack when smoltcp asks (`poll_at`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use parking_lot::{Mutex, RwLock};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinHandle;

use crate::keys::{PublicKey, StaticSecret};
use crate::link::{ConnectError, Link};
use crate::stream::TcpStream;

/// Inner MTU: a 1500-byte path minus IPv4/UDP and WireGuard's overhead.
pub const DEFAULT_MTU: usize = 1420;
/// How often WireGuard's timers run (boringtun's own device uses the same tick).
const TIMER_TICK: Duration = Duration::from_millis(250);
/// Handshake initiations per second before the rate limiter asks for cookies.
pub const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// Datagrams read in one go before the stacks are polled.
const RECV_BATCH: usize = 128;
/// Accepted connections waiting for `Listener::accept`.
const ACCEPT_BACKLOG: usize = 64;
/// UDP socket buffers asked of the kernel (it caps them at net.core.{r,w}mem_max).
const SOCKET_BUFFER: usize = 8 << 20;
/// Peer-started handshakes kept for slow followers of [`Tunnel::peer_handshakes`].
const PEER_HANDSHAKE_BACKLOG: usize = 64;
/// A deadline meaning "never".
pub(crate) const NO_DEADLINE: u64 = u64::MAX;

/// How to run a tunnel.
#[derive(Clone)]
pub struct TunnelConfig {
    /// The UDP address to bind (port 0: any).
    pub listen: SocketAddr,
    pub private_key: StaticSecret,
    /// Our address inside the tunnel.
    pub address: Ipv4Addr,
    /// Inner MTU.
    pub mtu: usize,
}

impl TunnelConfig {
    pub fn new(listen: SocketAddr, private_key: StaticSecret, address: Ipv4Addr) -> Self {
        TunnelConfig {
            listen,
            private_key,
            address,
            mtu: DEFAULT_MTU,
        }
    }
}

impl std::fmt::Debug for TunnelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelConfig")
            .field("listen", &self.listen)
            .field("address", &self.address)
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

/// A peer as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: PublicKey,
    /// Where to send before it has written to us (it may roam afterwards).
    pub endpoint: Option<SocketAddr>,
    /// The only inner source address accepted from it (its AllowedIPs, a /32).
    pub allowed_ip: Ipv4Addr,
    /// Persistent keepalive, in seconds.
    pub keepalive: Option<u16>,
}

/// A peer as it is now.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub public_key: PublicKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ip: Ipv4Addr,
    /// Time since the last completed handshake.
    pub last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Why the tunnel failed.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("cannot bind the WireGuard UDP socket {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("unknown peer {0}")]
    UnknownPeer(String),
    #[error("port {0} is already listened on")]
    PortInUse(u16),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("connecting timed out")]
    Timeout,
    #[error("connection refused")]
    Refused,
}

/// Counters of what the tunnel threw away.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams that failed to parse, authenticate or decrypt (garbage, replays, forgeries).
    pub dropped: AtomicU64,
    /// Inner packets with a source or destination the peer may not use.
    pub forbidden: AtomicU64,
    /// Cookie replies sent while under handshake load.
    pub cookie_replies: AtomicU64,
}

/// What links and streams share: the socket, our address, the scheduler's doorbell.
pub(crate) struct Core {
    pub socket: UdpSocket,
    pub address: Ipv4Addr,
    pub mtu: usize,
    epoch: std::time::Instant,
    schedule: Notify,
    next_deadline: AtomicU64,
    writable_wanted: AtomicBool,
    pub listeners: Mutex<HashMap<u16, mpsc::Sender<(PublicKey, TcpStream)>>>,
    pub counters: Counters,
    /// Each peer that started a new session with us and sent on it.
    pub peer_handshakes: broadcast::Sender<PublicKey>,
}

impl Core {
    /// Now on the stacks' clock (monotonic, from the tunnel's start).
    pub fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    fn now_micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Makes sure the scheduler wakes by `at` (micros).
    pub fn schedule_at(&self, at: u64) {
        if self.next_deadline.fetch_min(at, Ordering::AcqRel) > at {
            self.schedule.notify_one();
        }
    }

    /// A link has datagrams waiting for the socket: the scheduler waits for it to drain.
    pub fn wait_writable(&self) {
        if !self.writable_wanted.swap(true, Ordering::AcqRel) {
            self.schedule.notify_one();
        }
    }

    /// Sends a handshake message or cookie at once (dropped if the socket is full; the
    /// protocol retries, 5 s later).
    ///
    /// The send goes straight to the kernel rather than through tokio's readiness: a socket
    /// bound a moment ago is not yet known writable to tokio, which would refuse the send
    /// (`WouldBlock`) although the kernel has room; a restarted edge's greetings and a
    /// restarted agent's first handshake would then wait for the retry.
    pub fn send_now(&self, datagram: &[u8], to: SocketAddr) {
        let sent = socket2::SockRef::from(&self.socket).send_to(datagram, &to.into());
        if let Err(e) = sent {
            tracing::debug!(error = %e, %to, "handshake datagram not sent");
        }
    }
}

#[derive(Default)]
struct Peers {
    by_key: HashMap<[u8; 32], Arc<Link>>,
    by_index: HashMap<u32, Arc<Link>>,
    configs: HashMap<[u8; 32], PeerConfig>,
}

struct Shared {
    core: Arc<Core>,
    secret: StaticSecret,
    public: PublicKey,
    rate_limiter: Arc<RateLimiter>,
    peers: RwLock<Peers>,
    next_index: AtomicU32,
}

/// WireGuard peers on one UDP socket, each with a userspace TCP/IP stack. Dropping it stops
/// its tasks.
pub struct Tunnel {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("local_addr", &self.local_addr)
            .field("address", &self.shared.core.address)
            .field("public_key", &crate::keys::to_base64(&self.shared.public))
            .finish_non_exhaustive()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let links = self.shared.links();
        for link in links {
            link.remove();
        }
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel caps these at its maximums.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

impl Tunnel {
    /// Binds the UDP socket and starts the tunnel's tasks on the current tokio runtime.
    pub async fn bind(config: TunnelConfig) -> Result<Tunnel, TunnelError> {
        let socket = bind_udp(config.listen).map_err(|source| TunnelError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = socket.local_addr().map_err(|source| TunnelError::Bind {
            addr: config.listen,
            source,
        })?;
        let public = PublicKey::from(&config.private_key);
        let core = Arc::new(Core {
            socket,
            address: config.address,
            mtu: config.mtu,
            epoch: std::time::Instant::now(),
            schedule: Notify::new(),
            next_deadline: AtomicU64::new(NO_DEADLINE),
            writable_wanted: AtomicBool::new(false),
            listeners: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            peer_handshakes: broadcast::channel(PEER_HANDSHAKE_BACKLOG).0,
        });
        let shared = Arc::new(Shared {
            core,
            rate_limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            secret: config.private_key,
            public,
            peers: RwLock::new(Peers::default()),
            next_index: AtomicU32::new(rand::random::<u32>() & 0x00ff_ffff),
        });
        let tasks = vec![
            tokio::spawn(receive_loop(shared.clone())),
            tokio::spawn(schedule_loop(shared.clone())),
        ];
        Ok(Tunnel {
            shared,
            local_addr,
            tasks,
        })
    }

    /// The UDP address it is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Our public key.
    pub fn public_key(&self) -> PublicKey {
        self.shared.public
    }

    /// Our address inside the tunnel.
    pub fn address(&self) -> Ipv4Addr {
        self.shared.core.address
    }

    /// What was thrown away so far.
    pub fn counters(&self) -> &Counters {
        &self.shared.core.counters
    }

    /// Makes the peers exactly `peers`: new ones are added, removed ones dropped (their
    /// connections aborted), changed ones replaced. An endpoint change alone keeps the session.
    pub fn set_peers(&self, peers: Vec<PeerConfig>) {
        let ports: Vec<u16> = self.shared.core.listeners.lock().keys().copied().collect();
        let mut removed = Vec::new();
        {
            let mut table = self.shared.peers.write();
            let wanted: HashMap<[u8; 32], PeerConfig> = peers
                .into_iter()
                .map(|p| (*p.public_key.as_bytes(), p))
                .collect();
            let gone: Vec<[u8; 32]> = table
                .configs
                .iter()
                .filter(|(key, old)| {
                    wanted.get(*key).is_none_or(|new| {
                        new.allowed_ip != old.allowed_ip || new.keepalive != old.keepalive
                    })
                })
                .map(|(key, _)| *key)
                .collect();
            for key in gone {
                table.configs.remove(&key);
                if let Some(link) = table.by_key.remove(&key) {
                    table.by_index.remove(&link.index);
                    removed.push(link);
                }
            }
            for (key, config) in wanted {
                if let Some(old) = table.configs.get_mut(&key) {
                    if old.endpoint != config.endpoint {
                        old.endpoint = config.endpoint;
                        if let (Some(link), Some(endpoint)) =
                            (table.by_key.get(&key), config.endpoint)
                        {
                            link.lock().endpoint = Some(endpoint);
                        }
                    }
                    continue;
                }
                let link = self.new_link(&config, &ports, &table);
                table.by_index.insert(link.index, link.clone());
                table.by_key.insert(key, link);
                table.configs.insert(key, config);
            }
        }
        for link in removed {
            link.remove();
        }
    }

    fn new_link(&self, config: &PeerConfig, ports: &[u16], table: &Peers) -> Arc<Link> {
        let index = loop {
            let i = self.shared.next_index.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
            if !table.by_index.contains_key(&i) {
                break i;
            }
        };
        let tunn = Tunn::new(
            self.shared.secret.clone(),
            config.public_key,
            None,
            config.keepalive,
            index,
            Some(self.shared.rate_limiter.clone()),
        );
        Link::new(
            self.shared.core.clone(),
            config.public_key,
            index,
            tunn,
            config.endpoint,
            config.allowed_ip,
            ports,
        )
    }

    fn link(&self, key: &PublicKey) -> Result<Arc<Link>, TunnelError> {
        self.shared
            .peers
            .read()
            .by_key
            .get(key.as_bytes())
            .cloned()
            .ok_or_else(|| TunnelError::UnknownPeer(crate::keys::to_base64(key)))
    }

    /// Opens a TCP connection to `remote` through `peer` and waits until it is established.
    /// Bound it with a timeout: an unanswered SYN is retried for a long time.
    pub async fn connect(
        &self,
        peer: &PublicKey,
        remote: SocketAddrV4,
    ) -> Result<TcpStream, TunnelError> {
        let stream = self.link(peer)?.connect(remote)?;
        if stream.established().await {
            Ok(stream)
        } else {
            Err(TunnelError::Refused)
        }
    }

    /// Starts a new handshake with `peer` now (when it seems to have lost our session, e.g. it
    /// restarted).
    pub fn rehandshake(&self, peer: &PublicKey) {
        if let Ok(link) = self.link(peer) {
            let mut scratch = [0u8; 256];
            link.rehandshake(&mut scratch);
        }
    }

    /// Points `peer` at `endpoint` and starts a handshake, unless something was heard from it
    /// already: after a restart, peers that reached us before learn at once that their session
    /// is gone, rather than when their own timers give up on it.
    pub fn greet(&self, peer: &PublicKey, endpoint: SocketAddr) {
        let Ok(link) = self.link(peer) else { return };
        {
            let mut st = link.lock();
            if let Some(heard) = st.endpoint {
                tracing::debug!(peer = %crate::keys::to_base64(peer), %heard, "not greeted: heard from already");
                return;
            }
            st.endpoint = Some(endpoint);
        }
        tracing::debug!(peer = %crate::keys::to_base64(peer), %endpoint, "greeting");
        let mut scratch = [0u8; 256];
        link.rehandshake(&mut scratch);
    }

    /// Follows the peers that start a new session with us (a restart, or their regular
    /// rekey), each named by its key once it has sent on the session (so that we can send on
    /// it too). Lagging behind loses the oldest names.
    pub fn peer_handshakes(&self) -> broadcast::Receiver<PublicKey> {
        self.shared.core.peer_handshakes.subscribe()
    }

    /// Accepts TCP connections from any peer to our address on `port`.
    pub fn listen(&self, port: u16) -> Result<Listener, TunnelError> {
        let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
        {
            let mut listeners = self.shared.core.listeners.lock();
            if listeners.contains_key(&port) {
                return Err(TunnelError::PortInUse(port));
            }
            listeners.insert(port, tx);
        }
        let links = self.shared.links();
        for link in links {
            link.with(|st| st.listen(port));
        }
        Ok(Listener {
            port,
            shared: Arc::downgrade(&self.shared),
            rx,
        })
    }

    /// Every peer's state.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.shared
            .links()
            .iter()
            .map(|link| {
                let st = link.lock();
                let (last_handshake, tx, rx, _, _) = st.tunn.stats();
                PeerStatus {
                    public_key: link.key,
                    endpoint: st.endpoint,
                    allowed_ip: st.allowed_ip,
                    last_handshake,
                    rx_bytes: rx as u64,
                    tx_bytes: tx as u64,
                }
            })
            .collect()
    }
}

/// Incoming connections on one port. Dropping it stops listening.
pub struct Listener {
    port: u16,
    shared: std::sync::Weak<Shared>,
    rx: mpsc::Receiver<(PublicKey, TcpStream)>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("port", &self.port)
            .finish()
    }
}

impl Listener {
    /// The next connection, and the peer it came from; `None` once the tunnel is gone.
    pub async fn accept(&mut self) -> Option<(PublicKey, TcpStream)> {
        self.rx.recv().await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        shared.core.listeners.lock().remove(&self.port);
        let links = shared.links();
        for link in links {
            link.with(|st| st.unlisten(self.port));
        }
    }
}

impl Shared {
    /// The link a datagram belongs to, after the rate limiter and handshake checks; cookie
    /// replies are sent from here.
    fn dispatch(&self, datagram: &[u8], from: SocketAddr, scratch: &mut [u8]) -> Option<Arc<Link>> {
        let counters = &self.core.counters;
        let packet = match self
            .rate_limiter
            .verify_packet(Some(from.ip()), datagram, scratch)
        {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                counters.cookie_replies.fetch_add(1, Ordering::Relaxed);
                self.core.send_now(cookie, from);
                return None;
            }
            Err(_) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let peers = self.peers.read();
        let link = match packet {
            Packet::HandshakeInit(init) => parse_handshake_anon(&self.secret, &self.public, &init)
                .ok()
                .and_then(|half| peers.by_key.get(&half.peer_static_public)),
            Packet::HandshakeResponse(p) => peers.by_index.get(&(p.receiver_idx >> 8)),
            Packet::PacketCookieReply(p) => peers.by_index.get(&(p.receiver_idx >> 8)),
            Packet::PacketData(p) => peers.by_index.get(&(p.receiver_idx >> 8)),
        };
        if link.is_none() {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        link.cloned()
    }

    fn links(&self) -> Vec<Arc<Link>> {
        self.peers.read().by_key.values().cloned().collect()
    }
}

/// Reads datagrams, hands each to its peer, and polls the peers that got some.
async fn receive_loop(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65536];
    let mut scratch = vec![0u8; 65536];
    let mut touched: Vec<Arc<Link>> = Vec::new();
    loop {
        if let Err(e) = shared.core.socket.readable().await {
            tracing::error!(error = %e, "the WireGuard socket failed");
            return;
        }
        for _ in 0..RECV_BATCH {
            let (n, from) = match shared.core.socket.try_recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::trace!(error = %e, "receiving a datagram failed");
                    continue;
                }
            };
            let from = normalize(from);
            let Some(link) = shared.dispatch(&buf[..n], from, &mut scratch) else {
                continue;
            };
            {
                let mut st = link.lock();
                link.receive(&mut st, &buf[..n], from, &mut scratch);
            }
            if !touched.iter().any(|l| Arc::ptr_eq(l, &link)) {
                touched.push(link);
            }
        }
        for link in touched.drain(..) {
            link.with(|_| ());
        }
    }
}

/// IPv4-mapped IPv6 sources as plain IPv4 (a dual-stack socket reports them so).
fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// Drives WireGuard's timers, the stacks' own deadlines, and sends that waited for room.
async fn schedule_loop(shared: Arc<Shared>) {
    let core = shared.core.clone();
    let mut scratch = vec![0u8; 256];
    let mut next_tick = tokio::time::Instant::now() + TIMER_TICK;
    let mut ticks: u32 = 0;
    loop {
        let deadline = core.next_deadline.load(Ordering::Acquire);
        let now_micros = core.now_micros();
        let stack_due = if deadline == NO_DEADLINE {
            next_tick
        } else {
            let wait = Duration::from_micros(deadline.saturating_sub(now_micros));
            next_tick.min(tokio::time::Instant::now() + wait)
        };
        let want_writable = core.writable_wanted.load(Ordering::Acquire);
        tokio::select! {
            _ = tokio::time::sleep_until(stack_due) => {}
            _ = core.schedule.notified() => {}
            r = core.socket.writable(), if want_writable => {
                if r.is_ok() {
                    core.writable_wanted.store(false, Ordering::Release);
                }
            }
        }
        let links = shared.links();
        if tokio::time::Instant::now() >= next_tick {
            next_tick += TIMER_TICK;
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(4) {
                shared.rate_limiter.reset_count();
            }
            for link in &links {
                link.update_timers(&mut scratch);
            }
        }
        // Recompute the earliest deadline from scratch while polling what is due.
        core.next_deadline.store(NO_DEADLINE, Ordering::Release);
        let now_micros = core.now_micros();
        let writable = !core.writable_wanted.load(Ordering::Acquire);
        for link in &links {
            let due = link.deadline.load(Ordering::Acquire) <= now_micros;
            let blocked = writable && link.lock().blocked;
            if due || blocked {
                link.with(|_| ());
            } else {
                core.next_deadline
                    .fetch_min(link.deadline.load(Ordering::Acquire), Ordering::AcqRel);
            }
        }
        if tokio::time::Instant::now() > next_tick + TIMER_TICK {
            // Fell behind (a stalled runtime): do not replay missed ticks.
            next_tick = tokio::time::Instant::now() + TIMER_TICK;
        }
    }
}
