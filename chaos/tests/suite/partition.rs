//! Network partitions with nftables (root, the nftables package): the rules cut loopback
//! addresses apart one way or both, and between real replicas — each on a loopback address of
//! its own — an isolated leader is replaced by the majority, cannot commit alone, and catches
//! up once healed; a one-way cut leaves the majority writable; with every replica cut from
//! every other nothing commits until the heal.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kokoa_chaos::partition::Partitions;
use kokoa_tests::{wait_until_ok, Api, Cluster, CONVERGE_TIMEOUT};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

/// How long a packet that should arrive may take, and how long one that should not is awaited.
const PACKET_WAIT: Duration = Duration::from_secs(1);
/// Client timeout of the write sent to an isolated replica (it must not hang the test).
const ISOLATED_WRITE_TIMEOUT: Duration = Duration::from_secs(8);

/// `n` loopback addresses `127.SECOND.(pid % 250).1..=n`: per process, away from the
/// 127.0.0.x other tests use. Each test here takes its own SECOND (and none takes 77, the chaos
/// deployment's, see `deployment::replica_ip`), so tests running side by side in this binary
/// never cut each other's replicas.
fn addresses(second: u8, n: u8) -> Vec<IpAddr> {
    let third = u8::try_from(std::process::id() % 250).expect("below 250");
    (1..=n)
        .map(|d| IpAddr::V4(Ipv4Addr::new(127, second, third, d)))
        .collect()
}

/// Partitions with their table created, or a panic saying what is missing.
fn partitions() -> Partitions {
    let mut net = Partitions::new();
    net.ensure().unwrap_or_else(|e| panic!("{e}"));
    net
}

/// Whether a datagram from `from` reaches `to` within [`PACKET_WAIT`].
fn udp_arrives(from: IpAddr, to: IpAddr) -> bool {
    let receiver = UdpSocket::bind(SocketAddr::new(to, 0)).expect("bind the receiver");
    receiver
        .set_read_timeout(Some(PACKET_WAIT))
        .expect("read timeout");
    let sender = UdpSocket::bind(SocketAddr::new(from, 0)).expect("bind the sender");
    let target = receiver.local_addr().expect("receiver address");
    sender.send_to(b"ping", target).expect("send");
    let mut buf = [0u8; 16];
    match receiver.recv_from(&mut buf) {
        Ok((len, source)) => {
            assert_eq!(&buf[..len], b"ping");
            assert_eq!(source.ip(), from, "the datagram's source address");
            true
        }
        Err(_) => false,
    }
}

/// Whether a TCP connection opened from `from` to `to` carries a byte each way within
/// [`PACKET_WAIT`].
async fn tcp_works(from: IpAddr, to: IpAddr) -> bool {
    let listener = TcpListener::bind(SocketAddr::new(to, 0))
        .await
        .expect("bind the listener");
    let target = listener.local_addr().expect("listener address");
    let exchange = async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        let mut client = socket.connect(target).await?;
        let (mut server, _) = listener.accept().await?;
        client.write_all(b"q").await?;
        let mut byte = [0u8; 1];
        server.read_exact(&mut byte).await?;
        server.write_all(b"a").await?;
        client.read_exact(&mut byte).await?;
        Ok::<_, std::io::Error>(byte == *b"a")
    };
    matches!(
        tokio::time::timeout(PACKET_WAIT, exchange).await,
        Ok(Ok(true))
    )
}

/// Whether a table of this name exists (`nft list tables`).
fn table_exists(name: &str) -> bool {
    let nft = ["nft", "/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find_map(|nft| {
            std::process::Command::new(nft)
                .args(["list", "tables"])
                .output()
                .ok()
        })
        .expect("run nft list tables");
    String::from_utf8_lossy(&nft.stdout)
        .lines()
        .any(|line| line.split_whitespace().last() == Some(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_cut_loopback_addresses_one_way_or_by_caller() {
    let ips = addresses(78, 2);
    let (a, b) = (ips[0], ips[1]);
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut net = partitions();
    let table = net.table().to_string();
    assert!(udp_arrives(a, b) && udp_arrives(b, a), "before any rule");

    // Packets from a to b are dropped in the input hook, loopback included; b to a still flows;
    // other sources are untouched. TCP needs both ways, so it fails whoever opens it.
    net.cut(a, b).expect("cut a -> b");
    println!("{}", net.listing().expect("listing"));
    assert!(!udp_arrives(a, b), "a -> b after cut(a, b)");
    assert!(udp_arrives(b, a), "b -> a after cut(a, b)");
    assert!(udp_arrives(localhost, b), "127.0.0.1 -> b after cut(a, b)");
    assert!(!tcp_works(a, b).await, "TCP opened by a after cut(a, b)");
    assert!(!tcp_works(b, a).await, "TCP opened by b after cut(a, b)");

    // By caller: connections a opens to b fail, connections b opens to a work both ways.
    net.heal().expect("heal");
    net.cut_calls(a, b).expect("cut calls a -> b");
    println!("{}", net.listing().expect("listing"));
    assert!(
        !tcp_works(a, b).await,
        "TCP opened by a after cut_calls(a, b)"
    );
    assert!(
        tcp_works(b, a).await,
        "TCP opened by b after cut_calls(a, b)"
    );

    net.heal().expect("heal");
    assert!(udp_arrives(a, b), "a -> b after heal");
    assert!(tcp_works(a, b).await, "TCP opened by a after heal");
    assert!(table_exists(&table), "heal keeps the table");

    // Dropping the value deletes the table, rules and all.
    net.isolate(a, &[b]).expect("isolate");
    drop(net);
    assert!(!table_exists(&table), "the table outlived its Partitions");
    assert!(udp_arrives(a, b), "a -> b after the table was deleted");
}

/// `POST /api/v1/origins` through `api` until it answers 201 (a fresh name per attempt, since
/// an earlier attempt may have been committed); returns (id, write index).
async fn write_origin(api: &Api, prefix: &str) -> (String, u64) {
    let attempts = &AtomicU32::new(0);
    wait_until_ok(
        &format!("a write through {}", api.base_url()),
        CONVERGE_TIMEOUT,
        move || async move {
            let name = format!("{prefix}-{}", attempts.fetch_add(1, Ordering::Relaxed));
            let response = api.create_origin(&name).await.map_err(|e| e.to_string())?;
            if response.status.as_u16() != 201 {
                return Err(format!("{} {}", response.status, response.json));
            }
            let index = response
                .write_index()
                .ok_or_else(|| format!("no X-Kokoa-Index: {:?}", response.headers))?;
            let id = response
                .id()
                .ok_or_else(|| format!("no id: {}", response.json))?;
            Ok((id, index))
        },
    )
    .await
}

/// Whether a state dump holds the origin with this id (origins as an array or keyed by id).
fn has_origin(state: &Value, id: &str) -> bool {
    let matches = |origin: &Value| match origin.get("id") {
        Some(Value::String(s)) => s == id,
        Some(other) => other.as_u64().is_some() && other.as_u64() == id.parse().ok(),
        None => false,
    };
    match &state["origins"] {
        Value::Array(origins) => origins.iter().any(matches),
        Value::Object(origins) => origins.contains_key(id) || origins.values().any(matches),
        _ => false,
    }
}

/// Sends one write through replica `i` with a client timeout of [`ISOLATED_WRITE_TIMEOUT`] and
/// says how it failed.
///
/// # Panics
/// When it succeeds.
async fn write_fails(cluster: &Cluster, i: usize, name: &str) -> String {
    let http = reqwest::Client::builder()
        .timeout(ISOLATED_WRITE_TIMEOUT)
        .no_proxy()
        .build()
        .expect("reqwest client");
    let api = Api::with_http(
        http,
        &cluster.replica(i).api_url(),
        Some(cluster.admin_token()),
    );
    let id = cluster.replica(i).id();
    let sent = Instant::now();
    match api.create_origin(name).await {
        Ok(response) => {
            assert!(
                !response.is_success(),
                "a write through cut-off replica {id} succeeded: {} {}",
                response.status,
                response.json
            );
            format!(
                "replica {id}: {} after {:?}: {}",
                response.status,
                sent.elapsed(),
                response.json
            )
        }
        Err(e) if e.is_timeout() => format!("replica {id}: no answer within {:?}", sent.elapsed()),
        Err(e) => format!("replica {id}: failed after {:?}: {e}", sent.elapsed()),
    }
}

/// The term replica `i` reports.
async fn term(cluster: &Cluster, i: usize) -> u64 {
    let info = cluster
        .cluster_info(i, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    info["term"]
        .as_u64()
        .unwrap_or_else(|| panic!("no term in {info}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_is_replaced_and_catches_up_after_heal() {
    let _alone = crate::ONE_DEPLOYMENT_AT_A_TIME.lock().await;
    let ips = addresses(76, 3);
    // Before the cluster, so that it is dropped after it (and on a panic, the table goes too).
    let mut net = partitions();
    let cluster = Cluster::start_on(&ips, &[]).await;
    for (i, ip) in ips.iter().enumerate() {
        assert_eq!(cluster.replica(i).peer_addr().ip(), *ip, "replica {i}");
        assert_eq!(cluster.replica(i).api_addr().ip(), *ip, "replica {i}");
    }
    let old = cluster.wait_for_leader(None).await;
    let old_term = term(&cluster, old).await;
    let others: Vec<usize> = (0..cluster.len()).filter(|&i| i != old).collect();
    let other_ips: Vec<IpAddr> = others.iter().map(|&i| ips[i]).collect();
    println!(
        "leader: replica {} ({}), term {old_term}",
        cluster.replica(old).id(),
        ips[old]
    );

    // Isolate the leader: the other two elect one of themselves.
    let cut_at = Instant::now();
    net.isolate(ips[old], &other_ips)
        .expect("isolate the leader");
    println!("{}", net.listing().expect("listing"));
    let new = cluster.wait_for_leader(Some(old)).await;
    println!(
        "new leader: replica {} after {:?}",
        cluster.replica(new).id(),
        cut_at.elapsed()
    );
    assert!(others.contains(&new), "the new leader is in the majority");
    let new_term = term(&cluster, new).await;
    assert!(new_term > old_term, "term {old_term} -> {new_term}");

    // The majority accepts a write, through the replica that is not the leader (it forwards
    // over the peer network).
    let via = others
        .iter()
        .copied()
        .find(|&i| i != new)
        .expect("two replicas in the majority");
    let (origin_id, index) = write_origin(&cluster.client(via), "majority").await;
    println!(
        "write through replica {} committed at index {index}, {:?} after the cut",
        cluster.replica(via).id(),
        cut_at.elapsed()
    );

    // The isolated old leader cannot commit a write alone: it errors or times out.
    let outcome = write_fails(&cluster, old, "isolated").await;
    println!("write through the isolated old leader: {outcome}");
    let stale = cluster
        .local_state(old)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !has_origin(&stale, &origin_id),
        "the isolated replica has the majority's write"
    );

    // Healed, the old leader follows the new term and catches up.
    net.heal().expect("heal");
    let healed_at = Instant::now();
    cluster.wait_formed(3).await;
    let state = cluster.wait_states_equal(index).await;
    assert!(has_origin(&state, &origin_id), "the write after the heal");
    let caught_up = cluster
        .local_state(old)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        has_origin(&caught_up, &origin_id),
        "the old leader's local state lacks the majority's write"
    );
    println!(
        "old leader caught up {:?} after the heal",
        healed_at.elapsed()
    );

    // One way: packets from the leader to one follower dropped, the other way kept. The leader
    // still has a majority with the third replica and keeps accepting writes; the cut follower
    // hears nothing from it until the heal.
    let leader = cluster.wait_for_leader(None).await;
    let cut_follower = (0..cluster.len())
        .find(|&i| i != leader)
        .expect("a follower");
    let cut_at = Instant::now();
    net.cut(ips[leader], ips[cut_follower])
        .expect("cut leader -> follower");
    println!("{}", net.listing().expect("listing"));
    let (asym_id, asym_index) = write_origin(&cluster.client(leader), "one-way").await;
    println!(
        "one-way cut {} -> {}: write through the leader committed at index {asym_index} after {:?}",
        ips[leader],
        ips[cut_follower],
        cut_at.elapsed()
    );
    net.heal().expect("heal");
    let healed_at = Instant::now();
    cluster.wait_formed(3).await;
    let state = cluster.wait_states_equal(asym_index).await;
    assert!(has_origin(&state, &asym_id), "the one-way write after heal");
    println!(
        "converged {:?} after healing the one-way cut",
        healed_at.elapsed()
    );

    // No majority anywhere: every replica cut from every other. No write succeeds, wherever it
    // is sent; healed, the cluster elects a leader and writes again.
    net.split_all(&ips).expect("split every replica");
    let outcomes =
        futures::future::join_all((0..cluster.len()).map(|i| write_fails(&cluster, i, "split")))
            .await;
    for outcome in outcomes {
        println!("write with no majority: {outcome}");
    }
    net.heal().expect("heal");
    let healed_at = Instant::now();
    cluster.wait_formed(3).await;
    let leader = cluster.wait_for_leader(None).await;
    let (split_id, split_index) = write_origin(&cluster.client(leader), "after-split").await;
    let state = cluster.wait_states_equal(split_index).await;
    assert!(has_origin(&state, &split_id), "the write after the split");
    println!(
        "leader and a converged write {:?} after healing the split",
        healed_at.elapsed()
    );

    net.remove().expect("delete the table");
}
