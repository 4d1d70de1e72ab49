//! Pull answers already built, per edge or agent: when a write wakes thousands of waiting pulls,
//! each edge's or agent's config is read, hashed and serialised once and the bytes served to all
//! of its pulls, until the version (or the `stale` flag) moves.
//!
//! One slot per id, behind an async read-write lock: pulls check the slot together under the
//! read lock; the first to find it out of date takes the write lock and builds while the others
//! of that id wait for it (single flight), instead of every pull doing the same redb read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;

/// Most ids with a slot; beyond it the cache starts over (ids are authenticated edges and
/// agents, so this only bounds memory).
const MAX_SLOTS: usize = 100_000;

/// One built answer.
#[derive(Debug, Clone)]
pub struct Built {
    /// The state version the answer was built at.
    pub version: u64,
    pub stale: bool,
    pub body: Bytes,
}

/// The slot of one id.
pub type Slot = Arc<tokio::sync::RwLock<Option<Built>>>;

#[derive(Debug, Default)]
pub struct PullCache {
    slots: Mutex<HashMap<String, Slot>>,
}

impl PullCache {
    /// The slot of `id` (made on first use).
    pub fn slot(&self, id: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(id) {
            return slot.clone();
        }
        if slots.len() >= MAX_SLOTS {
            slots.clear();
        }
        slots.entry(id.to_string()).or_default().clone()
    }
}
