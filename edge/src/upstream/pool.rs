//! Idle HTTP/1.1 connections to upstreams, kept for reuse: one [`HostPool`] per (origin,
//! target, kind), each split into stripes so that threads rarely share a lock (a thread
//! returns connections to its own stripe and takes them only from there, like nginx's per-worker
//! `keepalive` cache). The host map is read lock-free ([`ArcSwap`]) and only rewritten when
//! an upstream is first used or retired.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::client::conn::http1;
use kokoa_store::pulled::Backend;
use kokoa_store::OriginKind;

use super::RequestBody;

/// A handle to send requests on one upstream connection.
pub(super) type Sender = http1::SendRequest<RequestBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant, idle_timeout: Duration) -> bool {
        now.saturating_duration_since(self.since) < idle_timeout
            && !self.sender.is_closed()
            && self.sender.is_ready()
    }
}

/// The idle connections to one upstream.
pub(super) struct HostPool {
    origin_id: String,
    target: String,
    kind: OriginKind,
    stripes: Box<[Mutex<VecDeque<Idle>>]>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Removed from the pool map: connections given back are closed instead of kept.
    retired: AtomicBool,
}

impl fmt::Debug for HostPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostPool")
            .field("origin_id", &self.origin_id)
            .field("target", &self.target)
            .field("idle", &self.idle())
            .finish()
    }
}

impl HostPool {
    fn matches(&self, backend: &Backend) -> bool {
        self.target == backend.target && self.kind == backend.kind
    }

    /// An idle connection of this thread's stripe that is still open. Other threads' stripes
    /// are left alone: a connection's driver runs on the runtime that opened it, and using it
    /// from another worker's runtime would cost a cross-thread wakeup per request.
    pub(super) fn take(&self, now: Instant) -> Option<Sender> {
        let mut idle = lock(&self.stripes[home_stripe(self.stripes.len())]);
        while let Some(conn) = idle.pop_back() {
            if conn.usable(now, self.idle_timeout) {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Keeps `sender` (a connection ready for its next request) for reuse.
    pub(super) fn put(&self, sender: Sender, now: Instant) {
        let mut idle = lock(&self.stripes[home_stripe(self.stripes.len())]);
        if self.retired.load(Ordering::SeqCst) || self.max_idle == 0 {
            return;
        }
        while idle
            .front()
            .is_some_and(|c| !c.usable(now, self.idle_timeout))
        {
            idle.pop_front();
        }
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle { sender, since: now });
    }

    /// Closes expired and dead connections; returns how many stay.
    fn sweep(&self, now: Instant) -> usize {
        self.stripes
            .iter()
            .map(|stripe| {
                let mut idle = lock(stripe);
                idle.retain(|c| c.usable(now, self.idle_timeout));
                idle.len()
            })
            .sum()
    }

    /// Stops keeping connections and closes the idle ones.
    fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        for stripe in self.stripes.iter() {
            lock(stripe).clear();
        }
    }

    /// Idle connections held.
    pub(super) fn idle(&self) -> usize {
        self.stripes.iter().map(|s| lock(s).len()).sum()
    }
}

type HostMap = HashMap<String, Vec<Arc<HostPool>>>;

/// Stripes per upstream: threads get one each in the order they first use the pool, so every
/// edge worker (and the first threads of any runtime) has its own.
const STRIPES: usize = 64;

/// Every upstream's idle connections.
pub(super) struct Pool {
    hosts: ArcSwap<HostMap>,
    /// Serialises rewrites of `hosts`.
    rewrite: Mutex<()>,
    stripes: usize,
    max_idle: usize,
    idle_timeout: Duration,
    sweep_every: Duration,
    epoch: Instant,
    /// Milliseconds after `epoch` when the next sweep is due.
    next_sweep: AtomicU64,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field(
                "upstreams",
                &self.hosts.load().values().map(Vec::len).sum::<usize>(),
            )
            .field("stripes", &self.stripes)
            .field("max_idle", &self.max_idle)
            .finish()
    }
}

impl Pool {
    /// Keeps up to `max_idle` idle connections per upstream and stripe (one stripe per thread),
    /// each for up to `idle_timeout`.
    pub(super) fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        let stripes = STRIPES;
        Pool {
            hosts: ArcSwap::from_pointee(HashMap::new()),
            rewrite: Mutex::new(()),
            stripes,
            max_idle,
            idle_timeout,
            sweep_every: idle_timeout.clamp(Duration::from_millis(100), Duration::from_secs(10)),
            epoch: Instant::now(),
            next_sweep: AtomicU64::new(0),
        }
    }

    /// The pool of `backend`'s upstream, made on first use.
    pub(super) fn host(&self, backend: &Backend) -> Arc<HostPool> {
        if let Some(host) = find(&self.hosts.load(), backend) {
            return host.clone();
        }
        let _rewrite = lock(&self.rewrite);
        let hosts = self.hosts.load_full();
        if let Some(host) = find(&hosts, backend) {
            return host.clone();
        }
        let host = Arc::new(HostPool {
            origin_id: backend.origin_id.clone(),
            target: backend.target.clone(),
            kind: backend.kind,
            stripes: (0..self.stripes)
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
            max_idle: self.max_idle,
            idle_timeout: self.idle_timeout,
            retired: AtomicBool::new(false),
        });
        let mut updated = HostMap::clone(&hosts);
        updated
            .entry(backend.origin_id.clone())
            .or_default()
            .push(host.clone());
        self.hosts.store(Arc::new(updated));
        host
    }

    /// Sweeps every upstream if a sweep is due (at most one caller at a time does it): closes
    /// expired connections, and retires upstreams with no connection and no user, such as
    /// those of deleted routes.
    pub(super) fn sweep_if_due(&self, now: Instant) {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now_ms < due {
            return;
        }
        let next = now_ms + self.sweep_every.as_millis() as u64;
        if self
            .next_sweep
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.sweep(now);
    }

    fn sweep(&self, now: Instant) {
        let hosts = self.hosts.load_full();
        let mut unused = Vec::new();
        for host in hosts.values().flatten() {
            // Only the map holds it: no request is using it.
            if host.sweep(now) == 0 && Arc::strong_count(host) == 1 {
                unused.push(host.clone());
            }
        }
        if unused.is_empty() {
            return;
        }
        let _rewrite = lock(&self.rewrite);
        let mut updated = HostMap::clone(&self.hosts.load());
        for host in &unused {
            host.retire();
            if let Some(list) = updated.get_mut(&host.origin_id) {
                list.retain(|h| !Arc::ptr_eq(h, host));
                if list.is_empty() {
                    updated.remove(&host.origin_id);
                }
            }
        }
        tracing::debug!(retired = unused.len(), "upstream pools retired");
        self.hosts.store(Arc::new(updated));
    }

    /// Upstreams with a pool now.
    #[cfg(test)]
    pub(super) fn upstreams(&self) -> usize {
        self.hosts.load().values().map(Vec::len).sum()
    }

    /// Idle connections held, over all upstreams.
    pub(super) fn idle(&self) -> usize {
        self.hosts.load().values().flatten().map(|h| h.idle()).sum()
    }

    /// Drops every idle connection.
    pub(super) fn clear(&self) {
        for host in self.hosts.load().values().flatten() {
            host.retire();
        }
        self.hosts.store(Arc::new(HashMap::new()));
    }
}

fn find<'a>(hosts: &'a HostMap, backend: &Backend) -> Option<&'a Arc<HostPool>> {
    hosts
        .get(backend.origin_id.as_str())?
        .iter()
        .find(|h| h.matches(backend))
}

/// This thread's stripe among `n`.
fn home_stripe(n: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    STRIPE.with(|s| *s) % n.max(1)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
