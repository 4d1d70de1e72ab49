//! A write through a follower is committed, readable linearizably everywhere, and in each
//! replica's local state once it has applied the write's index.

use kokoa_tests::Cluster;
use serde_json::Value;

use crate::common::{created, route_hostnames};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_follower_are_visible_on_every_replica() {
    let cluster = Cluster::start(3).await;
    let follower = cluster.followers().await[0];
    let api = cluster.client(follower);

    let origin = api
        .create_origin("home")
        .await
        .expect("POST /api/v1/origins");
    let (origin_id, origin_index) = created("origin through a follower", &origin);
    assert_eq!(origin.json["name"], "home", "{}", origin.json);

    let route = api
        .create_route("app.example.com", &origin_id, "localhost:8080")
        .await
        .expect("POST /api/v1/routes");
    let (route_id, route_index) = created("route through a follower", &route);
    assert!(
        route_index > origin_index,
        "route index {route_index} not after origin index {origin_index}"
    );
    assert_eq!(route.json["hostname"], "app.example.com", "{}", route.json);
    assert_eq!(route.json["target"], "localhost:8080", "{}", route.json);
    assert_eq!(
        route.json["origin_id"].as_str(),
        Some(origin_id.as_str()),
        "{}",
        route.json
    );

    // Linearizable reads: visible at once, wherever they are served.
    for i in 0..3 {
        let id = cluster.replica(i).id();
        let hosts = route_hostnames(&cluster.client(i), false).await;
        assert!(
            hosts.iter().any(|h| h == "app.example.com"),
            "linearizable read on replica {id} misses the route: {hosts:?}"
        );
        let origins = cluster
            .client(i)
            .get("/api/v1/origins")
            .await
            .expect("GET origins");
        assert!(
            crate::common::items(&origins.json)
                .iter()
                .any(|o| o["name"] == "home"),
            "linearizable read on replica {id} misses the origin: {}",
            origins.json
        );
    }

    // Local reads: visible once the replica has applied the write's index.
    for i in 0..3 {
        let id = cluster.replica(i).id();
        cluster.wait_applied(i, route_index).await;
        let hosts = route_hostnames(&cluster.client(i), true).await;
        assert!(
            hosts.iter().any(|h| h == "app.example.com"),
            "replica {id} applied {route_index} but its local state misses the route: {hosts:?}"
        );
        let one = cluster
            .client(i)
            .get(&format!("/api/v1/routes/{route_id}?stale=true"))
            .await
            .expect("GET route by id");
        assert_eq!(one.status.as_u16(), 200, "replica {id}: {}", one.json);
        assert_eq!(
            one.json.get("hostname").and_then(Value::as_str),
            Some("app.example.com")
        );
    }
}
