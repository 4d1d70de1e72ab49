//! Who the workload may send to right now. The fault injector takes a process out before it
//! breaks it and puts it back once it is ready again; every change bumps a generation, so a
//! sample whose target changed while it was in flight is set aside instead of counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Keyed addresses with a generation per key.
#[derive(Debug, Clone, Default)]
pub struct Targets(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    live: BTreeMap<u64, (SocketAddr, u64)>,
    generation: u64,
}

impl Targets {
    /// Puts `key` in at `addr`.
    pub fn insert(&self, key: u64, addr: SocketAddr) {
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        inner.live.insert(key, (addr, generation));
    }

    /// Takes `key` out.
    pub fn remove(&self, key: u64) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.live.remove(&key);
    }

    /// Everything in now: (key, address, generation).
    pub fn snapshot(&self) -> Vec<(u64, SocketAddr, u64)> {
        self.lock()
            .live
            .iter()
            .map(|(&k, &(addr, generation))| (k, addr, generation))
            .collect()
    }

    /// Whether `key` is still in, unchanged since `generation`.
    pub fn unchanged(&self, key: u64, generation: u64) -> bool {
        self.lock()
            .live
            .get(&key)
            .is_some_and(|&(_, g)| g == generation)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_while_in_flight_is_seen() {
        let t = Targets::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        t.insert(1, addr);
        let (_, _, g) = t.snapshot()[0];
        assert!(t.unchanged(1, g));
        t.remove(1);
        assert!(!t.unchanged(1, g));
        t.insert(1, addr);
        assert!(!t.unchanged(1, g), "back, but not the same run of it");
    }
}
