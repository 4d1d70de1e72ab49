//! SIGTERM: the replica exits within 5 s and its ports can be bound again at once — with a
//! client keep-alive connection open and peers connected, and also without a quorum.

use std::net::TcpListener;
use std::time::Instant;

use kokoa_tests::{Cluster, SHUTDOWN_TIMEOUT};

async fn terminate_and_check_ports(cluster: &mut Cluster, i: usize) {
    let id = cluster.replica(i).id();
    let api_addr = cluster.replica(i).api_addr();
    let peer_addr = cluster.replica(i).peer_addr();
    // Leave an idle keep-alive connection in the client's pool.
    let api = cluster.client(i);
    let info = api
        .get("/api/v1/cluster?stale=true")
        .await
        .expect("GET cluster");
    assert!(info.is_success(), "replica {id}: {}", info.json);

    let started = Instant::now();
    cluster.replica(i).sigterm();
    let status = cluster.replica_mut(i).wait_exit(SHUTDOWN_TIMEOUT).await;
    let status = status
        .unwrap_or_else(|| panic!("replica {id} still running {SHUTDOWN_TIMEOUT:?} after SIGTERM"));
    assert!(
        status.success(),
        "replica {id} exited with {status} after SIGTERM (after {:?})",
        started.elapsed()
    );
    for addr in [api_addr, peer_addr] {
        if let Err(e) = TcpListener::bind(addr) {
            panic!("replica {id} exited but {addr} cannot be bound again: {e}");
        }
    }
    drop(api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_five_seconds_and_releases_ports() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(None).await;
    terminate_and_check_ports(&mut cluster, leader).await;

    // The survivors elect a new leader; then a follower left without a quorum shuts down too.
    let new_leader = cluster.wait_for_leader(Some(leader)).await;
    terminate_and_check_ports(&mut cluster, new_leader).await;
    let last = cluster.running()[0];
    terminate_and_check_ports(&mut cluster, last).await;
}
