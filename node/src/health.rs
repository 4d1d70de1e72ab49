//! The edge health checker: a task on every replica that acts only while this replica leads.
//!
//! Every `health_interval_secs` the leader probes each registered edge's
//! `http://PUBLIC_IP:HTTP_PORT/health` concurrently (`health_timeout_secs` each; a 2xx with a
//! JSON body is a good probe). [`Tracker`] counts consecutive results: `health_fail_after`
//! failures make an edge unhealthy, `health_pass_after` successes healthy again, and an edge
//! that has not pulled its config for `edge_stale_secs` is unhealthy at once. Only verdicts that
//! differ from the committed [`EdgeHealth`] are written (never a write per probe). A new leader
//! starts counting afresh but compares with the committed state, so it commits real changes only.
//!
//! A good probe also reads the edge's report of its origins (tunnel origins without a connected
//! agent, direct origins whose last dial failed); when that set differs from the committed one of
//! a healthy edge, it is committed too, so the API and UI can mark routes whose origin the edges
//! cannot reach, and the DNS leaves those edges out of the answers of tunnel origins' routes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kokoa_edge::health::HealthReport;
use kokoa_raft::Command;
use kokoa_store::{EdgeHealth, EdgeNode, Settings};
use kokoa_web::auth::unix_now;
use kokoa_web::ApiContext;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a replica that does not lead looks whether it has become the leader.
const FOLLOWER_POLL: Duration = Duration::from_secs(1);
/// Most probes in flight at once.
const MAX_CONCURRENT_PROBES: usize = 256;
/// Most bytes of a `/health` body read.
const MAX_BODY: usize = 64 * 1024;

/// The thresholds of [`Tracker`], from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub fail_after: u32,
    pub pass_after: u32,
}

impl From<&Settings> for Thresholds {
    fn from(s: &Settings) -> Self {
        Thresholds {
            fail_after: s.health_fail_after.max(1),
            pass_after: s.health_pass_after.max(1),
        }
    }
}

/// What one round found about an edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `/health` answered 2xx with JSON.
    Up,
    /// It did not; why.
    Down(String),
    /// The edge has not pulled its config for too long (not probed).
    Stale,
}

/// A verdict to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub healthy: bool,
    pub reason: String,
}

#[derive(Debug, Default)]
struct Counts {
    fails: u32,
    passes: u32,
}

/// Consecutive probe results per edge: a pure state machine, without clocks or I/O.
#[derive(Debug, Default)]
pub struct Tracker {
    counts: HashMap<String, Counts>,
}

impl Tracker {
    /// Notes `probe` for `edge`; returns the verdict to commit when the counts call for one
    /// that differs from `committed` (the last committed `healthy`, `None` when never set).
    /// A verdict not committed (a failed write) is returned again on the next probe.
    pub fn observe(
        &mut self,
        edge: &str,
        probe: Probe,
        committed: Option<bool>,
        t: Thresholds,
    ) -> Option<Verdict> {
        let counts = self.counts.entry(edge.to_string()).or_default();
        let verdict = match probe {
            Probe::Up => {
                counts.fails = 0;
                counts.passes = counts.passes.saturating_add(1);
                (counts.passes >= t.pass_after).then(|| Verdict {
                    healthy: true,
                    reason: format!("{} good probes", t.pass_after),
                })
            }
            Probe::Down(why) => {
                counts.passes = 0;
                counts.fails = counts.fails.saturating_add(1);
                (counts.fails >= t.fail_after).then(|| Verdict {
                    healthy: false,
                    reason: format!("{} failed probes: {why}", t.fail_after),
                })
            }
            Probe::Stale => {
                counts.passes = 0;
                Some(Verdict {
                    healthy: false,
                    reason: "stopped pulling config".into(),
                })
            }
        };
        verdict.filter(|v| committed != Some(v.healthy))
    }

    /// Forgets edges for which `keep` is false (removed edges).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.counts.retain(|id, _| keep(id));
    }

    /// Forgets everything (leadership lost: the next term starts afresh).
    pub fn clear(&mut self) {
        self.counts.clear();
    }
}

/// Runs the checker until `shutdown`: idle on followers, probing on the leader.
pub async fn run(ctx: ApiContext, shutdown: CancellationToken) {
    let http = match reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the health checker's HTTP client");
            return;
        }
    };
    let mut tracker = Tracker::default();
    let mut leading_term = None;
    loop {
        let started = Instant::now();
        let status = ctx.node.status();
        let mut pause = FOLLOWER_POLL;
        if status.state == "leader" && status.leader_id == Some(status.node_id) {
            if leading_term != Some(status.term) {
                tracker.clear();
                leading_term = Some(status.term);
                tracing::info!(term = status.term, "leading: health checks start");
            }
            match round(&ctx, &http, &mut tracker).await {
                Ok(interval) => pause = interval,
                Err(e) => tracing::debug!(error = %e.message, "health round failed"),
            }
        } else if leading_term.take().is_some() {
            tracker.clear();
            tracing::info!("no longer leading: health checks stop");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(started + pause) => {}
        }
    }
}

/// One round: probe every edge, commit the transitions; returns the interval to the next.
async fn round(
    ctx: &ApiContext,
    http: &reqwest::Client,
    tracker: &mut Tracker,
) -> Result<Duration, kokoa_web::ApiError> {
    let (edges, health, seen, settings) = ctx
        .read_local(|r| {
            Ok((
                r.edge_nodes()?,
                r.edge_health()?,
                r.last_seen()?,
                r.settings()?,
            ))
        })
        .await?;
    let interval = Duration::from_secs(settings.health_interval_secs.max(1).into());
    let timeout = Duration::from_secs(settings.health_timeout_secs.max(1).into());
    let committed: HashMap<String, EdgeHealth> =
        health.into_iter().map(|h| (h.edge_id.clone(), h)).collect();
    let seen: HashMap<String, u64> = seen.into_iter().collect();
    tracker.retain(|id| edges.iter().any(|e| e.id == id));

    let now = unix_now();
    let stale_after = u64::from(settings.edge_stale_secs);
    let limit = Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES));
    let mut probes = JoinSet::new();
    let mut results = Vec::with_capacity(edges.len());
    for edge in &edges {
        let pulled = kokoa_web::seen::last_seen(ctx, &seen, &edge.id).unwrap_or(edge.created_at);
        if now.saturating_sub(pulled) > stale_after {
            results.push((edge.id.clone(), Probe::Stale, None));
            continue;
        }
        let (http, limit, edge) = (http.clone(), limit.clone(), edge.clone());
        probes.spawn(async move {
            let _permit = limit.acquire_owned().await;
            match probe(&http, &edge, timeout).await {
                Ok(unreachable) => (edge.id, Probe::Up, unreachable),
                Err(why) => (edge.id, Probe::Down(why), None),
            }
        });
    }
    while let Some(done) = probes.join_next().await {
        match done {
            Ok(result) => results.push(result),
            Err(e) => tracing::warn!(error = %e, "a health probe task failed"),
        }
    }

    let thresholds = Thresholds::from(&settings);
    for (edge_id, probe, reported) in results {
        tracing::trace!(edge = %edge_id, ?probe, ?reported, "probed");
        let current = committed.get(&edge_id);
        let verdict = tracker.observe(&edge_id, probe, current.map(|h| h.healthy), thresholds);
        if let Some(next) = next_health(&edge_id, current, verdict, reported) {
            commit(ctx, next).await;
        }
    }
    ctx.metrics.health_round_done();
    Ok(interval)
}

/// What to commit about an edge after a probe, if anything: a `verdict` (a health transition,
/// with the origins it `reported`, else the committed ones), or for a healthy edge whose
/// report's unreachable origins differ from the committed ones, just those.
fn next_health(
    edge_id: &str,
    current: Option<&EdgeHealth>,
    verdict: Option<Verdict>,
    reported: Option<Vec<String>>,
) -> Option<EdgeHealth> {
    let committed_origins = || {
        current
            .map(|h| h.unreachable_origins.clone())
            .unwrap_or_default()
    };
    match (verdict, current) {
        (Some(v), _) => Some(EdgeHealth {
            edge_id: edge_id.to_string(),
            healthy: v.healthy,
            since: unix_now(),
            reason: v.reason,
            unreachable_origins: reported.unwrap_or_else(committed_origins),
        }),
        (None, Some(h)) if h.healthy => reported
            .filter(|origins| *origins != h.unreachable_origins)
            .map(|origins| EdgeHealth {
                unreachable_origins: origins,
                ..h.clone()
            }),
        (None, _) => None,
    }
}

/// Commits one change, unless this replica no longer leads (a deposed leader's view of the
/// edges is not the cluster's).
async fn commit(ctx: &ApiContext, health: EdgeHealth) {
    let status = ctx.node.status();
    if status.leader_id != Some(status.node_id) {
        return;
    }
    tracing::info!(
        edge = %health.edge_id,
        healthy = health.healthy,
        reason = %health.reason,
        unreachable_origins = ?health.unreachable_origins,
        "edge health changed"
    );
    let edge_id = health.edge_id.clone();
    if let Err(e) = ctx.write(Command::SetEdgeHealth(health)).await {
        // Retried on the next round (the counts still call for it); a removed edge is dropped.
        tracing::debug!(edge = %edge_id, error = %e.message, "cannot commit edge health");
    }
}

/// `GET http://PUBLIC_IP:HTTP_PORT/health` with the IP as Host, within `timeout`. A good probe
/// gives the report's unreachable origins (`None` when the JSON is not a report this version
/// reads, such as an older edge's).
async fn probe(
    http: &reqwest::Client,
    edge: &EdgeNode,
    timeout: Duration,
) -> Result<Option<Vec<String>>, String> {
    let ip: IpAddr = edge
        .public_ip
        .parse()
        .map_err(|_| format!("bad public IP {:?}", edge.public_ip))?;
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let url = format!("http://{}/health", SocketAddr::new(ip, edge.http_port));
    let attempt = async {
        let mut resp = http
            .get(&url)
            .header(reqwest::header::HOST, host)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err("body too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        let json = serde_json::from_slice::<serde_json::Value>(&body)
            .map_err(|_| "the answer is not JSON".to_string())?;
        Ok(serde_json::from_value::<HealthReport>(json)
            .ok()
            .map(|report| report.unreachable_origins()))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())))
}

/// A short reason for a failed request: the innermost cause (`Connection refused`, ...).
fn describe(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    if e.is_connect() {
        format!("cannot connect: {text}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        fail_after: 3,
        pass_after: 2,
    };

    fn down() -> Probe {
        Probe::Down("refused".into())
    }

    #[test]
    fn a_new_edge_becomes_healthy_after_enough_good_probes() {
        let mut t = Tracker::default();
        assert_eq!(t.observe("e", Probe::Up, None, T), None);
        let v = t.observe("e", Probe::Up, None, T).expect("a verdict");
        assert!(v.healthy);
        assert_eq!(v.reason, "2 good probes");
        // Committed: more good probes change nothing.
        assert_eq!(t.observe("e", Probe::Up, Some(true), T), None);
    }

    #[test]
    fn three_consecutive_failures_make_it_unhealthy() {
        let mut t = Tracker::default();
        assert_eq!(t.observe("e", down(), Some(true), T), None);
        assert_eq!(t.observe("e", down(), Some(true), T), None);
        let v = t.observe("e", down(), Some(true), T).expect("a verdict");
        assert!(!v.healthy);
        assert_eq!(v.reason, "3 failed probes: refused");
        assert_eq!(t.observe("e", down(), Some(false), T), None);
    }

    #[test]
    fn a_good_probe_resets_the_failures() {
        let mut t = Tracker::default();
        for _ in 0..5 {
            assert_eq!(t.observe("e", down(), Some(true), T), None);
            assert_eq!(t.observe("e", down(), Some(true), T), None);
            assert_eq!(t.observe("e", Probe::Up, Some(true), T), None);
        }
    }

    #[test]
    fn a_failure_resets_the_successes() {
        let mut t = Tracker::default();
        for _ in 0..5 {
            assert_eq!(t.observe("e", Probe::Up, Some(false), T), None);
            assert_eq!(t.observe("e", down(), Some(false), T), None);
        }
        assert_eq!(t.observe("e", Probe::Up, Some(false), T), None);
        assert!(t
            .observe("e", Probe::Up, Some(false), T)
            .is_some_and(|v| v.healthy));
    }

    #[test]
    fn an_uncommitted_verdict_is_asked_for_again() {
        let mut t = Tracker::default();
        for _ in 0..3 {
            t.observe("e", down(), Some(true), T);
        }
        // The write failed: the committed state still says healthy.
        assert!(t
            .observe("e", down(), Some(true), T)
            .is_some_and(|v| !v.healthy));
    }

    #[test]
    fn a_stale_edge_is_unhealthy_at_once_and_needs_good_probes_after() {
        let mut t = Tracker::default();
        t.observe("e", Probe::Up, None, T);
        let v = t
            .observe("e", Probe::Stale, Some(true), T)
            .expect("a verdict");
        assert!(!v.healthy);
        assert_eq!(v.reason, "stopped pulling config");
        assert_eq!(t.observe("e", Probe::Stale, Some(false), T), None);
        assert_eq!(t.observe("e", Probe::Up, Some(false), T), None);
        assert!(t
            .observe("e", Probe::Up, Some(false), T)
            .is_some_and(|v| v.healthy));
    }

    #[test]
    fn a_fresh_tracker_only_reports_real_changes() {
        // A new leader: the committed state already says unhealthy.
        let mut t = Tracker::default();
        for _ in 0..10 {
            assert_eq!(t.observe("e", down(), Some(false), T), None);
        }
        let mut t = Tracker::default();
        assert_eq!(t.observe("e", Probe::Up, Some(true), T), None);
        assert_eq!(t.observe("e", Probe::Up, Some(true), T), None);
    }

    fn committed(healthy: bool, origins: &[&str]) -> EdgeHealth {
        EdgeHealth {
            edge_id: "e".into(),
            healthy,
            since: 7,
            reason: "before".into(),
            unreachable_origins: origins.iter().map(|o| o.to_string()).collect(),
        }
    }

    fn list(origins: &[&str]) -> Option<Vec<String>> {
        Some(origins.iter().map(|o| o.to_string()).collect())
    }

    #[test]
    fn a_healthy_edges_changed_origins_are_committed_alone() {
        let h = committed(true, &["o1"]);
        assert_eq!(next_health("e", Some(&h), None, list(&["o1"])), None);
        // Unreadable report: nothing to say about origins.
        assert_eq!(next_health("e", Some(&h), None, None), None);
        let next = next_health("e", Some(&h), None, list(&[])).expect("a change");
        assert!(next.healthy);
        assert_eq!((next.since, next.reason.as_str()), (7, "before"));
        assert!(next.unreachable_origins.is_empty());
        // An unhealthy or never-judged edge waits for its verdict.
        let sick = committed(false, &[]);
        assert_eq!(next_health("e", Some(&sick), None, list(&["o1"])), None);
        assert_eq!(next_health("e", None, None, list(&["o1"])), None);
    }

    #[test]
    fn a_verdict_carries_the_reported_or_committed_origins() {
        let up = Verdict {
            healthy: true,
            reason: "2 good probes".into(),
        };
        let next = next_health("e", None, Some(up), list(&["o2"])).expect("a verdict");
        assert!(next.healthy);
        assert_eq!(next.unreachable_origins, ["o2"]);
        let down = Verdict {
            healthy: false,
            reason: "3 failed probes".into(),
        };
        let h = committed(true, &["o1"]);
        let next = next_health("e", Some(&h), Some(down), None).expect("a verdict");
        assert!(!next.healthy);
        assert_eq!(next.reason, "3 failed probes");
        assert_eq!(next.unreachable_origins, ["o1"]);
    }

    #[test]
    fn edges_are_counted_apart_and_forgotten() {
        let mut t = Tracker::default();
        t.observe("a", down(), None, T);
        t.observe("a", down(), None, T);
        assert_eq!(t.observe("b", down(), None, T), None);
        t.retain(|id| id == "b");
        assert_eq!(t.observe("a", down(), None, T), None);
        assert_eq!(t.observe("b", down(), None, T), None);
        assert!(t.observe("b", down(), None, T).is_some());
        t.clear();
        assert_eq!(t.observe("b", down(), None, T), None);
    }
}
