//! Where the agents' tunnels were last heard from, kept in the edge's data dir
//! (`agent-endpoints.json`: WireGuard public key → UDP address), so that a restarted edge can
//! greet its agents at once. Without it a restarted edge has lost every session and knows no
//! agent's address: its tunnel origins stay unreachable until each agent's keep-alive gives up
//! on the old connection. The file is a hint: a missing or unreadable one is an empty list.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kokoa_tunnel::keys::{parse_public, to_base64};
use kokoa_tunnel::{PeerStatus, PublicKey};

const FILE_NAME: &str = "agent-endpoints.json";
/// Largest file read back (a line per agent: far more agents than one edge serves).
const MAX_FILE_BYTES: u64 = 4 << 20;

/// The agents' last known addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentEndpoints(BTreeMap<String, SocketAddr>);

impl AgentEndpoints {
    /// The file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// The saved endpoints in `dir`; empty (and logged) when the file is missing or bad.
    pub fn load(dir: &Path) -> AgentEndpoints {
        let path = Self::path(dir);
        let too_big = std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FILE_BYTES);
        if too_big {
            tracing::warn!(path = %path.display(), "agent endpoints file too big; ignored");
            return AgentEndpoints::default();
        }
        match kokoa_store::private_file::read(&path) {
            Ok(None) => AgentEndpoints::default(),
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(map) => AgentEndpoints(map),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "agent endpoints unreadable; ignored");
                    AgentEndpoints::default()
                }
            },
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the agent endpoints");
                AgentEndpoints::default()
            }
        }
    }

    /// Writes them to `dir` (atomically).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.0).map_err(std::io::Error::other)?;
        kokoa_store::private_file::write(&Self::path(dir), &bytes)
    }

    /// The current peers' addresses: where each was heard from, or, for one not heard from
    /// since the start, its address in `self` (so that restarting twice forgets nothing).
    /// Peers no longer configured are dropped.
    pub fn updated(&self, peers: &[PeerStatus]) -> AgentEndpoints {
        AgentEndpoints(
            peers
                .iter()
                .filter_map(|peer| {
                    let key = to_base64(&peer.public_key);
                    let endpoint = peer.endpoint.or_else(|| self.0.get(&key).copied())?;
                    Some((key, endpoint))
                })
                .collect(),
        )
    }

    /// Each valid key and its address.
    pub fn entries(&self) -> impl Iterator<Item = (PublicKey, SocketAddr)> + '_ {
        self.0
            .iter()
            .filter_map(|(key, addr)| parse_public(key).ok().map(|k| (k, *addr)))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kokoa_tunnel::StaticSecret;

    fn key(n: u8) -> PublicKey {
        PublicKey::from(&StaticSecret::from([n; 32]))
    }

    fn peer(n: u8, endpoint: Option<&str>) -> PeerStatus {
        PeerStatus {
            public_key: key(n),
            endpoint: endpoint.map(|e| e.parse().expect("addr")),
            allowed_ip: std::net::Ipv4Addr::new(10, 0, 0, n),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
        }
    }

    #[test]
    fn keeps_heard_addresses_and_remembers_the_silent_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(AgentEndpoints::load(dir.path()).is_empty());

        let first = AgentEndpoints::default().updated(&[
            peer(1, Some("192.0.2.1:5000")),
            peer(2, Some("192.0.2.2:5000")),
            peer(3, None),
        ]);
        assert_eq!(first.len(), 2, "an agent never heard from has no address");
        first.save(dir.path()).expect("save");
        let loaded = AgentEndpoints::load(dir.path());
        assert_eq!(loaded, first);

        // After a restart: agent 1 moved, agent 2 not heard from yet, agent 3 gone.
        let next = loaded.updated(&[peer(1, Some("192.0.2.9:6000")), peer(2, None)]);
        let entries: Vec<(PublicKey, SocketAddr)> = next.entries().collect();
        assert_eq!(
            entries.len(),
            2,
            "both configured agents keep an address: {next:?}"
        );
        assert!(entries.contains(&(key(1), "192.0.2.9:6000".parse().expect("addr"))));
        assert!(entries.contains(&(key(2), "192.0.2.2:5000".parse().expect("addr"))));
    }

    #[test]
    fn a_bad_file_is_an_empty_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(AgentEndpoints::path(dir.path()), b"{not json").expect("write");
        assert!(AgentEndpoints::load(dir.path()).is_empty());
        std::fs::write(
            AgentEndpoints::path(dir.path()),
            br#"{"not-a-key": "192.0.2.1:1"}"#,
        )
        .expect("write");
        let odd = AgentEndpoints::load(dir.path());
        assert_eq!(odd.entries().count(), 0, "an invalid key is skipped");
    }
}
