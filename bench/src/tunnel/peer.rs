//! The peer: wireguard-go between two network namespaces, measured with iperf3 TCP, exactly as
//! `shared/peers/wireguard-go.sh` does, but through the `kokoa-tests` namespace harness.
//!
//! Namespaces A and B are linked by a veth (/30 each side, MTU 1500); each runs
//! `wireguard-go -f IFACE` configured with `wg set` (A: 203.0.113.1/24 on UDP 51820, B:
//! 203.0.113.2/24 on UDP 51821, each the other's only peer, no keepalive; MTU 1420, wireguard-go's
//! default). A run is `iperf3 -s -1 -B ADDR -p PORT` in B and `iperf3 -c ADDR -p PORT -t SECS -J
//! [-P N]` in A; the figure is `end.sum_received.bits_per_second`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use kokoa_tests::{Netns, WgKeys, WgPeer, WireguardGo, WireguardGoSpec};
use serde::Serialize;

/// wireguard-go's addresses inside the tunnel (the script's).
pub const A_INNER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const B_INNER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const A_PORT: u16 = 51820;
const B_PORT: u16 = 51821;
/// The iperf3 server's port (inside B only).
const IPERF_PORT: u16 = 15201;
/// How long the iperf3 server may take to listen.
const SERVER_READY: Duration = Duration::from_secs(15);
/// iperf3's own start-up and end-of-test exchange, on top of `-t`.
const IPERF_SLACK: Duration = Duration::from_secs(30);

/// What one iperf3 run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IperfRun {
    pub gbit_s: f64,
    pub retransmits: u64,
    /// iperf3's own CPU figures (% of one core), client and server.
    pub sender_cpu_pct: f64,
    pub receiver_cpu_pct: f64,
}

/// Two namespaces with wireguard-go in each, peered.
#[derive(Debug)]
pub struct WgPair {
    // Field order is drop order: the daemons before their namespaces.
    wg_a: WireguardGo,
    wg_b: WireguardGo,
    a: Netns,
    b: Netns,
}

impl WgPair {
    /// Makes the namespaces and starts and peers both daemons (no traffic yet).
    pub async fn start() -> anyhow::Result<WgPair> {
        let (a, b) = Netns::pair().context("two linked network namespaces")?;
        let (ka, kb) = (WgKeys::generate()?, WgKeys::generate()?);
        let wg_a = WireguardGo::start(
            &a,
            daemon_spec(
                &ka,
                A_PORT,
                A_INNER,
                &kb,
                (b.addr(), B_PORT).into(),
                B_INNER,
            ),
        )
        .await
        .context("wireguard-go in namespace A")?;
        let wg_b = WireguardGo::start(
            &b,
            daemon_spec(
                &kb,
                B_PORT,
                B_INNER,
                &ka,
                (a.addr(), A_PORT).into(),
                A_INNER,
            ),
        )
        .await
        .context("wireguard-go in namespace B")?;
        Ok(WgPair { wg_a, wg_b, a, b })
    }

    /// The wireguard-go daemons' pids.
    pub fn pids(&self) -> Vec<u32> {
        self.wg_a.pid().into_iter().chain(self.wg_b.pid()).collect()
    }

    /// `Err` when a daemon has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for wg in [&mut self.wg_a, &mut self.wg_b] {
            anyhow::ensure!(
                wg.is_running(),
                "wireguard-go {} exited: {}",
                wg.iface(),
                wg.log()
            );
        }
        Ok(())
    }

    /// Whether both sides report a handshake (`wg show latest-handshakes`).
    pub fn handshaken(&self) -> bool {
        self.wg_a.latest_handshake().is_some() && self.wg_b.latest_handshake().is_some()
    }

    /// `MTU veth=… wg=…` as the script logs it.
    pub fn mtus(&self) -> String {
        let mtu = |ns: &Netns, iface: &str| {
            ns.ip(&["-o", "link", "show", iface])
                .ok()
                .and_then(|line| {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let at = words.iter().position(|w| *w == "mtu")?;
                    words.get(at + 1).map(|m| m.to_string())
                })
                .unwrap_or_else(|| "?".into())
        };
        format!(
            "veth={} wg={}",
            mtu(&self.a, &self.a.veth().iface),
            mtu(&self.a, self.wg_a.iface())
        )
    }

    /// The veth address of B (for the plain-veth baseline).
    pub fn b_veth_addr(&self) -> Ipv4Addr {
        self.b.addr()
    }

    /// One iperf3 run from A to `server_addr` in B: `secs` seconds, `streams` parallel streams.
    pub async fn iperf(
        &self,
        server_addr: Ipv4Addr,
        secs: u64,
        streams: u32,
    ) -> anyhow::Result<IperfRun> {
        let addr = server_addr.to_string();
        let port = IPERF_PORT.to_string();
        let server = self
            .b
            .spawn(&["iperf3", "-s", "-1", "-B", &addr, "-p", &port])
            .context("start the iperf3 server")?;
        let outcome = self.iperf_client(server, &addr, &port, secs, streams).await;
        self.b.stop(server);
        outcome
    }

    async fn iperf_client(
        &self,
        server: u32,
        addr: &str,
        port: &str,
        secs: u64,
        streams: u32,
    ) -> anyhow::Result<IperfRun> {
        self.b
            .wait_tcp_listening(IPERF_PORT, SERVER_READY)
            .await
            .with_context(|| format!("iperf3 server: {}", self.b.log_of(server)))?;
        let secs_arg = secs.to_string();
        let streams_arg = streams.to_string();
        let mut args = vec!["iperf3", "-c", addr, "-p", port, "-t", &secs_arg, "-J"];
        if streams > 1 {
            args.extend(["-P", &streams_arg]);
        }
        let mut command = tokio::process::Command::from(self.a.exec(&args));
        command.kill_on_drop(true);
        let limit = Duration::from_secs(secs) + IPERF_SLACK;
        let output = tokio::time::timeout(limit, command.output())
            .await
            .with_context(|| format!("iperf3 -c did not finish within {limit:?}"))?
            .context("run iperf3 -c")?;
        let json = String::from_utf8_lossy(&output.stdout);
        parse_iperf(&json).with_context(|| {
            format!(
                "iperf3 -c exited with {}: {}{}",
                output.status,
                json.chars().take(2000).collect::<String>(),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }
}

/// One daemon's settings: its keys, port and address, and its only peer.
fn daemon_spec(
    keys: &WgKeys,
    port: u16,
    inner: Ipv4Addr,
    peer: &WgKeys,
    peer_endpoint: SocketAddr,
    peer_inner: Ipv4Addr,
) -> WireguardGoSpec {
    WireguardGoSpec {
        keys: keys.clone(),
        listen_port: port,
        address: format!("{inner}/24"),
        mtu: None,
        peers: vec![WgPeer {
            public_key: peer.public.clone(),
            endpoint: Some(peer_endpoint),
            allowed_ips: vec![format!("{peer_inner}/32")],
            persistent_keepalive: None,
        }],
    }
}

/// The figures of `iperf3 -J` output.
pub fn parse_iperf(json: &str) -> anyhow::Result<IperfRun> {
    let value: serde_json::Value = serde_json::from_str(json).context("iperf3 JSON")?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("iperf3: {error}");
    }
    let end = &value["end"];
    let bits = end["sum_received"]["bits_per_second"]
        .as_f64()
        .context("no end.sum_received.bits_per_second")?;
    Ok(IperfRun {
        gbit_s: bits / 1e9,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
        sender_cpu_pct: end["cpu_utilization_percent"]["host_total"]
            .as_f64()
            .unwrap_or(0.0),
        receiver_cpu_pct: end["cpu_utilization_percent"]["remote_total"]
            .as_f64()
            .unwrap_or(0.0),
    })
}

/// iperf3's version line (`iperf 3.12 (cJSON 1.7.15)`).
pub fn iperf_version() -> anyhow::Result<String> {
    let out = std::process::Command::new("iperf3")
        .arg("--version")
        .output()
        .context("run iperf3 --version (install it: apt-get install iperf3, or run bench/tunnel-bench.sh)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("iperf3")
        .trim()
        .to_string())
}

/// wireguard-go's version (`wireguard-go v0.0.20220316`).
pub fn wireguard_go_version() -> String {
    std::process::Command::new("wireguard-go")
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "wireguard-go".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iperf_json() {
        let json = r#"{"start":{},"end":{"sum_sent":{"bits_per_second":5.7e8,"retransmits":12},
            "sum_received":{"bits_per_second":5.6e8},
            "cpu_utilization_percent":{"host_total":40.5,"remote_total":20.25}}}"#;
        let run = parse_iperf(json).expect("parse");
        assert!((run.gbit_s - 0.56).abs() < 1e-9);
        assert_eq!(run.retransmits, 12);
        assert_eq!(run.sender_cpu_pct, 40.5);
        let err = parse_iperf(r#"{"error":"unable to connect to server"}"#).expect_err("error");
        assert!(err.to_string().contains("unable to connect"), "{err}");
    }
}
