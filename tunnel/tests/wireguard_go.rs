//! Interop with wireguard-go, the reference WireGuard implementation (Debian's userspace
//! build; this kernel has no WireGuard module).
//!
//! wireguard-go runs in a network namespace made by the `kokoa-tests` harness (root,
//! `wireguard-go`, `wg`, `ip` and `python3` needed; `scripts/test` installs them), configured
//! with `wg` exactly as `shared/peers/wireguard-go.sh` does. Our [`Tunnel`] runs in this
//! process on the root side of the namespace's veth, with wireguard-go as its peer. Both keys
//! come from `wg genkey`, so `wg`'s key format is checked too.
//!
//! Inside the tunnel: we are 100.96.7.1, the namespace is 100.96.7.2/24. TCP both ways (our
//! stream to a Python server in the namespace, a Python client in the namespace to our
//! listener), each several MiB checked by SHA-256; both sides report the handshake; and a packet
//! from the namespace with a forged inner source (a second address on its WireGuard interface)
//! gets nothing through.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kokoa_tests::{
    pattern_block, require_netns_prerequisites, wait_until, Netns, WgKeys, WgPeer, WireguardGo,
    WireguardGoSpec, PATTERN_BLOCK,
};
use kokoa_tunnel::{keys, PeerConfig, PublicKey, Tunnel, TunnelConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Our address inside the tunnel.
const OURS: Ipv4Addr = Ipv4Addr::new(100, 96, 7, 1);
/// wireguard-go's address inside the tunnel.
const THEIRS: Ipv4Addr = Ipv4Addr::new(100, 96, 7, 2);
/// A second address on wireguard-go's interface that our side must not accept as a source.
const FORGED: Ipv4Addr = Ipv4Addr::new(100, 96, 7, 3);
/// Bytes sent each way.
const PAYLOAD: usize = 6 << 20;
/// Generous bound for anything that should take a second or two.
const DEADLINE: Duration = Duration::from_secs(120);

/// Echoes one connection on `ADDR PORT` back to its sender, then prints what it got and from
/// where: `received N sha256 HEX from IP`.
const ECHO_SERVER: &str = r#"
import hashlib, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
c, peer = s.accept()
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b)
    n += len(b)
    c.sendall(b)
c.shutdown(socket.SHUT_WR)
print(f"received {n} sha256 {h.hexdigest()} from {peer[0]}", flush=True)
"#;

/// Connects to `HOST PORT` (from `SOURCE` unless it is `-`) within `TIMEOUT` s, reads to the
/// end, prints `N HEX`; prints `timeout` / `refused` and exits 3 / 4 when it cannot connect.
const CLIENT: &str = r#"
import hashlib, socket, sys
host, port, source, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
try:
    src = None if source == "-" else (source, 0)
    c = socket.create_connection((host, port), timeout=timeout, source_address=src)
except socket.timeout:
    print("timeout", flush=True); sys.exit(3)
except ConnectionRefusedError:
    print("refused", flush=True); sys.exit(4)
c.settimeout(60)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b)
    n += len(b)
print(f"{n} {h.hexdigest()}", flush=True)
"#;

/// The namespace, wireguard-go in it, and our tunnel peered with it.
struct Setup {
    // Field order is drop order: wireguard-go before its namespace.
    wg: WireguardGo,
    ns: Netns,
    tunnel: Tunnel,
    /// wireguard-go's public key.
    theirs: PublicKey,
}

async fn setup() -> Setup {
    require_netns_prerequisites(&["python3"]);
    let ns = Netns::new().expect("a network namespace");
    let our_keys = WgKeys::generate().expect("wg genkey");
    let secret = keys::parse_secret(&our_keys.private).expect("wg genkey's key parses");
    let listen = SocketAddr::new(IpAddr::V4(ns.peer_addr()), 0);
    let tunnel = Tunnel::bind(TunnelConfig::new(listen, secret, OURS))
        .await
        .expect("bind our tunnel on the root side of the veth");
    assert_eq!(
        keys::to_base64(&tunnel.public_key()),
        our_keys.public,
        "our public key differs from `wg pubkey`'s"
    );
    let wg = WireguardGo::start(
        &ns,
        WireguardGoSpec {
            keys: WgKeys::generate().expect("wg genkey"),
            listen_port: 0,
            address: format!("{THEIRS}/24"),
            mtu: None,
            peers: vec![WgPeer {
                public_key: our_keys.public.clone(),
                endpoint: Some(tunnel.local_addr()),
                allowed_ips: vec![format!("{OURS}/32")],
                persistent_keepalive: None,
            }],
        },
    )
    .await
    .expect("wireguard-go in the namespace");
    let theirs = keys::parse_public(wg.public_key()).expect("wg pubkey's key parses");
    tunnel.set_peers(vec![PeerConfig {
        public_key: theirs,
        endpoint: Some(SocketAddr::new(IpAddr::V4(ns.addr()), wg.listen_port())),
        allowed_ip: THEIRS,
        keepalive: None,
    }]);
    Setup {
        wg,
        ns,
        tunnel,
        theirs,
    }
}

/// `PAYLOAD` bytes of the harness's download pattern.
fn payload() -> Vec<u8> {
    let blocks = PAYLOAD.div_ceil(PATTERN_BLOCK) as u64;
    let mut data: Vec<u8> = (0..blocks).flat_map(pattern_block).collect();
    data.truncate(PAYLOAD);
    data
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs [`CLIENT`] in the namespace against `host:port` (from `source`, if any); its exit code
/// and its output.
async fn namespace_client(
    ns: &Netns,
    host: Ipv4Addr,
    port: u16,
    source: Option<Ipv4Addr>,
    connect_timeout: Duration,
) -> (Option<i32>, String) {
    let source = source.map_or("-".to_string(), |s| s.to_string());
    let mut command = ns.exec(&[
        "python3",
        "-c",
        CLIENT,
        &host.to_string(),
        &port.to_string(),
        &source,
        &connect_timeout.as_secs_f64().to_string(),
    ]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the client thread")
        .expect("run python3 in the namespace");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text.trim().to_string())
}

/// Our side connects to a server in the namespace and sends `PAYLOAD` bytes, which come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_stream_to_a_server_behind_wireguard_go() {
    let s = setup().await;
    let port = 7001;
    let server =
        s.ns.spawn(&[
            "python3",
            "-c",
            ECHO_SERVER,
            &THEIRS.to_string(),
            &port.to_string(),
        ])
        .expect("start the echo server");
    s.ns.wait_tcp_listening(port, DEADLINE)
        .await
        .expect("the echo server listens");

    let stream = tokio::time::timeout(
        DEADLINE,
        s.tunnel.connect(&s.theirs, SocketAddrV4::new(THEIRS, port)),
    )
    .await
    .expect("connect in time")
    .expect("connect through wireguard-go");
    let (mut reader, mut writer) = tokio::io::split(stream);
    let sent = payload();
    let to_send = sent.clone();
    let upload = tokio::spawn(async move {
        writer.write_all(&to_send).await.expect("write");
        writer.shutdown().await.expect("shutdown");
        writer
    });
    let mut back = Vec::with_capacity(PAYLOAD);
    tokio::time::timeout(DEADLINE, reader.read_to_end(&mut back))
        .await
        .expect("the echo in time")
        .expect("read the echo");
    drop(upload.await.expect("the upload task"));

    assert_eq!(back.len(), PAYLOAD, "echo length");
    assert_eq!(sha256_hex(&back), sha256_hex(&sent), "the echo differs");
    let log = wait_until("the echo server's summary", DEADLINE, || async {
        let log = s.ns.log_of(server);
        log.contains("received").then_some(log)
    })
    .await;
    let want = format!(
        "received {PAYLOAD} sha256 {} from {OURS}",
        sha256_hex(&sent)
    );
    assert!(log.contains(&want), "server saw: {log}\nwant: {want}");

    assert!(s.wg.latest_handshake().is_some(), "wg show: no handshake");
    let show = s.wg.show().expect("wg show");
    assert!(show.contains("latest handshake"), "{show}");
    let peers = s.tunnel.peers();
    assert_eq!(peers.len(), 1);
    assert!(peers[0].last_handshake.is_some(), "{peers:?}");
    assert!(peers[0].rx_bytes >= PAYLOAD as u64, "{peers:?}");
    assert!(peers[0].tx_bytes >= PAYLOAD as u64, "{peers:?}");
}

/// A client in the namespace connects to our listener and reads `PAYLOAD` known bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_wireguard_go_reads_from_our_listener() {
    let s = setup().await;
    let port = 8080;
    let mut listener = s.tunnel.listen(port).expect("listen");
    let sent = payload();
    let to_send = sent.clone();
    let server = tokio::spawn(async move {
        let (peer, mut stream) = listener.accept().await.expect("a connection");
        stream.write_all(&to_send).await.expect("write");
        stream.shutdown().await.expect("shutdown");
        // Until the client has read everything and closed its side.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        peer
    });

    let (code, out) = namespace_client(&s.ns, OURS, port, None, Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "client: {out}");
    assert_eq!(out, format!("{PAYLOAD} {}", sha256_hex(&sent)));
    let peer = tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server task in time")
        .expect("the server task");
    assert_eq!(peer, s.theirs, "accepted from another peer");

    let at = wait_until("a handshake in wg show", DEADLINE, || async {
        s.wg.latest_handshake()
    })
    .await;
    assert!(at.elapsed().unwrap_or_default() < DEADLINE, "{at:?}");
    assert!(s.tunnel.peers()[0].last_handshake.is_some());
}

/// A packet with a source wireguard-go's peer may not use (100.96.7.3, not its 100.96.7.2)
/// gets nothing through: the connection attempt times out, and our listener sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_inner_source_gets_nothing_through() {
    let s = setup().await;
    let port = 8081;
    let mut listener = s.tunnel.listen(port).expect("listen");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    let server = tokio::spawn(async move {
        while let Some((_, mut stream)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(b"hello\n").await;
            let _ = stream.shutdown().await;
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        }
    });

    // The control: from its own address the same client gets through (and the session is up).
    let (code, out) = namespace_client(&s.ns, OURS, port, None, Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "control client: {out}");
    assert_eq!(out, format!("6 {}", sha256_hex(b"hello\n")));
    let forbidden_before = s.tunnel.counters().forbidden.load(Ordering::Relaxed);

    s.wg.add_address(&format!("{FORGED}/32"))
        .expect("a second address on wireguard-go's interface");
    let (code, out) =
        namespace_client(&s.ns, OURS, port, Some(FORGED), Duration::from_secs(5)).await;
    assert_eq!(code, Some(3), "the forged connect should time out: {out}");
    assert_eq!(out, "timeout");
    let forbidden = s.tunnel.counters().forbidden.load(Ordering::Relaxed);
    assert!(
        forbidden > forbidden_before,
        "our side should count the forged SYNs as forbidden ({forbidden_before} → {forbidden})"
    );
    let transfer = s.wg.transfer().expect("wg show transfer");
    assert!(
        transfer.iter().any(|(_, _, tx)| *tx > 0),
        "wireguard-go sent the forged packets: {transfer:?}"
    );

    // The client gave up after its timeout: a connection that got through would be accepted
    // by now.
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "only the control connection may be accepted"
    );
    server.abort();
}
