//! The routing table an edge serves from: hostnames (exact and `*.` wildcards) to backends, and
//! the ACME HTTP-01 answers, compiled once per pulled config and swapped in whole.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kokoa_store::pulled::{Backend, EdgeConfig};

/// One routed hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// As configured: `app.example.com` or `*.example.com`.
    pub hostname: String,
    pub backend: Backend,
}

/// Hostname -> route, for one config version.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// The state version this table was built from (0: none yet).
    pub version: u64,
    exact: HashMap<String, Arc<Route>>,
    /// `example.com` for a `*.example.com` route.
    wildcard: HashMap<String, Arc<Route>>,
    acme_http01: BTreeMap<String, String>,
}

impl RouteTable {
    /// Compiles `config`, read at `version`.
    pub fn new(version: u64, config: &EdgeConfig) -> Self {
        let mut table = RouteTable {
            version,
            acme_http01: config.acme_http01.clone(),
            ..RouteTable::default()
        };
        for (hostname, backend) in &config.routes {
            let route = Arc::new(Route {
                hostname: hostname.clone(),
                backend: backend.clone(),
            });
            match hostname.strip_prefix("*.") {
                Some(parent) => table.wildcard.insert(parent.to_string(), route),
                None => table.exact.insert(hostname.clone(), route),
            };
        }
        table
    }

    /// The route for `host` (a Host header or SNI value: any case, an optional port and a final
    /// dot are ignored). An exact route wins over a wildcard; a wildcard covers one label only,
    /// as in TLS (`*.example.com` serves `a.example.com`, not `a.b.example.com` or the apex).
    pub fn lookup(&self, host: &str) -> Option<&Arc<Route>> {
        let host = normalize_host(host)?;
        if let Some(route) = self.exact.get(host.as_ref()) {
            return Some(route);
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent)
    }

    /// The key authorization for ACME HTTP-01 token `token`.
    pub fn acme_answer(&self, token: &str) -> Option<&str> {
        self.acme_http01.get(token).map(String::as_str)
    }

    /// How many hostnames are routed.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every route, sorted by hostname.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        let mut all: Vec<_> = self
            .exact
            .values()
            .chain(self.wildcard.values())
            .cloned()
            .collect();
        all.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        all
    }
}

/// Lowercase, without a `:port` and a final dot; `None` when empty or not a plausible name.
pub fn normalize_host(host: &str) -> Option<std::borrow::Cow<'_, str>> {
    let host = match host.rsplit_once(':') {
        // An IPv6 literal keeps its colons ("[::1]:443" -> "[::1]").
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kokoa_store::pulled::EdgePeer;
    use kokoa_store::OriginKind;

    fn backend(target: &str) -> Backend {
        Backend {
            origin_id: "o1".into(),
            origin: "home".into(),
            kind: OriginKind::Direct,
            target: target.into(),
            rate_limit: None,
            allow_http: false,
        }
    }

    fn table(routes: &[(&str, &str)]) -> RouteTable {
        let config = EdgeConfig {
            edge: EdgePeer {
                id: "e1".into(),
                name: "edge".into(),
                public_ip: "192.0.2.1".into(),
                wg_port: 51820,
                wg_public_key: String::new(),
                tunnel_ip: None,
            },
            routes: routes
                .iter()
                .map(|(h, t)| (h.to_string(), backend(t)))
                .collect(),
            hostnames: Vec::new(),
            peers: Vec::new(),
            certificates: Vec::new(),
            acme_http01: [("tok".to_string(), "tok.key".to_string())].into(),
        };
        RouteTable::new(7, &config)
    }

    #[test]
    fn exact_beats_wildcard_and_wildcards_cover_one_label() {
        let t = table(&[
            ("*.example.com", "10.0.0.1:80"),
            ("app.example.com", "10.0.0.2:80"),
        ]);
        let target = |h: &str| t.lookup(h).map(|r| r.backend.target.clone());
        assert_eq!(target("app.example.com").as_deref(), Some("10.0.0.2:80"));
        assert_eq!(
            target("APP.Example.com.:443").as_deref(),
            Some("10.0.0.2:80")
        );
        assert_eq!(target("x.example.com").as_deref(), Some("10.0.0.1:80"));
        assert_eq!(target("a.b.example.com"), None);
        assert_eq!(target("example.com"), None);
        assert_eq!(target(""), None);
        assert_eq!(t.acme_answer("tok"), Some("tok.key"));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn hosts_lose_their_port_and_case() {
        assert_eq!(normalize_host("A.com:8080").as_deref(), Some("a.com"));
        assert_eq!(normalize_host("[::1]:443").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("a.com.").as_deref(), Some("a.com"));
        assert_eq!(normalize_host(":80"), None);
    }
}
