//! Knowing that every armed pull is really waiting on the server before anything is measured.
//!
//! Two ways, chosen once per run:
//!
//! * `metric`: the replica's `GET /metrics` exposes `kokoa_pulls_waiting` (summed over its
//!   label sets); ready when it reaches the number of pulls expected to wait.
//! * `sockets` (no such metric): every puller has sent its request, the server side of at least
//!   that many connections is established, no request bytes are left unread in any of them (nor
//!   unacknowledged on the client side, nor a connection in the accept queue: from
//!   `/proc/net/tcp`), and this holds at two looks [`SETTLE`] apart during which the replica
//!   used at most [`SETTLE_CPU_PCT`] of a core (it has finished authenticating and parked every
//!   handler). A bounded poll on conditions, never a guessed sleep.

use std::time::Duration;

use crate::host::{PortSockets, ProcSnap};

/// The metric counting long-polls parked on a replica.
pub const WAITING_METRIC: &str = "kokoa_pulls_waiting";
/// How long the socket condition must hold, with the replica quiet, to count as settled.
pub const SETTLE: Duration = Duration::from_millis(500);
/// The most CPU (% of one core) the replica may use over [`SETTLE`] to count as settled.
pub const SETTLE_CPU_PCT: f64 = 5.0;

/// How readiness is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Metric,
    Sockets,
}

impl Probe {
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Metric => "metric",
            Probe::Sockets => "sockets",
        }
    }
}

/// `GET {base}/metrics` (with the admin token): the summed value of [`WAITING_METRIC`], or `None`
/// when there is no such endpoint or metric.
pub async fn waiting_metric(http: &reqwest::Client, base: &str, admin: &str) -> Option<u64> {
    let response = http
        .get(format!("{base}/metrics"))
        .bearer_auth(admin)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    parse_metric(&response.text().await.ok()?, WAITING_METRIC)
}

/// The sum of every sample of `name` in a Prometheus text exposition; `None` if it has none.
pub fn parse_metric(text: &str, name: &str) -> Option<u64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let rest = match rest.chars().next() {
            Some('{') => match rest.find('}') {
                Some(end) => &rest[end + 1..],
                None => continue,
            },
            Some(' ') => rest,
            _ => continue,
        };
        if let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            found = true;
            sum += value;
        }
    }
    found.then_some(sum.max(0.0) as u64)
}

/// The sockets condition at one look (see the module docs); `Err` says what is missing.
pub fn sockets_hold(all_sent: bool, expected: usize, sockets: &PortSockets) -> Result<(), String> {
    let mut missing = Vec::new();
    if !all_sent {
        missing.push("not every puller has sent".to_string());
    }
    if sockets.server_side < expected {
        missing.push(format!(
            "{} server-side connections, want at least {expected}",
            sockets.server_side
        ));
    }
    if !sockets.all_read() {
        missing.push(format!(
            "{} connections with unread requests, {} with unsent bytes, {} in the accept queue",
            sockets.server_unread, sockets.client_unsent, sockets.accept_queue
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

/// Whether the replica stayed quiet between two looks `wall` apart.
pub fn settled(before: &ProcSnap, after: &ProcSnap, wall: Duration) -> Result<(), String> {
    let pct = after.cpu_pct_since(before, wall);
    if pct <= SETTLE_CPU_PCT {
        Ok(())
    } else {
        Err(format!(
            "replica still busy: {pct:.1}% of a core over {} ms",
            wall.as_millis()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_metric_over_its_labels() {
        let text = "# HELP kokoa_pulls_waiting Long-polls parked.
# TYPE kokoa_pulls_waiting gauge
kokoa_pulls_waiting{role=\"edge\"} 9990
kokoa_pulls_waiting{role=\"agent\"} 10
kokoa_pulls_waiting_total 5
kokoa_other 7";
        assert_eq!(parse_metric(text, WAITING_METRIC), Some(10_000));
        assert_eq!(
            parse_metric("kokoa_pulls_waiting 3\n", WAITING_METRIC),
            Some(3)
        );
        assert_eq!(parse_metric("kokoa_other 1\n", WAITING_METRIC), None);
    }

    #[test]
    fn sockets_condition_names_what_is_missing() {
        let ready = PortSockets {
            server_side: 10,
            ..PortSockets::default()
        };
        assert!(sockets_hold(true, 10, &ready).is_ok());
        assert!(sockets_hold(false, 10, &ready)
            .expect_err("not sent")
            .contains("sent"));
        let unread = PortSockets {
            server_unread: 2,
            ..ready
        };
        assert!(sockets_hold(true, 10, &unread)
            .expect_err("unread")
            .contains("2 connections with unread"));
        assert!(sockets_hold(true, 11, &ready).is_err());
    }
}
