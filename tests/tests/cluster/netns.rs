//! The network-namespace harness itself (root, wireguard-go and wg needed; scripts/test
//! installs them): a namespace reachable over its veth and gone after drop, and two
//! wireguard-go peers in a namespace pair that shake hands and carry HTTP.

use std::path::Path;
use std::time::{Duration, SystemTime};

use kokoa_tests::{
    free_port, require_netns_prerequisites, wait_until, Netns, WgKeys, WgPeer, WireguardGo,
    WireguardGoSpec,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// `python3 -m http.server` in `ns` on `addr:port`, serving `dir`; waits until it listens.
async fn http_server(ns: &Netns, addr: &str, port: u16, dir: &Path) {
    let dir = dir.display().to_string();
    ns.spawn(&[
        "python3",
        "-m",
        "http.server",
        "--bind",
        addr,
        "--directory",
        &dir,
        &port.to_string(),
    ])
    .expect("spawn python3 -m http.server");
    ns.wait_tcp_listening(port, DEADLINE)
        .await
        .expect("the HTTP server listens");
}

#[tokio::test]
async fn a_namespace_is_reachable_over_its_veth_and_gone_after_drop() {
    require_netns_prerequisites(&["python3"]);
    let ns = Netns::new().expect("a namespace");
    let name = ns.name().to_string();
    assert!(name.len() <= 12, "{name}");
    std::fs::write(ns.dir().join("hello.txt"), "hello from the namespace\n").expect("write");
    let port = free_port();
    http_server(&ns, &ns.addr().to_string(), port, ns.dir()).await;

    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let url = format!("http://{}:{port}/hello.txt", ns.addr());
    let body = http
        .get(&url)
        .timeout(DEADLINE)
        .send()
        .await
        .expect("GET over the veth")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "hello from the namespace\n");
    let addrs = ns.run(&["ip", "-4", "-o", "addr"]).expect("ip addr");
    assert!(addrs.contains(&ns.addr().to_string()), "{addrs}");

    let pids = ns.pids();
    assert!(!pids.is_empty(), "the server runs in the namespace");
    drop(ns);
    let ip = kokoa_tests::netns::tool("ip").expect("ip");
    let list = std::process::Command::new(ip)
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list.split_whitespace().any(|n| n == name),
        "{name} still exists: {list}"
    );
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived"
        );
    }
}

#[tokio::test]
async fn two_wireguard_go_peers_shake_hands_and_carry_http() {
    require_netns_prerequisites(&["python3", "curl"]);
    let (a, b) = Netns::pair().expect("a namespace pair");
    let (ka, kb) = (
        WgKeys::generate().expect("keys"),
        WgKeys::generate().expect("keys"),
    );
    assert_eq!(ka.public.len(), 44);
    let (port_a, port_b) = (51820, 51821);
    let mut wg_a = WireguardGo::start(
        &a,
        WireguardGoSpec {
            keys: ka.clone(),
            listen_port: port_a,
            address: "100.71.0.1/24".into(),
            mtu: None,
            peers: vec![WgPeer {
                public_key: kb.public.clone(),
                endpoint: Some((b.addr(), port_b).into()),
                allowed_ips: vec!["100.71.0.2/32".into()],
                persistent_keepalive: None,
            }],
        },
    )
    .await
    .expect("wireguard-go in a");
    let wg_b = WireguardGo::start(
        &b,
        WireguardGoSpec {
            keys: kb.clone(),
            listen_port: 0,
            address: "100.71.0.2/24".into(),
            mtu: None,
            peers: vec![WgPeer {
                public_key: ka.public.clone(),
                endpoint: Some((a.addr(), port_a).into()),
                allowed_ips: vec!["100.71.0.1/32".into()],
                persistent_keepalive: None,
            }],
        },
    )
    .await
    .expect("wireguard-go in b");
    // b asked for any port; a was told 51821: tell a the real one.
    assert_ne!(wg_b.listen_port(), 0);
    wg_a.set_peer(&WgPeer {
        public_key: kb.public.clone(),
        endpoint: Some((b.addr(), wg_b.listen_port()).into()),
        allowed_ips: vec!["100.71.0.2/32".into()],
        persistent_keepalive: None,
    })
    .expect("wg set peer");
    assert_eq!(wg_a.latest_handshake(), None);

    std::fs::write(b.dir().join("x.txt"), "through wireguard-go\n").expect("write");
    let port = free_port();
    http_server(&b, "100.71.0.2", port, b.dir()).await;
    let url = format!("http://100.71.0.2:{port}/x.txt");
    let body = a
        .run(&["curl", "-sS", "--max-time", "20", &url])
        .expect("curl through the tunnel");
    assert_eq!(body, "through wireguard-go\n");

    let before = SystemTime::now() - Duration::from_secs(60);
    let at = wait_until("a handshake in wg show", DEADLINE, || async {
        wg_b.latest_handshake()
    })
    .await;
    assert!(at > before, "{at:?}");
    assert!(wg_a.latest_handshake().is_some());
    let transfer = wg_a.transfer().expect("wg show transfer");
    assert!(transfer
        .iter()
        .any(|(key, rx, tx)| *key == kb.public && *rx > 0 && *tx > 0));
    assert!(wg_a.show().expect("wg show").contains(&kb.public));

    let socket = format!("/var/run/wireguard/{}.sock", wg_a.iface());
    assert!(Path::new(&socket).exists());
    wg_a.stop();
    assert!(!wg_a.is_running());
    assert!(!Path::new(&socket).exists(), "{socket} left behind");
}
