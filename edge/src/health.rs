//! The edge's `GET /health` report (served for hosts the edge does not route, such as its IP):
//! the config being served and how its pulls go, and whether each routed origin answered the
//! edge's last dial. The control plane's health checks read it.

use std::collections::BTreeMap;

use hyper::body::Bytes;
use kokoa_store::OriginKind;
use serde::{Deserialize, Serialize};

use crate::live::Live;
use crate::upstream::OriginStatus;

/// What `GET /health` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Always `ok`: the edge is serving.
    pub status: String,
    pub edge_id: String,
    /// The config version served (0: none yet).
    pub version: u64,
    /// Unix seconds of the last answer from a replica (0: never).
    pub last_pulled: u64,
    /// The replica that answered last.
    pub control: Option<String>,
    pub last_error: Option<String>,
    /// Serving a config loaded from disk, not yet confirmed by a replica.
    pub from_disk: bool,
    /// Routed hostnames.
    pub routes: usize,
    /// Certificate names.
    pub certificates: usize,
    /// Origin id -> its state, for every routed origin.
    pub origins: BTreeMap<String, OriginHealth>,
}

/// One routed origin, as the edge sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginHealth {
    pub name: String,
    pub kind: OriginKind,
    /// The last dial's result; `null` until the edge dials it.
    pub reachable: Option<bool>,
    pub last_error: Option<String>,
    /// Unix seconds of the last successful dial.
    pub last_success: Option<u64>,
    /// Tunnel origins: every agent this edge accepts for it.
    #[serde(default)]
    pub agents: Vec<AgentHealth>,
}

/// One agent of a tunnel origin, as this edge sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHealth {
    pub id: String,
    /// Its multiplexed connection to this edge is up: requests go through it.
    pub connected: bool,
    /// Seconds since its last WireGuard handshake (`null`: none yet).
    pub last_handshake_secs: Option<u64>,
    /// The address its datagrams come from.
    pub endpoint: Option<String>,
}

impl HealthReport {
    pub fn to_json(&self) -> Bytes {
        // Plain strings, numbers and maps always serialise.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The routed origins this edge cannot reach now, sorted: tunnel origins without a connected
    /// agent, direct origins whose last dial failed.
    pub fn unreachable_origins(&self) -> Vec<String> {
        self.origins
            .iter()
            .filter(|(_, o)| o.unreachable())
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl OriginHealth {
    /// A tunnel origin is unreachable when none of its agents is connected to this edge (the
    /// agents keep their connections up, so this holds without traffic); a direct origin when
    /// the edge's last dial failed.
    pub fn unreachable(&self) -> bool {
        match self.kind {
            OriginKind::Tunnel => !self.agents.iter().any(|a| a.connected),
            OriginKind::Direct => self.reachable == Some(false),
        }
    }
}

/// The report for `live` now; `origin_status` gives an origin's dial results by id.
pub fn report(live: &Live, origin_status: impl Fn(&str) -> Option<OriginStatus>) -> HealthReport {
    let pull = live.status();
    let routes = live.routes();
    let agents = live.tunnel().map(|t| t.agents()).unwrap_or_default();
    let mut origins = BTreeMap::new();
    for route in routes.routes() {
        let backend = &route.backend;
        if origins.contains_key(&backend.origin_id) {
            continue;
        }
        let status = origin_status(&backend.origin_id).unwrap_or_default();
        origins.insert(
            backend.origin_id.clone(),
            OriginHealth {
                name: backend.origin.clone(),
                kind: backend.kind,
                reachable: status.reachable,
                last_error: status.last_error,
                last_success: status.last_success,
                agents: agents
                    .iter()
                    .filter(|a| a.origin_id == backend.origin_id)
                    .map(|a| AgentHealth {
                        id: a.id.clone(),
                        connected: a.connected,
                        last_handshake_secs: a.last_handshake.map(|d| d.as_secs()),
                        endpoint: a.endpoint.map(|e| e.to_string()),
                    })
                    .collect(),
            },
        );
    }
    HealthReport {
        status: "ok".to_string(),
        edge_id: live.edge_id.clone(),
        version: routes.version,
        last_pulled: pull.last_pulled,
        control: pull.control,
        last_error: pull.last_error,
        from_disk: pull.from_disk,
        routes: routes.len(),
        certificates: live.certs().len(),
        origins,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kokoa_store::pulled::{Backend, EdgeConfig, EdgePeer, Pulled};

    fn backend(origin_id: &str, origin: &str, kind: OriginKind) -> Backend {
        Backend {
            origin_id: origin_id.into(),
            origin: origin.into(),
            kind,
            target: "127.0.0.1:8080".into(),
            rate_limit: None,
            allow_http: false,
        }
    }

    #[test]
    fn reports_config_pulls_and_origins() {
        let live = Live::new("e1".into());
        let config = EdgeConfig {
            edge: EdgePeer {
                id: "e1".into(),
                name: "edge".into(),
                public_ip: "192.0.2.1".into(),
                wg_port: 51820,
                wg_public_key: String::new(),
                tunnel_ip: None,
            },
            routes: [
                ("a.example.com", backend("o1", "home", OriginKind::Direct)),
                ("b.example.com", backend("o1", "home", OriginKind::Direct)),
                ("c.example.com", backend("o2", "lab", OriginKind::Tunnel)),
            ]
            .into_iter()
            .map(|(h, b)| (h.to_string(), b))
            .collect(),
            hostnames: Vec::new(),
            peers: Vec::new(),
            certificates: Vec::new(),
            acme_http01: BTreeMap::new(),
        };
        live.install(&Pulled {
            version: 9,
            config_hash: String::new(),
            stale: false,
            config,
        });
        live.update_status(|s| {
            s.last_pulled = 1_700_000_000;
            s.control = Some("https://r1".into());
        });
        let report = report(&live, |id| {
            (id == "o1").then(|| OriginStatus {
                reachable: Some(true),
                last_success: Some(1_700_000_001),
                ..OriginStatus::default()
            })
        });
        let json: serde_json::Value = serde_json::from_slice(&report.to_json()).expect("json");
        assert_eq!(json["status"], "ok");
        assert_eq!(json["edge_id"], "e1");
        assert_eq!(json["version"], 9);
        assert_eq!(json["last_pulled"], 1_700_000_000);
        assert_eq!(json["control"], "https://r1");
        assert_eq!(json["last_error"], serde_json::Value::Null);
        assert_eq!(json["from_disk"], false);
        assert_eq!(json["routes"], 3);
        assert_eq!(json["certificates"], 0);
        assert_eq!(json["origins"]["o1"]["name"], "home");
        assert_eq!(json["origins"]["o1"]["kind"], "direct");
        assert_eq!(json["origins"]["o1"]["reachable"], true);
        assert_eq!(json["origins"]["o1"]["last_success"], 1_700_000_001);
        assert_eq!(json["origins"]["o2"]["kind"], "tunnel");
        assert_eq!(json["origins"]["o2"]["reachable"], serde_json::Value::Null);
        let back: HealthReport = serde_json::from_value(json).expect("parse back");
        assert_eq!(back, report);
        // o2 is a tunnel origin without a connected agent; o1 answered its last dial.
        assert_eq!(report.unreachable_origins(), ["o2"]);
    }

    #[test]
    fn origins_are_unreachable_by_kind() {
        let origin = |kind, reachable, connected: &[bool]| OriginHealth {
            name: "o".into(),
            kind,
            reachable,
            last_error: None,
            last_success: None,
            agents: connected
                .iter()
                .enumerate()
                .map(|(i, &connected)| AgentHealth {
                    id: format!("a{i}"),
                    connected,
                    last_handshake_secs: None,
                    endpoint: None,
                })
                .collect(),
        };
        assert!(!origin(OriginKind::Direct, None, &[]).unreachable());
        assert!(!origin(OriginKind::Direct, Some(true), &[]).unreachable());
        assert!(origin(OriginKind::Direct, Some(false), &[]).unreachable());
        assert!(origin(OriginKind::Tunnel, None, &[]).unreachable());
        assert!(origin(OriginKind::Tunnel, Some(true), &[false, false]).unreachable());
        // A failed dial does not outweigh a connected agent: the next request goes through it.
        assert!(!origin(OriginKind::Tunnel, Some(false), &[false, true]).unreachable());
    }
}
