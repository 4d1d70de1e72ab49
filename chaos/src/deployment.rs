//! The deployment a run works on: 3 replicas on their own loopback addresses (so nftables can
//! cut them apart) serving the DNS zone, 2 edges, a direct origin app and a tunnel origin app
//! behind 2 agents, with a route to each.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kokoa_tests::{try_wait_until_ok, Agent, Api, Cluster, Edge, OriginApp};
use serde_json::{json, Value};

use crate::faults::Mounts;
use crate::partition::Partitions;

/// The zone every replica answers for.
pub const ZONE: &str = "chaos.test";
/// The route to the direct origin.
pub const DIRECT_HOST: &str = "web.chaos.test";
/// The route to the tunnel origin.
pub const TUNNEL_HOST: &str = "home.chaos.test";
/// How long setting up may take at each step.
const SETUP_TIMEOUT: Duration = Duration::from_secs(90);

/// The replicas' API URLs the workload may use, kept current by the fault injector (a wiped
/// replica is replaced by a new member).
#[derive(Debug, Clone, Default)]
pub struct ApiUrls(Arc<RwLock<Vec<String>>>);

impl ApiUrls {
    pub fn get(&self) -> Vec<String> {
        self.0.read().map(|u| u.clone()).unwrap_or_default()
    }

    pub fn set(&self, urls: Vec<String>) {
        if let Ok(mut current) = self.0.write() {
            *current = urls;
        }
    }
}

/// Everything a run started.
#[derive(Debug)]
pub struct Deployment {
    /// First, so that tmpfs mounts go (lazily) before the cluster's directory is removed.
    pub mounts: Mounts,
    pub cluster: Cluster,
    pub edges: Vec<Edge>,
    pub agents: Vec<Agent>,
    pub direct_app: OriginApp,
    pub tunnel_app: OriginApp,
    pub direct_origin_id: String,
    pub partitions: Partitions,
    pub urls: ApiUrls,
    /// The settings object the register writes vary (only `dns_ttl` changes).
    pub settings: Value,
    /// Ids of replicas removed from the membership (wiped).
    pub removed: Vec<u64>,
}

/// The loopback address of replica `id` in this process: `127.77.N.id`, N from the process id,
/// so that two runs side by side do not share addresses.
pub fn replica_ip(id: u64) -> IpAddr {
    let run = (std::process::id() % 250) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 77, run, id.min(250) as u8))
}

impl Deployment {
    /// Starts everything and waits until both routes answer through both edges and every
    /// replica's DNS gives both edges.
    pub async fn start() -> Result<Deployment, String> {
        let ips: Vec<IpAddr> = (1..=3).map(replica_ip).collect();
        let cluster =
            Cluster::start_on(&ips, &["--dns-listen", "127.0.0.1:0", "--dns-zone", ZONE]).await;
        let admin = cluster.client(0);
        let settings = fast_health_checks(&admin).await?;

        let direct_app = OriginApp::start("web").await;
        let tunnel_app = OriginApp::start("home").await;
        let direct = created(
            admin
                .post_json("/api/v1/origins", &json!({"name": "web", "kind": "direct"}))
                .await,
        )?;
        let direct_origin_id = id_of(&direct)?;
        let tunnel_origin_id = cluster.add_tunnel_origin("home").await;
        for (host, origin, target) in [
            (DIRECT_HOST, &direct_origin_id, direct_app.target()),
            (TUNNEL_HOST, &tunnel_origin_id, tunnel_app.target()),
        ] {
            created(
                admin
                    .post_json(
                        "/api/v1/routes",
                        &json!({
                            "hostname": host,
                            "origin_id": origin,
                            "target": target,
                            "allow_http": true,
                            "rate_limit": {"per_second": 100_000, "burst": 100_000},
                        }),
                    )
                    .await,
            )?;
        }
        let mut edges = Vec::new();
        for name in ["edge-1", "edge-2"] {
            edges.push(cluster.start_edge(name).await);
        }
        let mut agents = Vec::new();
        for name in ["agent-1", "agent-2"] {
            agents.push(cluster.start_agent(name, &tunnel_origin_id).await);
        }
        let mut partitions = Partitions::new();
        partitions.ensure().map_err(|e| e.to_string())?;
        let urls = ApiUrls::default();
        urls.set(cluster.api_urls());
        let deployment = Deployment {
            mounts: Mounts::default(),
            cluster,
            edges,
            agents,
            direct_app,
            tunnel_app,
            direct_origin_id,
            partitions,
            urls,
            settings,
            removed: Vec::new(),
        };
        deployment.wait_serving().await?;
        Ok(deployment)
    }

    /// Waits until both hosts answer from their apps through every edge, and every running
    /// replica's DNS answers with every edge's IP.
    pub async fn wait_serving(&self) -> Result<(), String> {
        let http = crate::workload::http_client();
        for edge in &self.edges {
            for (host, app) in [
                (DIRECT_HOST, self.direct_app.name()),
                (TUNNEL_HOST, self.tunnel_app.name()),
            ] {
                let url = format!("http://{}/ready", edge.http_addr());
                try_until(&format!("{host} through {}", edge.name()), || async {
                    let answer = crate::workload::get_origin(&http, &url, Some(host)).await?;
                    if answer == app {
                        Ok(())
                    } else {
                        Err(format!("answered by {answer}"))
                    }
                })
                .await?;
            }
        }
        let want = self.edge_ips();
        try_until("every replica's DNS gives every edge", || async {
            for (id, addr) in self.dns_addrs() {
                let got = crate::dns::query_a(addr, DIRECT_HOST).await?;
                if got != want {
                    return Err(format!("replica {id} answers {got:?}, want {want:?}"));
                }
            }
            Ok(())
        })
        .await
    }

    /// The edges' IPs, sorted.
    pub fn edge_ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self.edges.iter().map(|e| e.ip()).collect();
        ips.sort();
        ips
    }

    /// (replica id, DNS address) of every replica whose process runs.
    pub fn dns_addrs(&self) -> Vec<(u64, std::net::SocketAddr)> {
        self.cluster
            .running()
            .into_iter()
            .filter_map(|i| {
                let r = self.cluster.replica(i);
                r.dns_addr().map(|a| (r.id(), a))
            })
            .collect()
    }

    /// The API URLs of the replicas that are members (running or not; a wiped one is gone).
    pub fn member_urls(&self) -> Vec<String> {
        (0..self.cluster.len())
            .filter(|&i| !self.removed.contains(&self.cluster.replica(i).id()))
            .map(|i| self.cluster.replica(i).api_url())
            .collect()
    }

    /// Waits until every running replica names the same leader and `voters` voters.
    pub async fn wait_voters(&self, voters: usize, timeout: Duration) -> Result<(), String> {
        try_wait_until_ok(
            &format!("one leader and {voters} voters"),
            timeout,
            || async {
                let leader = self.cluster.leader().await.ok_or("no agreed leader")?;
                let info = self.cluster.cluster_info(leader, true).await?;
                let have = kokoa_tests::voter_ids(&info).len();
                if have == voters {
                    Ok(())
                } else {
                    Err(format!("{have} voters: {info}"))
                }
            },
        )
        .await
    }

    /// The index of a running replica that every running replica names leader.
    pub async fn leader(&self) -> Result<usize, String> {
        try_until("a leader", || async {
            self.cluster.leader().await.ok_or("no agreed leader".into())
        })
        .await
    }
}

/// Health probes every second with a 1 s timeout, so that a failed edge leaves DNS quickly;
/// returns the settings object as stored.
async fn fast_health_checks(admin: &Api) -> Result<Value, String> {
    let current = admin
        .get("/api/v1/settings")
        .await
        .map_err(|e| format!("GET settings: {e}"))?;
    let mut body = current.json.clone();
    body["health_interval_secs"] = json!(1);
    body["health_timeout_secs"] = json!(1);
    try_until("PUT /api/v1/settings", || async {
        let r = admin
            .put_json("/api/v1/settings", &body)
            .await
            .map_err(|e| e.to_string())?;
        if r.is_success() {
            Ok(())
        } else {
            Err(format!("{} {}", r.status, r.json))
        }
    })
    .await?;
    Ok(body)
}

/// A 201's JSON, or why not.
fn created(answer: Result<kokoa_tests::ApiResponse, reqwest::Error>) -> Result<Value, String> {
    let answer = answer.map_err(|e| e.to_string())?;
    if answer.status.as_u16() == 201 {
        Ok(answer.json)
    } else {
        Err(format!("{} {}", answer.status, answer.json))
    }
}

fn id_of(json: &Value) -> Result<String, String> {
    json["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no id in {json}"))
}

/// Retries `check` until it succeeds, for up to the setup timeout.
pub async fn try_until<T, F, Fut>(what: &str, check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    try_wait_until_ok(what, SETUP_TIMEOUT, check).await
}
