//! Tunnel origins end to end with real processes: curl over TLS to the edge, through the
//! WireGuard tunnel, to an origin app behind `kokoa agent`; agents killed and restarted, the
//! edge restarted, two agents for one origin.

use std::time::{Duration, Instant};

use futures::future::join_all;
use kokoa_tests::{curl_edge, tls_connect, wait_until_ok, Agent, OriginApp};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::edge_common::{fetch, unlimited, wait_origin, EdgeSetup, SERVE_TIMEOUT};
use crate::edge_resilience::echo;

/// Big transfers through the tunnel.
const BIG: u64 = 100 * 1024 * 1024;
/// Time for an agent to be seen connected, or gone, by the edge.
const TUNNEL_TIMEOUT: Duration = Duration::from_secs(60);

/// An edge setup plus a tunnel origin `home` with `app` behind agent `agent-1`, routed at
/// `app.tunnel.test` with a certificate.
struct TunnelSetup {
    setup: EdgeSetup,
    origin_id: String,
    app: OriginApp,
    agent: Agent,
}

const HOST: &str = "app.tunnel.test";

impl TunnelSetup {
    async fn start() -> TunnelSetup {
        let setup = EdgeSetup::start().await;
        let origin_id = setup.cluster.add_tunnel_origin("home").await;
        let agent = setup.cluster.start_agent("agent-1", &origin_id).await;
        let app = OriginApp::start("app").await;
        setup.certificate(&[HOST]).await;
        let (_, index) = setup
            .add_route(json!({
                "hostname": HOST,
                "origin_id": origin_id,
                "target": app.target(),
                "rate_limit": unlimited(),
            }))
            .await;
        setup.served(index).await;
        let s = TunnelSetup {
            setup,
            origin_id,
            app,
            agent,
        };
        wait_origin(&s.setup.client(), &s.url("/hello"), "app").await;
        s
    }

    fn url(&self, path: &str) -> String {
        self.setup.edge.https_url(HOST, path)
    }

    /// This origin's agents in the edge's `/health`.
    async fn agents(&self) -> Vec<Value> {
        let health = self.setup.edge.health().await.unwrap_or(Value::Null);
        health["origins"][&self.origin_id]["agents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until every replica (linearizable and local reads) shows the route's origin
    /// `status`, unreachable from the edges `from`.
    async fn wait_route_status(&self, status: &str, from: &[&str]) {
        let cluster = &self.setup.cluster;
        wait_until_ok(
            &format!("the route's origin {status} (not from {from:?}) on every replica"),
            TUNNEL_TIMEOUT,
            || async {
                for i in cluster.running() {
                    for query in ["", "?stale=true"] {
                        let path = format!("/api/v1/routes/{HOST}{query}");
                        let got = cluster
                            .client(i)
                            .get(&path)
                            .await
                            .map_err(|e| e.to_string())?;
                        let seen = (&got.json["origin_status"], &got.json["unreachable_from"]);
                        if got.status.as_u16() != 200 || seen.0 != status || *seen.1 != json!(from)
                        {
                            return Err(format!("replica {i} {path}: {} {}", got.status, got.json));
                        }
                    }
                }
                Ok(())
            },
        )
        .await;
    }

    /// Sends `n` requests one after another; each must be answered 200.
    async fn all_answer(&self, client: &reqwest::Client, tag: &str, n: usize) {
        for i in 0..n {
            let answer = fetch(client, &self.url(&format!("/{tag}/{i}")))
                .await
                .unwrap_or_else(|e| panic!("request {tag} {i}: {e}"));
            assert_eq!(answer.status, 200, "request {tag} {i}: {}", answer.body);
        }
    }

    /// The address the edge's `/health` shows for agent `id` (null when unknown).
    async fn agent_endpoint(&self, id: &str) -> Value {
        let agents = self.agents().await;
        let agent = agents.iter().find(|a| a["id"] == id);
        agent.map_or(Value::Null, |a| a["endpoint"].clone())
    }

    /// Waits until the edge's data dir holds the address its `/health` shows for the agent.
    async fn wait_endpoint_saved(&self) {
        let file = self.setup.edge.data_dir().join("agent-endpoints.json");
        wait_until_ok(
            "the edge to save the agent's address",
            TUNNEL_TIMEOUT,
            || async {
                let agents = self.agents().await;
                let endpoint = agents
                    .iter()
                    .find(|a| a["id"] == self.agent.id())
                    .and_then(|a| a["endpoint"].as_str())
                    .ok_or_else(|| format!("no endpoint in {agents:?}"))?
                    .to_string();
                let saved = std::fs::read_to_string(&file).unwrap_or_default();
                if saved.contains(&format!("\"{endpoint}\"")) {
                    Ok(())
                } else {
                    Err(format!("{} has {saved:?}, not {endpoint}", file.display()))
                }
            },
        )
        .await;
    }

    /// Waits until the edge reports agent `id` connected (or not).
    async fn wait_agent(&self, id: &str, connected: bool) {
        wait_until_ok(
            &format!("the edge sees agent {id} connected={connected}"),
            TUNNEL_TIMEOUT,
            || async {
                let agents = self.agents().await;
                let found = agents.iter().find(|a| a["id"] == id);
                match found {
                    Some(a) if a["connected"] == connected => Ok(()),
                    _ => Err(format!("{agents:?}")),
                }
            },
        )
        .await;
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_transfers_websockets_and_concurrent_requests_cross_the_tunnel() {
    let t = TunnelSetup::start().await;
    let edge = &t.setup.edge;
    let ca = t.setup.ca_file.as_path();
    let dir = t.setup.cluster.root().to_path_buf();

    // 100 MB down: curl over TLS, compared with the pattern the origin streamed.
    let down = dir.join("down.bin");
    let url = t.url(&format!("/download?bytes={BIG}"));
    let out = curl_edge(
        edge,
        &url,
        HOST,
        Some(ca),
        &["--max-time", "300", "-o", down.to_str().expect("path")],
    )
    .await;
    assert!(
        out.success && out.status == 200,
        "download: {}",
        out.verbose
    );
    let got = std::fs::read(&down).expect("read the download");
    assert_eq!(got.len() as u64, BIG, "download length");
    let mut want = Sha256::new();
    for block in 0..(BIG / kokoa_tests::PATTERN_BLOCK as u64) {
        want.update(kokoa_tests::pattern_block(block));
    }
    let want: String = want.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sha256_hex(&got), want, "the download arrived damaged");
    drop(got);

    // 100 MB up: the origin hashes what it received.
    let up = dir.join("up.bin");
    let data: Vec<u8> = (0..BIG)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&up, &data).expect("write the upload");
    let sent_sha = sha256_hex(&data);
    drop(data);
    let out = curl_edge(
        edge,
        &t.url("/upload"),
        HOST,
        Some(ca),
        &[
            "--max-time",
            "300",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", up.display()),
        ],
    )
    .await;
    assert!(out.success && out.status == 200, "upload: {}", out.verbose);
    let answer: Value = serde_json::from_str(&out.body).expect("origin JSON");
    assert_eq!(answer["body_len"], BIG, "upload length");
    assert_eq!(
        answer["body_sha256"],
        sent_sha.as_str(),
        "the upload arrived damaged"
    );
    let _ = std::fs::remove_file(&up);
    let _ = std::fs::remove_file(&down);

    // A WebSocket through edge and tunnel.
    let tls = tls_connect(edge.https_addr(), HOST, &["http/1.1"], &t.setup.ca)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ws_url = format!("wss://{HOST}:{}/echo", edge.https_addr().port());
    let (mut ws, upgrade) = tokio_tungstenite::client_async(ws_url.as_str(), tls)
        .await
        .unwrap_or_else(|e| panic!("WebSocket handshake with {ws_url}: {e}"));
    assert_eq!(upgrade.status().as_u16(), 101);
    for i in 0..10 {
        echo(&mut ws, &format!("message {i} through the tunnel"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    // 100 concurrent requests all succeed.
    let client = t.setup.client();
    let answers = join_all((0..100).map(|i| {
        let client = client.clone();
        let url = t.url(&format!("/c/{i}"));
        async move { (i, fetch(&client, &url).await) }
    }))
    .await;
    for (i, answer) in answers {
        let answer = answer.unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(answer.status, 200, "request {i}: {}", answer.body);
        assert_eq!(answer.json()["path"], format!("/c/{i}"));
    }

    // The edge reports the agent and its handshake; the agent's requests reached the app.
    let agents = t.agents().await;
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["id"], t.agent.id());
    assert_eq!(agents[0]["connected"], true);
    assert!(agents[0]["last_handshake_secs"].is_u64(), "{agents:?}");
    assert!(t.app.requests().len() >= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_edges_come_back_by_themselves_and_a_second_agent_takes_over() {
    let mut t = TunnelSetup::start().await;
    let client = t.setup.client();
    let url = t.url("/after");

    // kill -9 the agent, start it again: traffic resumes within 5 s.
    t.agent.kill9();
    t.agent.restart().await.unwrap_or_else(|e| panic!("{e}"));
    let restarted = Instant::now();
    wait_origin(&client, &url, "app").await;
    let resumed = restarted.elapsed();
    assert!(
        resumed <= Duration::from_secs(5),
        "traffic resumed {resumed:?} after the agent restarted"
    );
    eprintln!("traffic resumed {resumed:?} after the agent restarted");

    // kill -9 the edge once it has saved the agent's new address, start it again: it greets
    // the agent there, and the agent reconnects at once rather than when its keep-alive gives
    // up on the old connection (10 to 15 s; 0.1 to 0.3 s measured here).
    t.wait_endpoint_saved().await;
    t.setup.edge.kill9();
    t.setup
        .edge
        .restart()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let edge_back = Instant::now();
    wait_origin(&client, &url, "app").await;
    let reconnected = edge_back.elapsed();
    eprintln!("the agent reconnected {reconnected:?} after the edge restarted");
    assert!(
        reconnected <= Duration::from_secs(3),
        "the agent reconnected {reconnected:?} after the edge restarted"
    );

    // A second agent for the same origin; kill the first: once its tunnel is seen down, no
    // request is lost.
    let second = t.setup.cluster.start_agent("agent-2", &t.origin_id).await;
    t.wait_agent(second.id(), true).await;
    t.wait_agent(t.agent.id(), true).await;
    let first_id = t.agent.id().to_string();

    // kill -9 agent 1 and start it again at once, with the edge's connection pool holding
    // HTTP connections through both agents: once the edge has agent 1's new connection, the
    // old one (dead, though no keep-alive has timed out yet) is closed with every pooled
    // connection over it, so no request fails.
    t.all_answer(&client, "pool", 50).await;
    let old_endpoint = t.agent_endpoint(&first_id).await;
    t.agent.kill9();
    t.agent.restart().await.unwrap_or_else(|e| panic!("{e}"));
    wait_until_ok(
        "the edge to get agent 1's new connection",
        TUNNEL_TIMEOUT,
        || async {
            let agents = t.agents().await;
            let now = agents.iter().find(|a| a["id"] == first_id.as_str());
            match now {
                Some(a) if a["connected"] == true && a["endpoint"] != old_endpoint => Ok(()),
                _ => Err(format!("{agents:?}")),
            }
        },
    )
    .await;
    t.all_answer(&client, "after-restart", 50).await;
    t.agent.kill9();
    let killed = Instant::now();
    t.wait_agent(&first_id, false).await;
    eprintln!(
        "the edge saw agent 1 down {:?} after kill -9",
        killed.elapsed()
    );
    t.all_answer(&client, "two", 50).await;
    assert!(SERVE_TIMEOUT > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_show_when_the_edges_cannot_reach_their_tunnel_origin() {
    let mut t = TunnelSetup::start().await;
    crate::health::fast_checks(&t.setup.cluster).await;
    let edge_id = t.setup.edge.id().to_string();
    t.wait_route_status("reachable", &[]).await;

    // The only agent dies: once the edge sees its tunnel gone, every replica marks the route.
    t.agent.kill9();
    let killed = Instant::now();
    t.wait_route_status("unreachable", &[&edge_id]).await;
    eprintln!(
        "the route was marked unreachable {:?} after kill -9 of its agent",
        killed.elapsed()
    );
    let page = crate::ui::dashboard_page(&t.setup.cluster, 1).await;
    assert!(
        page.contains("origin unreachable") && page.contains(&format!("not from {}", "edge-1")),
        "the dashboard does not mark the route: {page}"
    );
    let edges = t
        .setup
        .cluster
        .client(2)
        .get("/api/v1/edge-nodes")
        .await
        .expect("GET edges");
    assert_eq!(
        edges.json["items"][0]["unreachable_origins"],
        json!([t.origin_id])
    );

    // The agent comes back: the mark goes.
    t.agent.restart().await.unwrap_or_else(|e| panic!("{e}"));
    t.wait_route_status("reachable", &[]).await;
    let page = crate::ui::dashboard_page(&t.setup.cluster, 0).await;
    assert!(!page.contains("origin unreachable"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_forward_only_to_their_origins_targets() {
    let t = TunnelSetup::start().await;
    let client = t.setup.client();
    // A second tunnel origin with its own agent and app: routes reach only their own.
    let other_id = t.setup.cluster.add_tunnel_origin("lab").await;
    let _other_agent = t.setup.cluster.start_agent("agent-lab", &other_id).await;
    let other_app = OriginApp::start("lab-app").await;
    t.setup
        .certificate(&["lab.tunnel.test", "sneaky.tunnel.test"])
        .await;
    t.setup
        .add_route(json!({
            "hostname": "lab.tunnel.test",
            "origin_id": other_id,
            "target": other_app.target(),
            "rate_limit": unlimited(),
        }))
        .await;
    // A route of origin `home` whose target only the other origin's agent has: `home`'s agent
    // refuses it (never an open proxy), so the edge answers 502 and the lab app sees nothing.
    let (_, index) = t
        .setup
        .add_route(json!({
            "hostname": "sneaky.tunnel.test",
            "origin_id": t.origin_id,
            "target": "127.0.0.1:1",
            "rate_limit": unlimited(),
        }))
        .await;
    t.setup.served(index).await;
    let lab = t.setup.edge.https_url("lab.tunnel.test", "/x");
    wait_origin(&client, &lab, "lab-app").await;
    let sneaky = fetch(&client, &t.setup.edge.https_url("sneaky.tunnel.test", "/x"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sneaky.status, 502, "{}", sneaky.body);
    assert!(other_app.requests().iter().all(|r| r.path == "/x"));
}
