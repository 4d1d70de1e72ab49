//! A replica whose disk fills up stops serving instead of pretending (it answers 503 and exits
//! non-zero), and once space is back it restarts with every acknowledged write.
//!
//! The data dir is a small tmpfs mounted by the test, so this needs root (as CI has).

use std::time::Duration;

use kokoa_tests::{random_hex, wait_until_ok, Api, Replica, ReplicaSpec, Tmpfs, CONVERGE_TIMEOUT};

use crate::common::route_hostnames;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_replica_and_loses_no_acknowledged_write() {
    let root = tempfile::tempdir().expect("temp dir");
    let disk = root.path().join("disk");
    std::fs::create_dir_all(&disk).expect("mkdir");
    let tmpfs = Tmpfs::mount(&disk, "6m").unwrap_or_else(|e| panic!("{e}"));

    let token = format!("disk-full-admin-{}", random_hex(8));
    let mut spec = ReplicaSpec::new(1, root.path());
    spec.data_dir = disk.join("data");
    spec.init = true;
    spec.env = vec![
        ("KOKOA_CLUSTER_SECRET".into(), random_hex(16)),
        ("KOKOA_INIT_ADMIN_TOKEN".into(), token.clone()),
    ];
    let mut replica = Replica::start(spec).await.expect("replica starts");
    let api = Api::new(&replica.api_url(), Some(&token));
    let origin = wait_until_ok("the origin is created", CONVERGE_TIMEOUT, || async {
        let r = api.create_origin("o1").await.map_err(|e| e.to_string())?;
        r.id().ok_or_else(|| format!("{} {}", r.status, r.json))
    })
    .await;

    // Write until the disk refuses; every 201 is an acknowledged write.
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..50_000 {
        let host = format!("h{i}-{}.full.example.com", "x".repeat(40));
        match api.create_route(&host, &origin, "localhost:8080").await {
            Ok(r) if r.status.as_u16() == 201 => acked.push(host),
            Ok(r) => {
                refused = Some((r.status.as_u16(), r.json));
                break;
            }
            Err(e) => {
                refused = Some((0, serde_json::Value::String(e.to_string())));
                break;
            }
        }
    }
    let (status, body) = refused.expect("the 6 MiB disk never filled up");
    assert!(
        acked.len() > 20,
        "only {} writes before the disk was full",
        acked.len()
    );
    if status != 0 {
        assert_eq!(status, 503, "a write on a full disk: {body}");
        assert_eq!(body["error"]["retryable"], true, "{body}");
    }
    let exit = replica
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("the replica exits");
    assert!(!exit.success(), "exit status {exit:?}");
    assert!(
        replica.log().contains("No space left on device"),
        "{}",
        replica.log_tail(20)
    );

    // Space is back: restart; every acknowledged write is there, once.
    tmpfs.resize("64m").unwrap_or_else(|e| panic!("{e}"));
    replica
        .restart()
        .await
        .expect("restart after the disk has room again");
    let api = Api::new(&replica.api_url(), Some(&token));
    wait_until_ok("routes are readable again", CONVERGE_TIMEOUT, || async {
        let r = api.get("/api/v1/routes").await.map_err(|e| e.to_string())?;
        if r.status.as_u16() == 200 {
            Ok(())
        } else {
            Err(format!("{} {}", r.status, r.json))
        }
    })
    .await;
    let mut hosts = route_hostnames(&api, false).await;
    let total = hosts.len();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), total, "a route is listed twice");
    for host in &acked {
        assert!(
            hosts.binary_search(host).is_ok(),
            "acknowledged write {host} was lost"
        );
    }
}
