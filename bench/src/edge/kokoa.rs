//! The Kokoa side: a one-replica control plane (`kokoa server --init`, through the
//! `kokoa-tests` harness: default flags, admin token from `KOKOA_INIT_ADMIN_TOKEN`), set up
//! through API v1 only (a direct origin, one route to the shared upstream with a rate limit high
//! enough not to throttle wrk, plain HTTP allowed), then one `kokoa edge` on 127.0.0.1 started
//! by the harness with a fresh bootstrap token: ready once it logs `edge listening`, its
//! `/health` shows a pulled config and the route answers through it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use kokoa_tests::{Api, ApiResponse, Cluster, Edge};
use serde_json::{json, Value};

use super::probe::{self, HOSTNAME};
use crate::note;

/// How long the edge may take to show a pulled config and answer, once it listens.
const EDGE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The route's per-client-IP limit: far above anything wrk reaches on one box (the edge's
/// default, 10 requests/s, would turn almost every request into a 429).
const RATE_LIMIT: u32 = 1_000_000;
/// The edge's default limit of open connections per client IP; wrk's all come from 127.0.0.1.
const EDGE_MAX_CONNS_PER_IP: u32 = 256;
/// How often `/health` is looked at while waiting.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The control plane and one edge. Dropping it stops the edge, then the replica.
#[derive(Debug)]
pub struct KokoaSide {
    // Field order is drop order: the edge goes first.
    pub edge: Edge,
    /// The `edge listening` line, as logged.
    pub listening_line: String,
    /// Extra `kokoa edge` arguments the benchmark added (beyond `--edge-arg`), and why.
    pub edge_flags_added: Vec<String>,
    /// Route fields the replica refused (the route was created without them), with its answer.
    pub route_downgrades: Vec<String>,
    pub cluster: Cluster,
}

fn want(what: &str, response: &ApiResponse, status: u16) -> anyhow::Result<()> {
    anyhow::ensure!(
        response.status.as_u16() == status,
        "{what}: want {status}, got {} {}",
        response.status,
        response.json
    );
    Ok(())
}

/// The JSON body of `POST /api/v1/routes`, with the optional fields named in `with`.
fn route_body(origin_id: &str, upstream: SocketAddr, with: &[&str]) -> Value {
    let mut body = json!({
        "hostname": HOSTNAME,
        "origin_id": origin_id,
        "target": upstream.to_string(),
    });
    if with.contains(&"rate_limit") {
        body["rate_limit"] = json!({ "per_second": RATE_LIMIT, "burst": RATE_LIMIT });
    }
    if with.contains(&"allow_http") {
        body["allow_http"] = json!(true);
    }
    body
}

/// Creates the route; when the replica refuses an optional field (400, an older API), tries
/// again without it and says so: the run goes on, and its report carries the warning. Returns
/// the fields left out, each with the replica's answer.
async fn create_route(
    admin: &Api,
    origin_id: &str,
    upstream: SocketAddr,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut with = vec!["rate_limit", "allow_http"];
    let mut left_out = Vec::new();
    loop {
        let body = route_body(origin_id, upstream, &with);
        let response = admin
            .post_json("/api/v1/routes", &body)
            .await
            .context("POST /api/v1/routes")?;
        if response.status.as_u16() == 201 {
            return Ok(left_out);
        }
        let refused = response.json.to_string();
        // The field named first (an "unknown field `x`, expected one of ..." message may list
        // the known ones after it).
        let named = with
            .iter()
            .enumerate()
            .filter_map(|(i, field)| refused.find(field).map(|at| (at, i)))
            .min();
        let (true, Some((_, at))) = (response.status.is_client_error(), named) else {
            anyhow::bail!(
                "POST /api/v1/routes: want 201, got {} {refused}",
                response.status
            );
        };
        let field = with.remove(at);
        left_out.push((field, format!("{} {refused}", response.status)));
    }
}

impl KokoaSide {
    /// Starts the replica, sets up the route to `upstream`, starts the edge (data in the
    /// cluster's directory), and waits until the route answers through it.
    pub async fn start(
        upstream: SocketAddr,
        server_args: &[String],
        edge_args: &[String],
        connections: u32,
        http: &reqwest::Client,
    ) -> anyhow::Result<KokoaSide> {
        let extra: Vec<&str> = server_args.iter().map(String::as_str).collect();
        let cluster = Cluster::start_with(1, &extra).await;
        let admin = cluster.client(0);
        note!(
            "control plane: 1 replica, pid {}, API {}",
            cluster.replica(0).pid().unwrap_or(0),
            cluster.replica(0).api_url()
        );
        let origin = admin
            .post_json(
                "/api/v1/origins",
                &json!({ "name": "bench", "kind": "direct" }),
            )
            .await
            .context("POST /api/v1/origins")?;
        want("POST /api/v1/origins", &origin, 201)?;
        let origin_id = origin
            .id()
            .with_context(|| format!("no id in {}", origin.json))?;
        let left_out = create_route(&admin, &origin_id, upstream).await?;

        let mut route_downgrades = Vec::new();
        let mut edge_flags_added = Vec::new();
        let mut flags: Vec<String> = Vec::new();
        for (field, answer) in &left_out {
            let why = format!(
                "the replica refused the route field `{field}` ({answer}); created the route \
                 without it"
            );
            note!("WARNING: {why}");
            route_downgrades.push(why);
            if *field == "rate_limit" {
                // The same limit as the edge's default instead.
                flags.extend([
                    "--rate-limit".into(),
                    RATE_LIMIT.to_string(),
                    "--rate-burst".into(),
                    RATE_LIMIT.to_string(),
                ]);
            }
        }
        if connections * 2 > EDGE_MAX_CONNS_PER_IP {
            // nginx has no such limit; wrk's connections all come from one address.
            flags.extend(["--max-conns-per-ip".into(), (connections * 2).to_string()]);
        }
        if !flags.is_empty() {
            edge_flags_added.push(flags.join(" "));
        }

        let mut spec = cluster.edge_spec("bench-edge", 0).await;
        spec.ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        spec.extra_args = flags;
        spec.extra_args.extend(edge_args.iter().cloned());
        let edge = Edge::start(spec)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let listening_line = edge
            .log_since_start()
            .lines()
            .find(|l| l.contains("edge listening"))
            .map(|l| l.trim().to_string())
            .unwrap_or_default();
        let mut side = KokoaSide {
            edge,
            listening_line,
            edge_flags_added,
            route_downgrades,
            cluster,
        };
        side.wait_serving(http)
            .await
            .with_context(|| format!("kokoa edge log tail:\n{}", side.edge.log_tail(30)))?;
        Ok(side)
    }

    /// Until `/health` shows a pulled config and the route answers over HTTPS.
    async fn wait_serving(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            anyhow::ensure!(self.edge.is_running(), "kokoa edge exited");
            let last = match self.edge.version().await {
                Ok(version) if version > 0 => break,
                Ok(version) => format!("version {version}"),
                Err(why) => why,
            };
            anyhow::ensure!(
                started.elapsed() < EDGE_READY_TIMEOUT,
                "/health shows no pulled config after {EDGE_READY_TIMEOUT:?}; last: {last}"
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
        let left = EDGE_READY_TIMEOUT.saturating_sub(started.elapsed());
        probe::wait_ok(http, &format!("https://{}/", self.https()), left)
            .await
            .context("the route through the edge (HTTPS)")
    }

    pub fn http(&self) -> SocketAddr {
        self.edge.http_addr()
    }

    pub fn https(&self) -> SocketAddr {
        self.edge.https_addr()
    }

    /// The edge's pid.
    pub fn edge_pid(&self) -> Option<u32> {
        self.edge.pid()
    }

    /// The replica's pid.
    pub fn replica_pid(&self) -> Option<u32> {
        self.cluster.replica(0).pid()
    }

    /// `Err` when the edge has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.edge.is_running(),
            "kokoa edge exited ({:?}); log tail:\n{}",
            self.edge.last_exit(),
            self.edge.log_tail(30)
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_body_carries_the_optional_fields_asked_for() {
        let upstream = SocketAddr::from(([127, 0, 0, 1], 9));
        let full = route_body("o1", upstream, &["rate_limit", "allow_http"]);
        assert_eq!(full["target"], "127.0.0.1:9");
        assert_eq!(full["rate_limit"]["per_second"], RATE_LIMIT);
        assert_eq!(full["allow_http"], true);
        let bare = route_body("o1", upstream, &[]);
        assert!(bare.get("rate_limit").is_none() && bare.get("allow_http").is_none());
    }
}
