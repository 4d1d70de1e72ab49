//! Picking free loopback ports for replicas that must keep their ports across restarts.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close).
///
/// Never hands out the same port twice in one process, so parallel tests do not collide.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports on 127.0.0.1 (all held open until every one is picked).
pub fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    let mut held = Vec::new();
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let fresh = handed_out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(port);
        if fresh {
            ports.push(port);
        }
        held.push(listener);
    }
    ports
}
