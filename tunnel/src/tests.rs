//! Two tunnels on loopback talking to each other: handshakes, TCP both ways, isolation.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::keys::{PublicKey, StaticSecret};
use crate::{PeerConfig, Tunnel, TunnelConfig};

pub(crate) const A_IP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
pub(crate) const B_IP: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 2);

/// Tunnel `a` (the "edge", no endpoint for its peer) and `b` (the "agent", which knows `a`'s
/// address and keeps the tunnel alive).
pub(crate) async fn pair() -> (Tunnel, Tunnel) {
    let (a, b) = bind_pair().await;
    peer_pair(&a, &b, None, a.local_addr());
    (a, b)
}

/// Tunnels `a` (at [`A_IP`]) and `b` (at [`B_IP`]) on loopback with fresh keys, not peered yet.
async fn bind_pair() -> (Tunnel, Tunnel) {
    async fn bind(ip: Ipv4Addr) -> Tunnel {
        let key = StaticSecret::random_from_rng(rand::rngs::OsRng);
        let local = "127.0.0.1:0".parse().expect("addr");
        Tunnel::bind(TunnelConfig::new(local, key, ip))
            .await
            .unwrap_or_else(|e| panic!("bind {ip}: {e}"))
    }
    (bind(A_IP).await, bind(B_IP).await)
}

/// Makes `a` and `b` peers: `a` sends to `b` at `b_from_a` (or where it last heard from it),
/// `b` sends to `a` at `a_from_b` and keeps the tunnel alive.
fn peer_pair(a: &Tunnel, b: &Tunnel, b_from_a: Option<SocketAddr>, a_from_b: SocketAddr) {
    a.set_peers(vec![PeerConfig {
        public_key: b.public_key(),
        endpoint: b_from_a,
        allowed_ip: B_IP,
        keepalive: None,
    }]);
    b.set_peers(vec![PeerConfig {
        public_key: a.public_key(),
        endpoint: Some(a_from_b),
        allowed_ip: A_IP,
        keepalive: Some(25),
    }]);
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn tcp_both_ways_through_a_pair() {
    let (a, b) = pair().await;
    let mut listener = a.listen(7000).expect("listen");
    let server = tokio::spawn(async move {
        let (peer, mut s) = listener.accept().await.expect("accepted");
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("read");
        s.write_all(&pattern(3 << 20, 9)).await.expect("write");
        s.shutdown().await.expect("shutdown");
        (peer, got)
    });
    let mut s = tokio::time::timeout(
        Duration::from_secs(20),
        b.connect(&a.public_key(), SocketAddrV4::new(A_IP, 7000)),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let sent = pattern(5 << 20, 1);
    s.write_all(&sent).await.expect("write");
    s.shutdown().await.expect("shutdown");
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut back))
        .await
        .expect("in time")
        .expect("read");
    let (peer, got) = server.await.expect("server");
    assert_eq!(peer, b.public_key());
    assert!(got == sent, "upload damaged: {} bytes", got.len());
    assert!(back == pattern(3 << 20, 9), "download damaged");
    let status = a.peers();
    assert_eq!(status.len(), 1);
    assert!(status[0].last_handshake.is_some());
    assert_eq!(status[0].endpoint, Some(b.local_addr()));
}

#[tokio::test]
async fn nobody_listening_is_refused_and_unknown_peers_are_errors() {
    let (a, b) = pair().await;
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        b.connect(&a.public_key(), SocketAddrV4::new(A_IP, 7001)),
    )
    .await
    .expect("answer in time");
    assert!(refused.is_err());
    let stranger = PublicKey::from(&StaticSecret::random_from_rng(rand::rngs::OsRng));
    assert!(b
        .connect(&stranger, SocketAddrV4::new(A_IP, 7000))
        .await
        .is_err());
}

/// `cargo test --release -p kokoa-tunnel --lib raw_throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn raw_throughput() {
    let (a, b) = pair().await;
    let mut listener = a.listen(7000).expect("listen");
    let total: usize = 1 << 30;
    let server = tokio::spawn(async move {
        let (_, mut s) = listener.accept().await.expect("accepted");
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0usize;
        loop {
            let got = s.read(&mut buf).await.expect("read");
            if got == 0 {
                break n;
            }
            n += got;
        }
    });
    let mut s = b
        .connect(&a.public_key(), SocketAddrV4::new(A_IP, 7000))
        .await
        .expect("connect");
    let chunk = vec![7u8; 256 << 10];
    let start = std::time::Instant::now();
    let mut sent = 0;
    while sent < total {
        s.write_all(&chunk).await.expect("write");
        sent += chunk.len();
    }
    s.shutdown().await.expect("shutdown");
    let got = server.await.expect("server");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{got} bytes in {secs:.2} s = {:.2} Gbit/s; dropped={:?} {:?}",
        got as f64 * 8.0 / secs / 1e9,
        a.counters(),
        b.counters()
    );
}

#[tokio::test]
async fn gateway_reaches_targets_through_a_connector_and_nothing_else() {
    use crate::connector::{Connector, ConnectorConfig, EdgeTarget};
    use crate::gateway::{AgentSpec, Gateway, GatewayError};
    use crate::mux::{MuxSettings, OpenError};

    let edge_key = StaticSecret::random_from_rng(rand::rngs::OsRng);
    let agent_key = StaticSecret::random_from_rng(rand::rngs::OsRng);
    let local = "127.0.0.1:0".parse().expect("addr");
    let gateway = Gateway::start(
        TunnelConfig::new(local, edge_key.clone(), A_IP),
        MuxSettings::default(),
    )
    .await
    .expect("gateway");
    gateway.set_agents(vec![AgentSpec {
        id: "agent-1".into(),
        origin_id: "o1".into(),
        public_key: PublicKey::from(&agent_key),
        tunnel_ip: B_IP,
    }]);
    let connector = Connector::start(ConnectorConfig {
        private_key: agent_key,
        address: B_IP,
        listen: local,
    })
    .await
    .expect("connector");
    let origin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("origin");
    let target = origin.local_addr().expect("addr").to_string();
    connector.set_targets(vec![target.clone()]);
    connector.set_edges(vec![EdgeTarget {
        id: "edge-1".into(),
        public_key: PublicKey::from(&edge_key),
        endpoint: gateway.tunnel().local_addr(),
        tunnel_ip: A_IP,
    }]);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = origin.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 5];
                if s.read_exact(&mut buf).await.is_ok() {
                    let _ = s.write_all(&buf).await;
                }
            });
        }
    });

    let mut stream = kokoa_tests::wait_until_ok(
        "a stream through the connected agent",
        Duration::from_secs(30),
        || async { gateway.open("o1", &target).await.map_err(|e| e.to_string()) },
    )
    .await;
    stream.write_all(b"hello").await.expect("write");
    let mut back = [0u8; 5];
    stream.read_exact(&mut back).await.expect("read");
    assert_eq!(&back, b"hello");
    assert!(gateway.status()[0].connected);
    assert!(connector.status()[0].connected);

    let refused = gateway.open("o1", "127.0.0.1:22").await.err();
    assert!(
        matches!(refused, Some(GatewayError::Open(OpenError::NotAllowed(_)))),
        "{refused:?}"
    );
    let other = gateway.open("o2", &target).await.err();
    assert!(matches!(other, Some(GatewayError::NoAgent(_))), "{other:?}");
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_replays_forgeries_and_handshake_floods_are_dropped() {
    use boringtun::noise::{Tunn, TunnResult};
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    // a <- relay <- b: the relay records b's datagrams so they can be replayed.
    let (a, b) = bind_pair().await;
    let pa = a.public_key();
    let relay = Arc::new(
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("relay"),
    );
    let recorded: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    {
        let (relay, recorded, a_addr, b_addr) = (
            relay.clone(),
            recorded.clone(),
            a.local_addr(),
            b.local_addr(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = relay.recv_from(&mut buf).await {
                let to = if from == a_addr { b_addr } else { a_addr };
                if from == b_addr {
                    let mut r = recorded.lock().expect("lock");
                    if r.len() < 2000 {
                        r.push(buf[..n].to_vec());
                    }
                }
                let _ = relay.send_to(&buf[..n], to).await;
            }
        });
    }
    let relay_addr = relay.local_addr().expect("addr");
    peer_pair(&a, &b, Some(relay_addr), relay_addr);
    let mut listener = a.listen(7000).expect("listen");
    tokio::spawn(async move {
        while let Some((_, mut s)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    echo_once(&b, &pa).await;

    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = a.local_addr();
    let before = rss_kib();
    let dropped_before = a.counters().dropped.load(Ordering::Relaxed);
    let replays: Vec<Vec<u8>> = recorded.lock().expect("lock").clone();
    assert!(replays.len() > 10, "recorded {} datagrams", replays.len());
    for round in 0..20u32 {
        // Replays of genuine datagrams (the session's counters refuse them).
        for d in &replays {
            let _ = attacker.send_to(d, target).await;
        }
        // Forgeries: genuine headers with flipped ciphertext.
        for d in replays.iter().filter(|d| d.len() > 40) {
            let mut f = d.clone();
            let i = 16 + (round as usize % (f.len() - 16));
            f[i] ^= 0x55;
            let _ = attacker.send_to(&f, target).await;
        }
        // Garbage of every size and type byte.
        for n in 0..500usize {
            let mut g: Vec<u8> = (0..(n * 7 % 1500)).map(|_| rand::random()).collect();
            if let Some(first) = g.first_mut() {
                *first = (n % 6) as u8;
            }
            let _ = attacker.send_to(&g, target).await;
        }
    }
    // The tunnel still works and threw all of that away.
    echo_once(&b, &pa).await;
    let dropped = a.counters().dropped.load(Ordering::Relaxed) - dropped_before;
    assert!(
        dropped > 10_000,
        "only {dropped} datagrams counted as dropped"
    );
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "memory grew by {grown} KiB under garbage"
    );

    // A handshake flood (valid MAC1, unknown keys) gets cookie replies once over the limit.
    let flood = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut replies = 0u32;
    let mut out = vec![0u8; 256];
    for i in 0..400u32 {
        let key = StaticSecret::random_from_rng(rand::rngs::OsRng);
        let mut tunn = Tunn::new(key, pa, None, None, i, None);
        if let TunnResult::WriteToNetwork(p) = tunn.format_handshake_initiation(&mut out, true) {
            let _ = flood.send_to(p, target).await;
        }
    }
    let mut buf = [0u8; 256];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(500), flood.recv_from(&mut buf)).await
    {
        if n == 64 && buf[0] == 3 {
            replies += 1;
        }
    }
    assert!(replies > 0, "no cookie replies to a handshake flood");
    assert!(a.counters().cookie_replies.load(Ordering::Relaxed) >= u64::from(replies));
    echo_once(&b, &pa).await;
}

/// Opens a connection from `b` to `a`'s echo server on port 7000 and checks 100 kB come back.
async fn echo_once(b: &Tunnel, a: &PublicKey) {
    let connect = b.connect(a, SocketAddrV4::new(A_IP, 7000));
    let mut s = tokio::time::timeout(Duration::from_secs(20), connect)
        .await
        .expect("connect in time")
        .expect("connect");
    s.write_all(&[5u8; 100_000]).await.expect("write");
    let mut back = vec![0u8; 100_000];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("echo");
    assert!(back.iter().all(|&x| x == 5));
}
