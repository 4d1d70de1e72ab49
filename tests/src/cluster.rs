//! A cluster of replicas in one temporary directory, sharing a secret and an admin token.

use serde_json::Value;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use tempfile::TempDir;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::http_client;
use crate::{
    random_hex, wait_until_ok, Agent, AgentSpec, Api, Edge, EdgeSpec, Join, Replica, ReplicaSpec,
    StartError, CONVERGE_TIMEOUT,
};

/// At most this many clusters run at once in one test process (`KOKOA_TEST_CLUSTERS`, default:
/// the number of CPUs, at least 2), so parallel tests do not starve elections on small boxes.
fn cluster_slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let default = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2);
            let slots = std::env::var("KOKOA_TEST_CLUSTERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default);
            Arc::new(Semaphore::new(slots))
        })
        .clone()
}

/// Replicas `1..=n` (index `i` is id `i + 1`, plus any that joined later).
///
/// Dropping it kills every replica; when the thread is panicking (or `KOKOA_KEEP_TEST_DIRS` is
/// set) it keeps the temporary directory and prints its path, and each replica prints its log
/// tail on a panic.
#[derive(Debug)]
pub struct Cluster {
    replicas: Vec<Replica>,
    http: reqwest::Client,
    admin_token: String,
    secret: String,
    extra_args: Vec<String>,
    root: TempDir,
    _slot: OwnedSemaphorePermit,
}

impl Cluster {
    /// `n` replicas with static `--peers`, replica 1 with `--init`; returns once every replica
    /// names the same leader and `n` voters.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// [`Cluster::start`] with extra arguments for every replica (e.g. `--snapshot-every 50`).
    /// `n == 1` starts `--init` alone, without `--peers`.
    pub async fn start_with(n: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_replicas(n, &[], extra_args).await
    }

    /// [`Cluster::start_with`] with `ips.len()` replicas, replica `i` listening (API and peer
    /// RPC) on `ips[i]` instead of 127.0.0.1, so its peer connections come from that address
    /// too: give each its own loopback address (e.g. `127.77.0.1..=3`) and firewall rules can
    /// tell them apart. Replicas added later listen on 127.0.0.1 unless they join with
    /// [`Cluster::join_replica_on`].
    pub async fn start_on(ips: &[IpAddr], extra_args: &[&str]) -> Cluster {
        Cluster::start_replicas(ips.len(), ips, extra_args).await
    }

    /// `n` replicas, replica `i` on `ips[i]` when given (else 127.0.0.1).
    async fn start_replicas(n: usize, ips: &[IpAddr], extra_args: &[&str]) -> Cluster {
        assert!(n >= 1, "a cluster needs at least one replica");
        let slot = cluster_slots()
            .acquire_owned()
            .await
            .expect("cluster semaphore closed");
        let root = tempfile::Builder::new()
            .prefix("kokoa-test-")
            .tempdir()
            .expect("create temp dir");
        let mut cluster = Cluster {
            replicas: Vec::new(),
            http: http_client(),
            admin_token: format!("kokoa_{}", random_hex(24)),
            secret: random_hex(32),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            root,
            _slot: slot,
        };
        let mut specs: Vec<ReplicaSpec> = (1..=n as u64).map(|id| cluster.spec(id)).collect();
        for (spec, ip) in specs.iter_mut().zip(ips) {
            spec.ip = *ip;
        }
        if n > 1 {
            let peers = specs
                .iter()
                .map(|s| format!("{}={}", s.id, s.peer_listen()))
                .collect::<Vec<_>>()
                .join(",");
            for spec in &mut specs {
                spec.peers = Some(peers.clone());
            }
        }
        specs[0].init = true;
        // Launch every process first so they can find each other, then wait for each.
        cluster.replicas = specs.into_iter().map(Replica::launch).collect();
        for replica in &mut cluster.replicas {
            if let Err(e) = replica.wait_ready().await {
                panic!("{e}");
            }
        }
        cluster.wait_formed(n).await;
        cluster
    }

    /// One replica started with `--init` alone.
    pub async fn start_single() -> Cluster {
        Cluster::start_with(1, &[]).await
    }

    /// The spec for a replica of this cluster: its dir and logs under the root, fresh ports,
    /// the cluster secret and admin token in its environment, the cluster's extra arguments.
    pub fn spec(&self, id: u64) -> ReplicaSpec {
        let mut spec = ReplicaSpec::new(id, self.root.path());
        spec.extra_args = self.extra_args.clone();
        spec.env = vec![
            ("KOKOA_CLUSTER_SECRET".into(), self.secret.clone()),
            ("KOKOA_INIT_ADMIN_TOKEN".into(), self.admin_token.clone()),
        ];
        spec
    }

    /// The spec of a replica joining through `url` with `token`: no secret in its environment
    /// (the join token carries it), no `--init`, no `--peers`.
    pub fn joiner_spec(&self, id: u64, url: &str, token: &str) -> ReplicaSpec {
        let mut spec = self.spec(id);
        spec.env.retain(|(key, _)| key != "KOKOA_CLUSTER_SECRET");
        spec.join = Some(Join {
            url: url.to_string(),
            token: token.to_string(),
        });
        spec
    }

    /// Launches a joining replica without waiting and without adding it to the cluster.
    pub fn launch_joiner(&self, id: u64, url: &str, token: &str) -> Replica {
        Replica::launch(self.joiner_spec(id, url, token))
    }

    /// Starts a joining replica, waits until it is listening, adds it; returns its index.
    pub async fn join_replica(
        &mut self,
        id: u64,
        url: &str,
        token: &str,
    ) -> Result<usize, StartError> {
        let replica = Replica::start(self.joiner_spec(id, url, token)).await?;
        self.replicas.push(replica);
        Ok(self.replicas.len() - 1)
    }

    /// [`Cluster::join_replica`] with the new replica listening on `ip` (see
    /// [`Cluster::start_on`]).
    pub async fn join_replica_on(
        &mut self,
        id: u64,
        ip: IpAddr,
        url: &str,
        token: &str,
    ) -> Result<usize, StartError> {
        let mut spec = self.joiner_spec(id, url, token);
        spec.ip = ip;
        let replica = Replica::start(spec).await?;
        self.replicas.push(replica);
        Ok(self.replicas.len() - 1)
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }

    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    pub fn replica(&self, i: usize) -> &Replica {
        &self.replicas[i]
    }

    pub fn replica_mut(&mut self, i: usize) -> &mut Replica {
        &mut self.replicas[i]
    }

    /// The index of the replica with this id.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.replicas.iter().position(|r| r.id() == id)
    }

    /// Indices of replicas whose process is alive.
    pub fn running(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|&i| self.replicas[i].is_spawned())
            .collect()
    }

    /// An admin client for replica `i`.
    pub fn client(&self, i: usize) -> Api {
        self.client_with_token(i, Some(&self.admin_token))
    }

    /// A client for replica `i` with another token (or none).
    pub fn client_with_token(&self, i: usize, token: Option<&str>) -> Api {
        Api::with_http(self.http.clone(), &self.replicas[i].api_url(), token)
    }

    /// `GET /api/v1/cluster` on replica `i` (`stale`: the replica's local view).
    pub async fn cluster_info(&self, i: usize, stale: bool) -> Result<Value, String> {
        let path = if stale {
            "/api/v1/cluster?stale=true"
        } else {
            "/api/v1/cluster"
        };
        let response = self
            .client(i)
            .get(path)
            .await
            .map_err(|e| format!("replica {}: {e}", self.replicas[i].id()))?;
        if !response.status.is_success() {
            return Err(format!(
                "replica {}: {} {}",
                self.replicas[i].id(),
                response.status,
                response.json
            ));
        }
        Ok(response.json)
    }

    /// The leader's index if every running replica that answers names the same live leader.
    pub async fn leader(&self) -> Option<usize> {
        self.agreed_leader(None, None).await.ok()
    }

    /// Waits until every running replica (but `except`) names the same leader, which is running
    /// and is not `except`; returns its index.
    pub async fn wait_for_leader(&self, except: Option<usize>) -> usize {
        wait_until_ok("a leader all replicas agree on", CONVERGE_TIMEOUT, || {
            self.agreed_leader(except, None)
        })
        .await
    }

    /// Waits until every running replica names the same leader and `voters` voters.
    pub async fn wait_formed(&self, voters: usize) -> usize {
        wait_until_ok(
            &format!("a leader and {voters} voters on every replica"),
            CONVERGE_TIMEOUT,
            || self.agreed_leader(None, Some(voters)),
        )
        .await
    }

    async fn agreed_leader(
        &self,
        except: Option<usize>,
        voters: Option<usize>,
    ) -> Result<usize, String> {
        let asked: Vec<usize> = self
            .running()
            .into_iter()
            .filter(|&i| Some(i) != except)
            .collect();
        if asked.is_empty() {
            return Err("no running replica".into());
        }
        let mut leader: Option<u64> = None;
        for &i in &asked {
            let info = self.cluster_info(i, false).await?;
            let id = self.replicas[i].id();
            let named = info
                .get("leader_id")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("replica {id} knows no leader: {info}"))?;
            if let Some(voters) = voters {
                let count = voter_ids(&info).len();
                if count != voters {
                    return Err(format!(
                        "replica {id} sees {count} voters, want {voters}: {info}"
                    ));
                }
            }
            match leader {
                Some(l) if l != named => {
                    return Err(format!(
                        "replica {id} names leader {named}, another names {l}"
                    ))
                }
                _ => leader = Some(named),
            }
        }
        let leader = leader.expect("asked is not empty");
        let index = self
            .index_of(leader)
            .ok_or_else(|| format!("leader {leader} is not one of ours"))?;
        if Some(index) == except || !self.replicas[index].is_spawned() {
            return Err(format!("leader {leader} is excluded or not running"));
        }
        Ok(index)
    }

    /// Running replicas other than the current leader (waits for a leader first).
    pub async fn followers(&self) -> Vec<usize> {
        let leader = self.wait_for_leader(None).await;
        self.running()
            .into_iter()
            .filter(|&i| i != leader)
            .collect()
    }

    /// Waits until replica `i` has applied log index `index` (`applied_index` of its local
    /// `GET /api/v1/cluster?stale=true`).
    pub async fn wait_applied(&self, i: usize, index: u64) {
        let what = format!("replica {} to apply index {index}", self.replicas[i].id());
        wait_until_ok(&what, CONVERGE_TIMEOUT, || async move {
            let info = self.cluster_info(i, true).await?;
            let applied = info
                .get("applied_index")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("no applied_index in {info}"))?;
            if applied >= index {
                Ok(())
            } else {
                Err(format!("applied_index {applied}"))
            }
        })
        .await
    }

    /// The local state of replica `i` (`GET /api/v1/state?stale=true`) without the per-node
    /// field `applied_index`.
    pub async fn local_state(&self, i: usize) -> Result<Value, String> {
        let response = self
            .client(i)
            .get("/api/v1/state?stale=true")
            .await
            .map_err(|e| format!("replica {}: {e}", self.replicas[i].id()))?;
        if !response.status.is_success() {
            return Err(format!(
                "replica {}: {} {}",
                self.replicas[i].id(),
                response.status,
                response.json
            ));
        }
        let mut state = response.json;
        if let Some(object) = state.as_object_mut() {
            object.remove("applied_index");
        }
        Ok(state)
    }

    /// Waits until every running replica has applied `min_index` and all local states are
    /// equal; returns that state.
    pub async fn wait_states_equal(&self, min_index: u64) -> Value {
        for i in self.running() {
            self.wait_applied(i, min_index).await;
        }
        wait_until_ok("equal state on every replica", CONVERGE_TIMEOUT, || async {
            let mut first: Option<(u64, Value)> = None;
            for i in self.running() {
                let state = self.local_state(i).await?;
                let id = self.replicas[i].id();
                match &first {
                    None => first = Some((id, state)),
                    Some((first_id, first_state)) if *first_state != state => {
                        return Err(format!(
                            "replica {first_id}: {} / replica {id}: {}",
                            summarize_state(first_state),
                            summarize_state(&state)
                        ))
                    }
                    Some(_) => {}
                }
            }
            first
                .map(|(_, state)| state)
                .ok_or_else(|| "no running replica".into())
        })
        .await
    }

    /// Every replica's API URL, in index order (an edge's `--control`).
    pub fn api_urls(&self) -> Vec<String> {
        self.replicas.iter().map(Replica::api_url).collect()
    }

    /// `POST /api/v1/tokens {"role":"edge"}` through replica `via`: a bootstrap edge token.
    ///
    /// # Panics
    /// When the answer is not a 201 with a token.
    pub async fn edge_token(&self, via: usize) -> String {
        self.make_token(via, serde_json::json!({ "role": "edge" }))
            .await
    }

    /// `POST /api/v1/tokens {"role":"agent","origin_id":ORIGIN_ID}` through replica `via`: an
    /// agent token that registers agents of that origin.
    ///
    /// # Panics
    /// When the answer is not a 201 with a token.
    pub async fn agent_token(&self, via: usize, origin_id: &str) -> String {
        self.make_token(
            via,
            serde_json::json!({ "role": "agent", "origin_id": origin_id }),
        )
        .await
    }

    /// `POST /api/v1/tokens` with `body` through replica `via`; the token's secret.
    async fn make_token(&self, via: usize, body: Value) -> String {
        let what = format!(
            "POST /api/v1/tokens ({})",
            body["role"].as_str().unwrap_or_default()
        );
        let json = created(
            &what,
            self.client(via).post_json("/api/v1/tokens", &body).await,
        );
        json["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no token in {json}"))
            .to_string()
    }

    /// `POST /api/v1/origins {"name":NAME,"kind":"tunnel"}` through replica 0: a tunnel origin
    /// (reached through its agents); its id.
    ///
    /// # Panics
    /// When the answer is not a 201 with an id.
    pub async fn add_tunnel_origin(&self, name: &str) -> String {
        let what = format!("POST /api/v1/origins ({name})");
        let json = created(&what, self.client(0).create_origin(name).await);
        json["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no id in {json}"))
            .to_string()
    }

    /// The spec of agent `name` of origin `origin_id` in this cluster's directory, pulling from
    /// every replica, with a fresh agent token (made through replica `via`).
    pub async fn agent_spec(&self, name: &str, origin_id: &str, via: usize) -> AgentSpec {
        let token = self.agent_token(via, origin_id).await;
        AgentSpec::new(name, self.root(), self.api_urls(), &token)
    }

    /// Starts agent `name` of origin `origin_id` ([`Cluster::agent_spec`] through replica 0)
    /// and waits until its tunnel runs.
    ///
    /// # Panics
    /// When it does not start.
    pub async fn start_agent(&self, name: &str, origin_id: &str) -> Agent {
        let spec = self.agent_spec(name, origin_id, 0).await;
        Agent::start(spec).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The spec of edge `name` in this cluster's directory, pulling from every replica, with a
    /// fresh bootstrap token (made through replica `via`).
    pub async fn edge_spec(&self, name: &str, via: usize) -> EdgeSpec {
        let token = self.edge_token(via).await;
        EdgeSpec::new(name, self.root(), self.api_urls(), &token)
    }

    /// Starts edge `name` ([`Cluster::edge_spec`] through replica 0) and waits until it serves.
    ///
    /// # Panics
    /// When it does not start.
    pub async fn start_edge(&self, name: &str) -> Edge {
        let spec = self.edge_spec(name, 0).await;
        Edge::start(spec).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Keeps the cluster's directory (every process's data and log) after the cluster is
    /// dropped; its path.
    pub fn keep_dir(&mut self) -> &std::path::Path {
        self.root.disable_cleanup(true);
        self.root.path()
    }

    /// Prints every replica's log tail.
    pub fn dump_logs(&self) {
        for replica in &self.replicas {
            replica.dump_logs();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.root.disable_cleanup(true);
            eprintln!(
                "kept the failed test's directory: {}",
                self.root.path().display()
            );
        } else if std::env::var_os("KOKOA_KEEP_TEST_DIRS").is_some() {
            self.root.disable_cleanup(true);
            eprintln!("kept the test's directory: {}", self.root.path().display());
        }
    }
}

/// The JSON of a 201 answer to `what`.
///
/// # Panics
/// When the request failed or the answer is not a 201.
fn created(what: &str, answer: Result<crate::ApiResponse, reqwest::Error>) -> Value {
    let response = answer.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        response.status.as_u16(),
        201,
        "{what}: {} {}",
        response.status,
        response.json
    );
    response.json
}

/// The ids of the voters in a `GET /api/v1/cluster` answer.
pub fn voter_ids(info: &Value) -> Vec<u64> {
    info.get("members")
        .and_then(Value::as_array)
        .map(|members| {
            members
                .iter()
                .filter(|m| m.get("voter").and_then(Value::as_bool) == Some(true))
                .filter_map(|m| m.get("id").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default()
}

/// A short description of a state dump for error messages.
fn summarize_state(state: &Value) -> String {
    let count = |key: &str| state.get(key).and_then(Value::as_array).map_or(0, Vec::len);
    format!(
        "version {} origins {} routes {} tokens {} replicas {}",
        state.get("version").unwrap_or(&Value::Null),
        count("origins"),
        count("routes"),
        count("tokens"),
        count("replicas")
    )
}
