//! Random and malformed DNS packets (UDP and TCP, a bounded, seeded set) do not crash the DNS
//! server nor make it grow without bound; it still answers afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use crate::dns::{dns_addr, dns_cluster};
use crate::dns_client::dig;

const UDP_PACKETS: usize = 3000;
const TCP_CONNECTIONS: usize = 60;

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A well-formed query for `example.test` `A`, the base the mutations start from.
fn valid_query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["app", "example", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// One hostile packet: random bytes, a truncated or bit-flipped query, a compression loop,
/// lying section counts, a bad OPT record, or an oversized label.
fn hostile(rng: &mut Rng) -> Vec<u8> {
    let id = rng.next() as u16;
    match rng.below(8) {
        0 => {
            let len = rng.below(600);
            rng.bytes(len)
        }
        1 => {
            let q = valid_query(id);
            let cut = rng.below(q.len());
            q[..cut].to_vec()
        }
        2 => {
            let mut q = valid_query(id);
            for _ in 0..=rng.below(4) {
                let at = rng.below(q.len());
                q[at] ^= 1 << rng.below(8);
            }
            q
        }
        3 => {
            // The question name is a pointer to itself.
            let mut q = id.to_be_bytes().to_vec();
            q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1]);
            q
        }
        4 => {
            // Counts far above what follows.
            let mut q = valid_query(id);
            q[4..12].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
            q
        }
        5 => {
            // An OPT record with an option length past the end.
            let mut q = valid_query(id);
            q[11] = 1;
            q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 8, 0, 10, 0xFF, 0xFF, 1, 2]);
            q
        }
        6 => {
            // A 63+ byte label claim with too little data, and an invalid label type.
            let mut q = id.to_be_bytes().to_vec();
            q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x7F, b'a', 0x80, 0, 1]);
            q
        }
        _ => {
            // A response, an update, an AXFR and an unknown opcode for the zone.
            let mut q = valid_query(id);
            q[2] = [0x81, 0x28, 0x10, 0x78][rng.below(4)];
            if rng.below(2) == 0 {
                let n = q.len();
                q[n - 3] = 252; // AXFR
            }
            q
        }
    }
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

async fn still_answers(server: SocketAddr) {
    for extra in [&[][..], &["+tcp"][..]] {
        let answer = dig(server, "example.test", "SOA", extra)
            .await
            .unwrap_or_else(|e| panic!("after the fuzzing: {e}"));
        assert_eq!(answer.status, "NOERROR", "{}", answer.raw);
        assert!(answer.soa_serial().is_some(), "{}", answer.raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_malformed_packets_do_not_break_the_server() {
    let mut cluster = dns_cluster(1).await;
    let server = dns_addr(&cluster, 0);
    still_answers(server).await;
    let pid = cluster.replica(0).pid().expect("pid");
    let rss_before = rss_kib(pid);
    let mut rng = Rng(0x6b6f_6b6f_6164_6e73);

    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    for n in 0..UDP_PACKETS {
        let packet = hostile(&mut rng);
        udp.send_to(&packet, server).await.expect("send");
        if n % 100 == 0 {
            // Drain whatever came back so the client socket does not fill up.
            let mut buf = [0u8; 4096];
            while let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(1), udp.recv_from(&mut buf)).await
            {
            }
        }
    }

    for _ in 0..TCP_CONNECTIONS {
        let mut stream = TcpStream::connect(server).await.expect("connect TCP");
        let packet = hostile(&mut rng);
        let mut framed = match rng.below(3) {
            // A length prefix longer than what is sent, then the connection closes.
            0 => (packet.len() as u16 + 100).to_be_bytes().to_vec(),
            // A zero length.
            1 => vec![0, 0],
            _ => (packet.len() as u16).to_be_bytes().to_vec(),
        };
        framed.extend_from_slice(&packet);
        let _ = stream.write_all(&framed).await;
        let _ = stream.shutdown().await;
    }

    still_answers(server).await;
    assert!(
        cluster.replica_mut(0).is_running(),
        "the server exited during the fuzzing"
    );
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
}
