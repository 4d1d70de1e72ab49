//! Which edges of a config the agent dials: each edge with a tunnel address, a readable
//! WireGuard key and a public endpoint; any other is left out, with a warning.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use kokoa_store::pulled::EdgePeer;
use kokoa_tunnel::connector::EdgeTarget;

/// The edges to keep a tunnel to: every edge of the config that can be dialled.
pub fn targets(edges: &[EdgePeer]) -> Vec<EdgeTarget> {
    edges
        .iter()
        .filter_map(|edge| match target(edge) {
            Ok(target) => Some(target),
            Err(why) => {
                tracing::warn!(edge = %edge.id, name = %edge.name, %why, "edge left out");
                None
            }
        })
        .collect()
}

/// How to reach `edge`, or why it cannot be dialled.
fn target(edge: &EdgePeer) -> Result<EdgeTarget, String> {
    let text = edge
        .tunnel_ip
        .as_deref()
        .ok_or("it has no tunnel address yet")?;
    let tunnel_ip: Ipv4Addr = text
        .parse()
        .map_err(|_| format!("its tunnel address {text:?} is not an IPv4 address"))?;
    let public_key = kokoa_tunnel::keys::parse_public(&edge.wg_public_key)
        .map_err(|_| "its WireGuard public key is not 32 bytes of base64".to_string())?;
    let ip: IpAddr = edge
        .public_ip
        .parse()
        .map_err(|_| format!("its public IP {:?} is not an IP address", edge.public_ip))?;
    if edge.wg_port == 0 {
        return Err("it has no WireGuard port".into());
    }
    Ok(EdgeTarget {
        id: edge.id.clone(),
        public_key,
        endpoint: SocketAddr::new(ip, edge.wg_port),
        tunnel_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(id: &str) -> EdgePeer {
        EdgePeer {
            id: id.into(),
            name: id.into(),
            public_ip: "192.0.2.1".into(),
            wg_port: 51820,
            wg_public_key: kokoa_tunnel::keys::to_base64(&kokoa_tunnel::PublicKey::from([7u8; 32])),
            tunnel_ip: Some("10.255.0.1".into()),
        }
    }

    #[test]
    fn usable_edges_become_targets_and_the_others_are_left_out() {
        let good = edge("e_1");
        let no_ip = EdgePeer {
            tunnel_ip: None,
            ..edge("e_2")
        };
        let bad_key = EdgePeer {
            wg_public_key: "not-a-key".into(),
            ..edge("e_3")
        };
        let bad_ip = EdgePeer {
            public_ip: "edge.example.com".into(),
            ..edge("e_4")
        };
        let no_port = EdgePeer {
            wg_port: 0,
            ..edge("e_5")
        };
        let targets = targets(&[good, no_ip, bad_key, bad_ip, no_port]);
        assert_eq!(targets.len(), 1);
        let t = &targets[0];
        assert_eq!(t.id, "e_1");
        assert_eq!(t.endpoint, "192.0.2.1:51820".parse().expect("addr"));
        assert_eq!(t.tunnel_ip, Ipv4Addr::new(10, 255, 0, 1));
        assert_eq!(t.public_key.as_bytes(), &[7u8; 32]);
    }
}
