//! Edge health checks with real processes: the leader probes every edge's `/health`, a frozen
//! edge (SIGSTOP) turns unhealthy on every replica and comes back after good probes (SIGCONT),
//! only transitions are committed, a new leader takes the checks over, and every edge stopped
//! shows every edge unhealthy.
//!
//! Every replica also runs the built-in DNS, queried with kdig: a route hostname's A records
//! leave out the frozen edge on every replica within 15 s and take it back after it recovers,
//! every edge stopped answers with all of them (fail open), and while a new leader takes over
//! every replica gives the same answer at the same SOA serial (state version). A tunnel
//! hostname's A records also leave out a healthy edge that its origin's agent cannot reach, and
//! take it back once the agent reconnects; the other routes keep it, and when no healthy edge
//! reaches the origin the hostname answers with the healthy edges (fail open).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kokoa_tests::{free_port, wait_until_ok, Agent, Cluster, Edge};
use serde_json::{json, Value};

use crate::common::{items, retry_write};
use crate::dns::dns_addr;
use crate::dns_client::dig_at_serial;
use crate::fleet::{new_origin, new_route};
use crate::openapi::metrics;

/// The bound the issue sets on noticing a frozen edge (3 probes of 1 s with a 1 s timeout).
const NOTICE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the first verdicts (or a return after good probes) may take.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// What every replica logs when its checker commits a transition.
const TRANSITION_LOG: &str = "edge health changed";
/// What a replica logs when it becomes leader and starts checking.
const CHECKS_START_LOG: &str = "leading: health checks start";
/// The zone every replica serves (`--dns-zone`) and a route hostname inside it.
const ZONE: &str = "health.test";
const HOST: &str = "app.health.test";
/// A hostname of a tunnel origin in `ZONE`.
const TUNNEL_HOST: &str = "tunnel.health.test";
/// Time for an edge to see an agent connect or go, and for its report to be committed.
const TUNNEL_TIMEOUT: Duration = Duration::from_secs(60);

/// Probes every second with a 1 s timeout (settings through replica 0).
pub(crate) async fn fast_checks(cluster: &Cluster) {
    let admin = cluster.client(0);
    let current = admin.get("/api/v1/settings").await.expect("GET settings");
    assert_eq!(current.status.as_u16(), 200, "{}", current.json);
    let mut body = current.json.clone();
    body["health_interval_secs"] = json!(1);
    body["health_timeout_secs"] = json!(1);
    retry_write("PUT /api/v1/settings (fast health checks)", |_| {
        admin.put_json("/api/v1/settings", &body)
    })
    .await;
}

/// A cluster of three serving `ZONE` on DNS, with fast checks, a route for `HOST` and `n`
/// edges.
async fn start(n: usize) -> (Cluster, Vec<Edge>) {
    let cluster =
        Cluster::start_with(3, &["--dns-listen", "127.0.0.1:0", "--dns-zone", ZONE]).await;
    fast_checks(&cluster).await;
    let admin = cluster.client(0);
    let origin = new_origin(&admin, "home", "direct").await;
    let origin_id = origin["id"].as_str().expect("origin id");
    new_route(&admin, HOST, origin_id, "127.0.0.1:9").await;
    let mut edges = Vec::new();
    for i in 0..n {
        edges.push(cluster.start_edge(&format!("edge-{}", i + 1)).await);
    }
    (cluster, edges)
}

/// `GET /api/v1/edge-nodes` on replica `i`: edge id → the whole entry.
async fn edge_list(
    cluster: &Cluster,
    i: usize,
    stale: bool,
) -> Result<BTreeMap<String, Value>, String> {
    let path = if stale {
        "/api/v1/edge-nodes?stale=true"
    } else {
        "/api/v1/edge-nodes"
    };
    let response = cluster
        .client(i)
        .get(path)
        .await
        .map_err(|e| format!("replica {i}: {e}"))?;
    if response.status.as_u16() != 200 {
        return Err(format!(
            "replica {i}: {} {}",
            response.status, response.json
        ));
    }
    Ok(items(&response.json)
        .into_iter()
        .map(|e| (e["id"].as_str().unwrap_or_default().to_string(), e))
        .collect())
}

/// Waits until every running replica, with linearizable and stale reads, shows each edge's
/// health as `want` says (edge id → `healthy`/`unhealthy`); returns one replica's list.
async fn wait_health(
    cluster: &Cluster,
    want: &BTreeMap<String, &str>,
    timeout: Duration,
) -> BTreeMap<String, Value> {
    let what = format!("edge health {want:?} on every replica");
    wait_until_ok(&what, timeout, || async {
        let mut last = BTreeMap::new();
        for i in cluster.running() {
            for stale in [true, false] {
                let list = edge_list(cluster, i, stale).await?;
                let seen: BTreeMap<String, &str> = list
                    .iter()
                    .map(|(id, e)| (id.clone(), e["health"].as_str().unwrap_or("?")))
                    .collect();
                if &seen != want {
                    return Err(format!("replica {i} (stale={stale}): {seen:?}"));
                }
                last = list;
            }
        }
        Ok(last)
    })
    .await
}

/// Edge ids → `health` for every edge, `sick` ones unhealthy.
fn expect(edges: &[Edge], sick: &[usize]) -> BTreeMap<String, &'static str> {
    edges
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let health = if sick.contains(&i) {
                "unhealthy"
            } else {
                "healthy"
            };
            (e.id().to_string(), health)
        })
        .collect()
}

/// The public IPs of `edges[which]`, sorted as [`Dig::data`] sorts them.
///
/// [`Dig::data`]: crate::dns_client::Dig::data
fn ips(edges: &[Edge], which: &[usize]) -> Vec<String> {
    let mut out: Vec<String> = which.iter().map(|&i| edges[i].ip().to_string()).collect();
    out.sort();
    out
}

/// Every running replica's DNS answer for a hostname's A records: replica → (SOA serial,
/// sorted addresses).
type Round = BTreeMap<usize, (u64, Vec<String>)>;

/// One kdig round for `host` over every running replica; `Err` when one gives no usable answer
/// (yet).
async fn dns_round(cluster: &Cluster, host: &str) -> Result<Round, String> {
    let mut round = Round::new();
    for i in cluster.running() {
        let (serial, answer) = dig_at_serial(dns_addr(cluster, i), ZONE, host, "A", &[]).await?;
        if answer.status != "NOERROR" || !answer.has_flag("aa") {
            return Err(format!("replica {i}: {host} A: {}", answer.raw));
        }
        round.insert(i, (serial, answer.data("A")));
    }
    Ok(round)
}

/// Waits until every running replica answers `HOST` A with exactly `want`, at a serial of at
/// least `min_serial`; returns the time it took and the last round.
async fn wait_dns(
    cluster: &Cluster,
    want: &[String],
    min_serial: u64,
    timeout: Duration,
) -> (Duration, Round) {
    wait_host_dns(cluster, HOST, want, min_serial, timeout).await
}

/// [`wait_dns`] for `host`.
async fn wait_host_dns(
    cluster: &Cluster,
    host: &str,
    want: &[String],
    min_serial: u64,
    timeout: Duration,
) -> (Duration, Round) {
    let started = Instant::now();
    let what = format!("{host} A = {want:?} (serial >= {min_serial}) on every replica");
    let round = wait_until_ok(&what, timeout, || async {
        let round = dns_round(cluster, host).await?;
        for (i, (serial, got)) in &round {
            if got != want || *serial < min_serial {
                return Err(format!("replica {i}: serial {serial}: {got:?}"));
            }
        }
        Ok(round)
    })
    .await;
    (started.elapsed(), round)
}

/// The highest state version (SOA serial) any running replica has applied.
async fn state_version(cluster: &Cluster) -> u64 {
    let mut version = 0;
    for i in cluster.running() {
        let state = cluster
            .local_state(i)
            .await
            .unwrap_or_else(|e| panic!("state of replica {i}: {e}"));
        version = version.max(state["version"].as_u64().expect("a state version"));
    }
    version
}

/// Every answer seen, by SOA serial: replicas at the same state version must answer alike.
#[derive(Default)]
struct History {
    /// serial → (the answer, the replicas that gave it).
    by_serial: BTreeMap<u64, (Vec<String>, BTreeSet<usize>)>,
    rounds: usize,
}

impl History {
    /// Records a round; panics when `allowed` rejects an answer or two replicas answered
    /// differently at the same serial.
    fn record(&mut self, round: &Round, allowed: &[&[String]]) {
        self.rounds += 1;
        for (&i, (serial, got)) in round {
            assert!(
                allowed.iter().any(|a| a == got),
                "replica {i} answered {got:?} at serial {serial}; allowed: {allowed:?}"
            );
            let (first, seen) = self
                .by_serial
                .entry(*serial)
                .or_insert_with(|| (got.clone(), BTreeSet::new()));
            assert_eq!(
                first, got,
                "replica {i} and replicas {seen:?} answered differently at serial {serial}"
            );
            seen.insert(i);
        }
    }

    /// How many serials were answered by more than one replica (what was compared).
    fn shared(&self) -> usize {
        self.by_serial.values().filter(|(_, r)| r.len() > 1).count()
    }
}

/// Samples every running replica's DNS, recording each round in `history` (every answer one
/// of `allowed`), until `done` accepts a round and at least `at_least` has passed.
///
/// # Panics
/// When `timeout` passes first, naming `what`.
async fn watch(
    cluster: &Cluster,
    history: &mut History,
    allowed: &[&[String]],
    what: &str,
    at_least: Duration,
    timeout: Duration,
    done: impl Fn(&Round) -> Result<(), String>,
) -> Round {
    let started = Instant::now();
    loop {
        let last = match dns_round(cluster, HOST).await {
            Ok(round) => {
                history.record(&round, allowed);
                match done(&round) {
                    Ok(()) if started.elapsed() >= at_least => return round,
                    Ok(()) => "not long enough yet".to_string(),
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every replica of `round` at the same serial with the answer `want`.
fn converged(round: &Round, want: &[String]) -> Result<(), String> {
    let serials: BTreeSet<u64> = round.values().map(|(s, _)| *s).collect();
    if serials.len() != 1 || round.values().any(|(_, got)| got != want) {
        return Err(format!("not converged on {want:?}: {round:?}"));
    }
    Ok(())
}

/// How many transitions replica `i`'s checker committed (its log lines).
fn transitions(cluster: &Cluster, i: usize) -> usize {
    cluster.replica(i).log().matches(TRANSITION_LOG).count()
}

/// Health-check rounds run so far, summed over the replicas (`/metrics`).
async fn rounds(cluster: &Cluster) -> Result<u64, String> {
    let mut total = 0;
    for i in 0..cluster.len() {
        let text = metrics(&cluster.client(i)).await?;
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("kokoa_health_rounds_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no kokoa_health_rounds_total on replica {i}"))?;
    }
    Ok(total)
}

/// Waits until the leader has run `n` more health-check rounds.
async fn wait_rounds(cluster: &Cluster, n: u64) {
    let start = rounds(cluster).await.expect("read the health-check rounds");
    wait_until_ok("more health-check rounds", SETTLE_TIMEOUT, || async {
        let done = rounds(cluster).await?.saturating_sub(start);
        if done >= n {
            Ok(())
        } else {
            Err(format!("{done} of {n} rounds"))
        }
    })
    .await;
}

fn all_transitions(cluster: &Cluster) -> usize {
    (0..cluster.len()).map(|i| transitions(cluster, i)).sum()
}

/// Every non-empty subset of the edges' IPs (what DNS may answer while verdicts change).
fn any_nonempty(edges: &[Edge]) -> Vec<Vec<String>> {
    (1..1usize << edges.len())
        .map(|mask| {
            let which: Vec<usize> = (0..edges.len()).filter(|i| mask & (1 << i) != 0).collect();
            ips(edges, &which)
        })
        .collect()
}

#[tokio::test]
async fn a_frozen_edge_turns_unhealthy_everywhere_and_comes_back() {
    let (cluster, edges) = start(3).await;
    let all = ips(&edges, &[0, 1, 2]);
    wait_health(&cluster, &expect(&edges, &[]), SETTLE_TIMEOUT).await;
    wait_dns(&cluster, &all, 0, SETTLE_TIMEOUT).await;
    // Only transitions are written: one per edge so far, however many probes ran.
    wait_rounds(&cluster, 3).await;
    assert_eq!(
        all_transitions(&cluster),
        3,
        "one commit per edge becoming healthy"
    );

    // Within 15 s of SIGSTOP no replica answers with the frozen edge's address.
    let stopped = Instant::now();
    edges[1].sigstop();
    let rest = ips(&edges, &[0, 2]);
    wait_dns(&cluster, &rest, 0, NOTICE_TIMEOUT).await;
    let out_of_dns = stopped.elapsed();
    let list = wait_health(&cluster, &expect(&edges, &[1]), NOTICE_TIMEOUT).await;
    eprintln!(
        "the frozen edge was out of every replica's DNS after {out_of_dns:?}, \
         unhealthy in every API after {:?}",
        stopped.elapsed()
    );
    assert!(out_of_dns <= NOTICE_TIMEOUT, "took {out_of_dns:?}");
    let sick = &list[edges[1].id()];
    let reason = sick["health_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("3 failed probes"), "reason: {sick}");
    assert!(sick["health_since"].as_u64().is_some(), "since: {sick}");
    assert_eq!(list[edges[0].id()]["health_reason"], "2 good probes");

    // SIGCONT: 2 good probes commit its return, and every replica answers with it again.
    let resumed = Instant::now();
    edges[1].sigcont();
    let list = wait_health(&cluster, &expect(&edges, &[]), NOTICE_TIMEOUT).await;
    assert_eq!(list[edges[1].id()]["health_reason"], "2 good probes");
    let version = state_version(&cluster).await;
    wait_dns(&cluster, &all, version, NOTICE_TIMEOUT).await;
    eprintln!(
        "the resumed edge was back in every replica's DNS after {:?}",
        resumed.elapsed()
    );
    wait_rounds(&cluster, 3).await;
    assert_eq!(
        all_transitions(&cluster),
        5,
        "down and up again: two more commits"
    );
}

#[tokio::test]
async fn every_edge_stopped_is_unhealthy_and_all_come_back() {
    let (cluster, edges) = start(3).await;
    let all = ips(&edges, &[0, 1, 2]);
    wait_health(&cluster, &expect(&edges, &[]), SETTLE_TIMEOUT).await;
    wait_dns(&cluster, &all, 0, SETTLE_TIMEOUT).await;
    for edge in &edges {
        edge.sigstop();
    }
    wait_health(&cluster, &expect(&edges, &[0, 1, 2]), NOTICE_TIMEOUT).await;
    // Fail open: once every replica has applied the last verdict, all the addresses come back;
    // no replica ever answers with none while the verdicts land one by one.
    let version = state_version(&cluster).await;
    let subsets = any_nonempty(&edges);
    let allowed: Vec<&[String]> = subsets.iter().map(Vec::as_slice).collect();
    let mut history = History::default();
    watch(
        &cluster,
        &mut history,
        &allowed,
        "every edge's address at the all-unhealthy version on every replica",
        Duration::ZERO,
        SETTLE_TIMEOUT,
        |round| {
            converged(round, &all)?;
            match round.values().next() {
                Some((serial, _)) if *serial >= version => Ok(()),
                other => Err(format!("serial {other:?} below {version}")),
            }
        },
    )
    .await;

    for edge in &edges {
        edge.sigcont();
    }
    wait_health(&cluster, &expect(&edges, &[]), NOTICE_TIMEOUT).await;
    let version = state_version(&cluster).await;
    wait_dns(&cluster, &all, version, NOTICE_TIMEOUT).await;
}

#[tokio::test]
async fn a_new_leader_keeps_checking() {
    let (mut cluster, edges) = start(3).await;
    let all = ips(&edges, &[0, 1, 2]);
    let rest = ips(&edges, &[1, 2]);
    wait_health(&cluster, &expect(&edges, &[]), SETTLE_TIMEOUT).await;
    wait_dns(&cluster, &all, 0, SETTLE_TIMEOUT).await;
    edges[0].sigstop();
    wait_health(&cluster, &expect(&edges, &[0]), NOTICE_TIMEOUT).await;
    wait_dns(&cluster, &rest, 0, NOTICE_TIMEOUT).await;

    let old = cluster.wait_for_leader(None).await;
    let starts =
        |cluster: &Cluster, i: usize| cluster.replica(i).log().matches(CHECKS_START_LOG).count();
    let started_before: Vec<usize> = (0..cluster.len()).map(|i| starts(&cluster, i)).collect();
    let committed_before: Vec<usize> = (0..cluster.len())
        .map(|i| transitions(&cluster, i))
        .collect();
    cluster.replica_mut(old).kill9();
    // Through the election and after, every surviving replica keeps the frozen edge out of DNS
    // and answers alike at each serial; a new leader starts checking.
    let mut history = History::default();
    watch(
        &cluster,
        &mut history,
        &[&rest],
        "a new leader to start checking",
        Duration::ZERO,
        SETTLE_TIMEOUT,
        |_| {
            cluster
                .running()
                .into_iter()
                .any(|i| starts(&cluster, i) > started_before[i])
                .then_some(())
                .ok_or_else(|| format!("no survivor logged {CHECKS_START_LOG:?} yet"))
        },
    )
    .await;
    let new = cluster.wait_for_leader(Some(old)).await;
    assert!(
        starts(&cluster, new) > started_before[new],
        "the new leader {new} did not start checking"
    );
    // It starts counting afresh but commits no change: the edge is still frozen.
    let before = committed_before[new];
    // Long enough for 3 failed probes at 1 s: a wrong verdict would have landed by then.
    watch(
        &cluster,
        &mut history,
        &[&rest],
        "a few probe rounds of the new leader",
        Duration::from_secs(4),
        SETTLE_TIMEOUT,
        |_| Ok(()),
    )
    .await;
    wait_health(&cluster, &expect(&edges, &[0]), NOTICE_TIMEOUT).await;
    assert_eq!(
        transitions(&cluster, new),
        before,
        "the new leader re-committed a verdict"
    );

    // SIGCONT: the new leader commits the return; every replica answers with it again.
    edges[0].sigcont();
    let round = watch(
        &cluster,
        &mut history,
        &[&rest, &all],
        "every surviving replica to answer every edge again at one serial",
        Duration::ZERO,
        NOTICE_TIMEOUT,
        |round| converged(round, &all),
    )
    .await;
    wait_health(&cluster, &expect(&edges, &[]), NOTICE_TIMEOUT).await;
    let log = cluster.replica(new).log();
    assert!(
        log.lines().any(|l| l.contains(TRANSITION_LOG)
            && l.contains(edges[0].id())
            && l.contains("healthy=true")),
        "the new leader did not commit the edge's return"
    );
    assert!(
        history.shared() > 0,
        "no serial was answered by two replicas: nothing compared"
    );
    eprintln!(
        "{} DNS rounds over {} serials ({} answered by several replicas); last {round:?}",
        history.rounds,
        history.by_serial.len(),
        history.shared()
    );
}

/// Waits until every running replica, with linearizable and stale reads, shows the route of
/// `host` with origin `status`, unreachable from the edges `from` (in any order).
async fn wait_origin_status(cluster: &Cluster, host: &str, status: &str, from: &[&str]) {
    let mut want = from.to_vec();
    want.sort_unstable();
    let what = format!("{host}'s origin {status} (not from {want:?}) on every replica");
    wait_until_ok(&what, TUNNEL_TIMEOUT, || async {
        for i in cluster.running() {
            for query in ["", "?stale=true"] {
                let path = format!("/api/v1/routes/{host}{query}");
                let got = cluster
                    .client(i)
                    .get(&path)
                    .await
                    .map_err(|e| format!("replica {i} {path}: {e}"))?;
                let mut seen: Vec<&str> = got.json["unreachable_from"]
                    .as_array()
                    .map(|ids| ids.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                seen.sort_unstable();
                if got.status.as_u16() != 200 || got.json["origin_status"] != status || seen != want
                {
                    return Err(format!("replica {i} {path}: {} {}", got.status, got.json));
                }
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_hostname_leaves_out_the_edges_its_agent_cannot_reach() {
    let (cluster, mut edges) = start(2).await;
    let origin_id = cluster.add_tunnel_origin("tunnelled").await;
    new_route(&cluster.client(0), TUNNEL_HOST, &origin_id, "127.0.0.1:9").await;
    // The agent's WireGuard port is chosen here, so that a restart can move it for sure.
    let mut agent_spec = cluster.agent_spec("agent-1", &origin_id, 0).await;
    agent_spec.wg_listen.set_port(free_port());
    let mut agent = Agent::start(agent_spec.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (one, two) = (edges[0].id().to_string(), edges[1].id().to_string());
    let both = ips(&edges, &[0, 1]);
    let only_one = ips(&edges, &[0]);
    wait_health(&cluster, &expect(&edges, &[]), SETTLE_TIMEOUT).await;
    wait_origin_status(&cluster, TUNNEL_HOST, "reachable", &[]).await;
    let version = state_version(&cluster).await;
    wait_host_dns(&cluster, TUNNEL_HOST, &both, version, SETTLE_TIMEOUT).await;

    // Edge 2 comes back where the agent cannot reach it: it listens for WireGuard on another
    // port than the one it registered (which the agent dials), and the agent restarted on
    // another address while edge 2 was down (so edge 2 cannot greet it at its last one). Edge 2
    // is healthy but reports the tunnel origin unreachable: the tunnel hostname leaves it out,
    // the other route keeps it.
    let registered = edges[1].spec().clone();
    edges[1].kill9();
    agent.kill9();
    agent_spec.wg_listen.set_port(free_port());
    agent = Agent::start(agent_spec.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut elsewhere = registered.clone();
    elsewhere.wg_port = free_port();
    edges[1] = Edge::start(elsewhere)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let restarted = Instant::now();
    wait_health(&cluster, &expect(&edges, &[]), SETTLE_TIMEOUT).await;
    wait_origin_status(&cluster, TUNNEL_HOST, "degraded", &[&two]).await;
    let version = state_version(&cluster).await;
    wait_host_dns(&cluster, TUNNEL_HOST, &only_one, version, SETTLE_TIMEOUT).await;
    eprintln!(
        "edge 2 was out of the tunnel hostname's answer {:?} after it restarted",
        restarted.elapsed()
    );
    wait_host_dns(&cluster, HOST, &both, version, SETTLE_TIMEOUT).await;

    // The agent dies: no healthy edge reaches the origin, so the tunnel hostname answers with
    // every healthy edge (fail open).
    agent.kill9();
    wait_origin_status(&cluster, TUNNEL_HOST, "unreachable", &[&one, &two]).await;
    let version = state_version(&cluster).await;
    wait_host_dns(&cluster, TUNNEL_HOST, &both, version, SETTLE_TIMEOUT).await;

    // It comes back, and reaches edge 1 only.
    agent.restart().await.unwrap_or_else(|e| panic!("{e}"));
    wait_origin_status(&cluster, TUNNEL_HOST, "degraded", &[&two]).await;
    let version = state_version(&cluster).await;
    wait_host_dns(&cluster, TUNNEL_HOST, &only_one, version, SETTLE_TIMEOUT).await;

    // Edge 2 listens on its registered port again: the agent reconnects by itself, and edge 2
    // is back in the tunnel hostname's answer.
    edges[1].kill9();
    edges[1] = Edge::start(registered)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let fixed = Instant::now();
    wait_health(&cluster, &expect(&edges, &[]), SETTLE_TIMEOUT).await;
    wait_origin_status(&cluster, TUNNEL_HOST, "reachable", &[]).await;
    let version = state_version(&cluster).await;
    wait_host_dns(&cluster, TUNNEL_HOST, &both, version, SETTLE_TIMEOUT).await;
    eprintln!(
        "edge 2 was back in the tunnel hostname's answer {:?} after it listened on its port again",
        fixed.elapsed()
    );
    wait_host_dns(&cluster, HOST, &both, version, SETTLE_TIMEOUT).await;
}
