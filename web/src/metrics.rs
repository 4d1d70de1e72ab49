//! `GET /metrics`: this replica's numbers in the Prometheus text exposition format (0.0.4).
//!
//! Raft and state gauges are read from the [`RaftNode`] when scraped; the few numbers the API
//! keeps itself live in [`Metrics`]: the long-polls waiting right now, and per route template
//! (axum's [`MatchedPath`], never the raw path, so ids do not make new series) and method the
//! request counts by status class and a latency histogram with fixed buckets, recorded by the
//! [`track`] middleware. Locks are held only to bump or copy numbers, never across an `.await`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kokoa_raft::RaftNode;

use crate::ApiContext;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the request latency histogram; long-polls wait up to 60 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The `route` label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// The counters and histograms the API keeps; shared by every handler through [`ApiContext`].
#[derive(Debug, Default)]
pub struct Metrics {
    pulls_waiting: AtomicI64,
    /// Edge health-check rounds this replica ran as leader.
    health_rounds: AtomicU64,
    /// Route template -> method -> numbers.
    http: Mutex<BTreeMap<String, BTreeMap<&'static str, RouteStats>>>,
}

/// One route and method's requests.
#[derive(Debug, Clone, Default)]
struct RouteStats {
    /// Answers by status class: index 0 is 1xx, 4 is 5xx.
    by_class: [u64; 5],
    /// Requests per latency bucket (not cumulative); the last slot is above every bound.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

/// Counts one long-poll as waiting until dropped, so a pull whose client goes away (its future
/// dropped mid-wait) stops counting too.
#[derive(Debug)]
pub struct PullWaiting<'a>(&'a Metrics);

impl Drop for PullWaiting<'_> {
    fn drop(&mut self) {
        self.0.pulls_waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Marks a long-poll as waiting for a change until the guard is dropped.
    pub fn pull_waiting(&self) -> PullWaiting<'_> {
        self.pulls_waiting.fetch_add(1, Ordering::Relaxed);
        PullWaiting(self)
    }

    /// Counts one finished round of edge health checks.
    pub fn health_round_done(&self) {
        self.health_rounds.fetch_add(1, Ordering::Relaxed);
    }

    /// Long-polls waiting right now.
    pub fn pulls_waiting(&self) -> i64 {
        self.pulls_waiting.load(Ordering::Relaxed)
    }

    /// Records one answered request.
    pub fn observe(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        let mut http = self.lock_http();
        let by_method = match http.get_mut(route) {
            Some(by_method) => by_method,
            None => http.entry(route.to_string()).or_default(),
        };
        let stats = by_method.entry(method).or_default();
        stats.by_class[class] += 1;
        stats.buckets[bucket] += 1;
        stats.sum_seconds += seconds;
        stats.count += 1;
    }

    fn lock_http(&self) -> MutexGuard<'_, BTreeMap<String, BTreeMap<&'static str, RouteStats>>> {
        // A panic while holding the lock cannot leave the numbers inconsistent enough to matter.
        self.http.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exposition of every metric: `node`'s raft and state gauges, then the API's own.
    pub fn render(&self, node: &RaftNode) -> String {
        let status = node.status();
        let is_leader = status.leader_id == Some(status.node_id);
        let voters = status.members.iter().filter(|m| m.voter).count();
        let mut out = String::with_capacity(4096);
        let gauges: [(&str, &str, f64); 8] = [
            ("kokoa_raft_term", "Current raft term.", status.term as f64),
            (
                "kokoa_raft_leader_id",
                "Id of the replica this one follows as leader (0 when none is known).",
                status.leader_id.unwrap_or(0) as f64,
            ),
            (
                "kokoa_raft_is_leader",
                "1 when this replica is the raft leader, else 0.",
                if is_leader { 1.0 } else { 0.0 },
            ),
            (
                "kokoa_raft_applied_index",
                "Raft log index applied to this replica's state.",
                status.applied_index as f64,
            ),
            (
                "kokoa_state_version",
                "Log index of the last command that changed the state.",
                status.version as f64,
            ),
            (
                "kokoa_raft_members",
                "Replicas in the membership (voters and learners).",
                status.members.len() as f64,
            ),
            (
                "kokoa_raft_voters",
                "Voting replicas in the membership.",
                voters as f64,
            ),
            (
                "kokoa_pulls_waiting",
                "Config long-polls waiting for a change on this replica.",
                self.pulls_waiting() as f64,
            ),
        ];
        for (name, help, value) in gauges {
            describe(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "kokoa_health_rounds_total";
        describe(
            &mut out,
            name,
            "counter",
            "Edge health-check rounds this replica ran as leader.",
        );
        let _ = writeln!(out, "{name} {}", self.health_rounds.load(Ordering::Relaxed));
        // Copy under the lock, format without it.
        let http = self.lock_http().clone();
        describe(
            &mut out,
            "kokoa_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route template and status class.",
        );
        for (route, by_method) in &http {
            for (method, stats) in by_method {
                for (i, &n) in stats.by_class.iter().enumerate() {
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "kokoa_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{}xx\"}} {n}",
                            escape(route),
                            i + 1
                        );
                    }
                }
            }
        }
        let name = "kokoa_http_request_duration_seconds";
        describe(
            &mut out,
            name,
            "histogram",
            "HTTP request latency in seconds (long-polls included), by method and route template.",
        );
        for (route, by_method) in &http {
            let route = escape(route);
            for (method, stats) in by_method {
                let labels = format!("method=\"{method}\",route=\"{route}\"");
                let mut cumulative = 0;
                for (bound, n) in LATENCY_BUCKETS.iter().zip(&stats.buckets) {
                    cumulative += n;
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                }
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", stats.count);
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", stats.sum_seconds);
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", stats.count);
            }
        }
        out
    }
}

fn describe(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The method label: the standard methods by name, anything else as `OTHER` so clients cannot
/// make new series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Middleware: counts and times every request under its route template.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let seconds = started.elapsed().as_secs_f64();
    metrics.observe(&method, route, response.status().as_u16(), seconds);
    response
}

/// `GET /metrics` (no authentication).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    security(()),
    responses((status = 200, description = "Prometheus text exposition format 0.0.4",
        body = String, content_type = "text/plain"))
)]
pub async fn serve(State(ctx): State<ApiContext>) -> Response {
    let body = ctx.metrics.render(&ctx.node);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_method_and_class() {
        let m = Metrics::default();
        m.observe(&Method::GET, "/api/v1/routes/{id}", 200, 0.002);
        m.observe(&Method::GET, "/api/v1/routes/{id}", 404, 0.3);
        m.observe(
            &Method::from_bytes(b"BREW").expect("method"),
            UNMATCHED,
            404,
            70.0,
        );
        let http = m.lock_http();
        let get = &http["/api/v1/routes/{id}"]["GET"];
        assert_eq!(get.by_class, [0, 1, 0, 1, 0]);
        assert_eq!(get.count, 2);
        assert_eq!(get.buckets[1], 1, "2 ms falls in the 5 ms bucket");
        assert_eq!(get.buckets[7], 1, "300 ms falls in the 500 ms bucket");
        let other = &http[UNMATCHED]["OTHER"];
        assert_eq!(
            other.buckets[LATENCY_BUCKETS.len()],
            1,
            "70 s is above every bound"
        );
    }

    #[test]
    fn waiting_pulls_are_counted_until_the_guard_drops() {
        let m = Metrics::default();
        let a = m.pull_waiting();
        let b = m.pull_waiting();
        assert_eq!(m.pulls_waiting(), 2);
        drop(a);
        assert_eq!(m.pulls_waiting(), 1);
        drop(b);
        assert_eq!(m.pulls_waiting(), 0);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
