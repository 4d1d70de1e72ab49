//! The Kokoa half's deployment, all on this machine through the `kokoa-tests` harness: a
//! one-replica control plane, one `kokoa edge` (plain HTTP on its loopback address), the origin
//! app (`OriginApp`: streamed pattern downloads) on 127.0.0.1, and two routes to that same app,
//! both with `allow_http` (so TLS cost does not hide the tunnel's) and a rate limit no load here
//! reaches:
//!
//! * `tunnel.bench.test` on a **tunnel** origin: edge → WireGuard tunnel → `kokoa agent` → app;
//! * `direct.bench.test` on a **direct** origin: edge → app, the baseline for added latency.
//!
//! Ready once the agent logs `agent running` and one download through each route is checked
//! byte for byte.

use std::time::Duration;

use anyhow::Context;
use kokoa_tests::{Agent, Api, Cluster, Edge, OriginApp};
use serde_json::json;

use super::cli::TunnelArgs;
use super::load::{self, HttpTarget};
use crate::note;

pub const TUNNEL_HOST: &str = "tunnel.bench.test";
pub const DIRECT_HOST: &str = "direct.bench.test";
/// Per client IP and route; the API's maximum, far above anything measured here (the edge's
/// default, 10 requests/s, would throttle the latency pass).
const RATE_LIMIT: u32 = 1_000_000;
/// How long the routes may take to serve a verified download once everything runs (the edge
/// pulls its config, the agent connects).
const SERVE_TIMEOUT: Duration = Duration::from_secs(60);
/// The download checked before measuring.
const PROBE_BYTES: u64 = 4 << 20;

/// Every Kokoa process of the benchmark and the app behind them. Dropping it stops them.
#[derive(Debug)]
pub struct KokoaSide {
    // Field order is drop order: the agent and the edge before the control plane.
    pub agent: Agent,
    pub edge: Edge,
    pub cluster: Cluster,
    pub origin: OriginApp,
    /// Through the tunnel.
    pub tunnel: HttpTarget,
    /// Through the edge to the direct origin.
    pub direct: HttpTarget,
}

impl KokoaSide {
    /// Starts the control plane, the app, the routes, the edge and the agent, and waits until
    /// both routes serve.
    pub async fn start(args: &TunnelArgs) -> anyhow::Result<KokoaSide> {
        let origin = OriginApp::start("bench-origin").await;
        let extra: Vec<&str> = args.kokoa_args.iter().map(String::as_str).collect();
        let cluster = Cluster::start_with(1, &extra).await;
        let admin = cluster.client(0);
        note!(
            "control plane: 1 replica, pid {}, API {}; origin app at {}",
            cluster.replica(0).pid().unwrap_or(0),
            cluster.replica(0).api_url(),
            origin.addr()
        );
        let direct_id = create_origin(&admin, "bench-direct", "direct").await?;
        let tunnel_id = create_origin(&admin, "bench-tunnel", "tunnel").await?;
        create_route(&admin, DIRECT_HOST, &direct_id, &origin.target()).await?;
        create_route(&admin, TUNNEL_HOST, &tunnel_id, &origin.target()).await?;

        let mut spec = cluster.edge_spec("bench-edge", 0).await;
        spec.extra_args.extend(args.edge_args.iter().cloned());
        let edge = Edge::start(spec)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        note!(
            "kokoa edge pid {} http={} (WireGuard udp {}:{})",
            edge.pid().unwrap_or(0),
            edge.http_addr(),
            edge.ip(),
            edge.spec().wg_port
        );
        let mut agent_spec = cluster.agent_spec("bench-agent", &tunnel_id, 0).await;
        agent_spec
            .extra_args
            .extend(args.agent_args.iter().cloned());
        let agent = Agent::start(agent_spec)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        note!(
            "kokoa agent pid {} id {} tunnel_ip {}",
            agent.pid().unwrap_or(0),
            agent.id(),
            agent.tunnel_ip()
        );
        let target = |label, host: &str| HttpTarget {
            label,
            edge: edge.http_addr(),
            host: host.to_string(),
        };
        let side = KokoaSide {
            tunnel: target("tunnel", TUNNEL_HOST),
            direct: target("direct", DIRECT_HOST),
            agent,
            edge,
            cluster,
            origin,
        };
        for route in [&side.direct, &side.tunnel] {
            load::wait_serving(route, PROBE_BYTES, SERVE_TIMEOUT)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| side.log_tails())?;
        }
        Ok(side)
    }

    /// The processes that carry the tunnel: the edge and the agent.
    pub fn pids(&self) -> Vec<u32> {
        self.edge
            .pid()
            .into_iter()
            .chain(self.agent.pid())
            .collect()
    }

    /// `Err` when the edge or the agent has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.edge.is_running(),
            "kokoa edge exited ({:?}):\n{}",
            self.edge.last_exit(),
            self.edge.log_tail(30)
        );
        anyhow::ensure!(
            self.agent.is_running(),
            "kokoa agent exited ({:?}):\n{}",
            self.agent.last_exit(),
            self.agent.log_tail(30)
        );
        Ok(())
    }

    /// The last lines of the edge's and the agent's logs.
    pub fn log_tails(&self) -> String {
        format!(
            "--- kokoa edge log tail ---\n{}\n--- kokoa agent log tail ---\n{}",
            self.edge.log_tail(30),
            self.agent.log_tail(30)
        )
    }
}

async fn create_origin(admin: &Api, name: &str, kind: &str) -> anyhow::Result<String> {
    let response = admin
        .post_json("/api/v1/origins", &json!({ "name": name, "kind": kind }))
        .await
        .context("POST /api/v1/origins")?;
    anyhow::ensure!(
        response.status.as_u16() == 201,
        "POST /api/v1/origins ({kind}): {} {}",
        response.status,
        response.json
    );
    response
        .id()
        .with_context(|| format!("no id in {}", response.json))
}

async fn create_route(
    admin: &Api,
    hostname: &str,
    origin_id: &str,
    target: &str,
) -> anyhow::Result<()> {
    let body = json!({
        "hostname": hostname,
        "origin_id": origin_id,
        "target": target,
        "allow_http": true,
        "rate_limit": { "per_second": RATE_LIMIT, "burst": RATE_LIMIT },
    });
    let response = admin
        .post_json("/api/v1/routes", &body)
        .await
        .context("POST /api/v1/routes")?;
    anyhow::ensure!(
        response.status.as_u16() == 201,
        "POST /api/v1/routes ({hostname}): {} {}",
        response.status,
        response.json
    );
    Ok(())
}
