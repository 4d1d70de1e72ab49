//! Per-client limits: a token-bucket request rate per (client, route hostname), and how many
//! connections one client and all clients together may hold open.
//!
//! A "client" is an IPv4 address or an IPv6 /64 (one household or host is given a whole /64,
//! so limiting single IPv6 addresses would limit nothing). Both maps are lock-striped and
//! bounded: rate buckets that have refilled are dropped by a sweep each shard runs on itself,
//! and a full shard evicts its stalest bucket; connection counts leave the map at zero.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kokoa_store::RateLimit;

/// Lock stripes of each map (a power of two).
const SHARDS: usize = 64;

/// How often a rate-limit shard drops its refilled buckets.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The edge's rate limit for routes that set none: 10 requests/s, bursts of 20.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 10,
    burst: 20,
};

/// Who a limit counts against: an IPv4 address, or the /64 an IPv6 address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(v4),
            IpAddr::V6(v6) => ClientKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// The limits of [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// Applied to routes without their own limit, and to requests for unrouted hosts
    /// (`/health`, 404s); `None` turns it off.
    pub default_rate: Option<RateLimit>,
    /// Most rate buckets kept in memory (at least one per shard).
    pub max_rate_entries: usize,
    /// Most open connections over all clients.
    pub max_connections: usize,
    /// Most open connections from one client.
    pub max_connections_per_client: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            default_rate: Some(DEFAULT_RATE_LIMIT),
            max_rate_entries: 100_000,
            max_connections: 10_000,
            max_connections_per_client: 256,
        }
    }
}

/// The request and connection limits of one edge.
#[derive(Debug)]
pub struct Limits {
    rates: RateLimiter,
    connections: Arc<ConnectionLimiter>,
    default_rate: Option<RateLimit>,
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Self {
        Limits {
            rates: RateLimiter::new(settings.max_rate_entries),
            connections: Arc::new(ConnectionLimiter::new(
                settings.max_connections,
                settings.max_connections_per_client,
            )),
            default_rate: settings.default_rate,
        }
    }

    /// Counts a request from `client` to the route `hostname` (`""` for unrouted requests)
    /// against `limit`, or the default limit when `None`.
    pub fn check_request(
        &self,
        client: IpAddr,
        hostname: &str,
        limit: Option<RateLimit>,
    ) -> RateDecision {
        match limit.or(self.default_rate) {
            Some(limit) => self
                .rates
                .check(client.into(), hostname, limit, Instant::now()),
            None => RateDecision::Allow,
        }
    }

    /// Admits a new connection from `client`, counted until the guard drops.
    pub fn open_connection(&self, client: IpAddr) -> Result<ConnectionGuard, ConnectionRefused> {
        self.connections.acquire(client.into())
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.total.load(Ordering::Relaxed)
    }
}

/// Whether a request may pass its rate limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateDecision {
    Allow,
    /// Over the limit; a token is back after `retry_after`.
    Deny {
        retry_after: Duration,
    },
}

impl RateDecision {
    /// Whole seconds for a `Retry-After` header (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            RateDecision::Allow => 0,
            RateDecision::Deny { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                secs.max(1)
            }
        }
    }
}

/// One client's token bucket for one route.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// The limit last applied (routes can change theirs), to know when it is full again.
    per_second: f64,
    burst: f64,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
    }

    /// Full again: the same as no bucket at all, so it can be dropped.
    fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.per_second >= self.burst
    }

    fn take(&mut self, now: Instant, limit: RateLimit) -> RateDecision {
        self.per_second = f64::from(limit.per_second.max(1));
        self.burst = f64::from(limit.burst.max(1));
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            RateDecision::Allow
        } else {
            let wait = (1.0 - self.tokens) / self.per_second;
            RateDecision::Deny {
                retry_after: Duration::from_secs_f64(wait),
            }
        }
    }
}

#[derive(Debug)]
struct RateShard {
    /// (client, hash of the route hostname) -> bucket.
    buckets: HashMap<(ClientKey, u64), Bucket>,
    next_sweep: Option<Instant>,
}

impl RateShard {
    fn sweep(&mut self, now: Instant) {
        self.buckets.retain(|_, b| !b.is_full(now));
        self.next_sweep = Some(now + SWEEP_EVERY);
    }

    fn evict_stalest(&mut self) {
        let stalest = self
            .buckets
            .iter()
            .min_by_key(|(_, b)| b.updated)
            .map(|(k, _)| *k);
        if let Some(key) = stalest {
            self.buckets.remove(&key);
        }
    }
}

/// Token buckets per (client, route), lock-striped, with bounded memory. The clock is an
/// argument, so tests control it.
pub struct RateLimiter {
    shards: Box<[Mutex<RateShard>]>,
    max_per_shard: usize,
    hasher: RandomState,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("shards", &self.shards.len())
            .field("max_per_shard", &self.max_per_shard)
            .finish()
    }
}

impl RateLimiter {
    /// Keeps at most about `max_entries` buckets.
    pub fn new(max_entries: usize) -> Self {
        RateLimiter {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(RateShard {
                        buckets: HashMap::new(),
                        next_sweep: None,
                    })
                })
                .collect(),
            max_per_shard: (max_entries / SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    /// Takes a token from the bucket of (`client`, `hostname`) at time `now`.
    pub fn check(
        &self,
        client: ClientKey,
        hostname: &str,
        limit: RateLimit,
        now: Instant,
    ) -> RateDecision {
        let key = (client, self.hasher.hash_one(hostname));
        let shard_index = (self.hasher.hash_one(key) as usize) & (SHARDS - 1);
        let mut shard = lock(&self.shards[shard_index]);
        if shard.next_sweep.is_none_or(|at| now >= at) {
            shard.sweep(now);
        }
        if let Some(bucket) = shard.buckets.get_mut(&key) {
            return bucket.take(now, limit);
        }
        if shard.buckets.len() >= self.max_per_shard {
            shard.sweep(now);
            if shard.buckets.len() >= self.max_per_shard {
                shard.evict_stalest();
            }
        }
        let mut bucket = Bucket {
            tokens: f64::from(limit.burst.max(1)),
            updated: now,
            per_second: 0.0,
            burst: 0.0,
        };
        let decision = bucket.take(now, limit);
        shard.buckets.insert(key, bucket);
        decision
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).buckets.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionRefused {
    #[error("the edge holds its maximum of {0} connections")]
    Total(usize),
    #[error("the client holds its maximum of {0} connections")]
    Client(usize),
}

/// Open connections, in all and per client.
pub struct ConnectionLimiter {
    total: AtomicUsize,
    max_total: usize,
    max_per_client: usize,
    shards: Box<[Mutex<HashMap<ClientKey, usize>>]>,
    hasher: RandomState,
}

impl fmt::Debug for ConnectionLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionLimiter")
            .field("total", &self.total.load(Ordering::Relaxed))
            .field("max_total", &self.max_total)
            .field("max_per_client", &self.max_per_client)
            .finish()
    }
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_client: usize) -> Self {
        ConnectionLimiter {
            total: AtomicUsize::new(0),
            max_total,
            max_per_client,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, client: ClientKey) -> &Mutex<HashMap<ClientKey, usize>> {
        &self.shards[(self.hasher.hash_one(client) as usize) & (SHARDS - 1)]
    }

    /// Counts one more connection from `client`, if both limits allow it.
    pub fn acquire(
        self: &Arc<Self>,
        client: ClientKey,
    ) -> Result<ConnectionGuard, ConnectionRefused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectionRefused::Total(self.max_total));
        }
        let mut shard = lock(self.shard(client));
        let count = shard.entry(client).or_insert(0);
        if *count >= self.max_per_client {
            if *count == 0 {
                shard.remove(&client);
            }
            drop(shard);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectionRefused::Client(self.max_per_client));
        }
        *count += 1;
        Ok(ConnectionGuard {
            limiter: self.clone(),
            client,
        })
    }

    fn release(&self, client: ClientKey) {
        let mut shard = lock(self.shard(client));
        if let Entry::Occupied(mut e) = shard.entry(client) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        drop(shard);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }

    /// Connections open from `client`.
    pub fn client_connections(&self, client: ClientKey) -> usize {
        lock(self.shard(client)).get(&client).copied().unwrap_or(0)
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionGuard {
    limiter: Arc<ConnectionLimiter>,
    client: ClientKey,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.limiter.release(self.client);
    }
}

/// Locks a shard; a panic while it was held left consistent counters, so poison is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 2,
        burst: 3,
    };

    fn client(ip: &str) -> ClientKey {
        ip.parse::<IpAddr>().expect("ip").into()
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = RateLimiter::new(1000);
        let t0 = Instant::now();
        let c = client("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(limiter.check(c, "a.com", LIMIT, t0), RateDecision::Allow);
        }
        let denied = limiter.check(c, "a.com", LIMIT, t0);
        assert_eq!(
            denied,
            RateDecision::Deny {
                retry_after: Duration::from_millis(500)
            }
        );
        assert_eq!(denied.retry_after_secs(), 1);
        // Half a second later one token is back (2/s), and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.check(c, "a.com", LIMIT, t1), RateDecision::Allow);
        assert!(matches!(
            limiter.check(c, "a.com", LIMIT, t1),
            RateDecision::Deny { .. }
        ));
        // Other routes and other clients have their own buckets.
        assert_eq!(limiter.check(c, "b.com", LIMIT, t1), RateDecision::Allow);
        let other = client("192.0.2.2");
        assert_eq!(
            limiter.check(other, "a.com", LIMIT, t1),
            RateDecision::Allow
        );
    }

    #[test]
    fn refilled_buckets_are_swept() {
        let limiter = RateLimiter::new(1000);
        let t0 = Instant::now();
        let drained = client("192.0.2.200");
        for _ in 0..3 {
            limiter.check(drained, "a.com", LIMIT, t0);
        }
        for i in 0..50 {
            limiter.check(client(&format!("192.0.2.{i}")), "a.com", LIMIT, t0);
        }
        assert_eq!(limiter.len(), 51);
        // A second later the 50 are full again (2 + 2/s, burst 3): the same as no bucket.
        // The drained one has 2 of 3 tokens and must stay.
        let later = t0 + Duration::from_secs(1);
        for shard in limiter.shards.iter() {
            lock(shard).sweep(later);
        }
        assert_eq!(limiter.len(), 1);
        assert_eq!(
            limiter.check(drained, "a.com", LIMIT, later),
            RateDecision::Allow
        );
        assert_eq!(
            limiter.check(drained, "a.com", LIMIT, later),
            RateDecision::Allow
        );
        assert!(matches!(
            limiter.check(drained, "a.com", LIMIT, later),
            RateDecision::Deny { .. }
        ));
    }

    #[test]
    fn a_shard_sweeps_itself_when_used_after_the_interval() {
        let limiter = RateLimiter::new(1000);
        let t0 = Instant::now();
        let c = client("192.0.2.1");
        limiter.check(c, "a.com", LIMIT, t0);
        limiter.check(c, "b.com", LIMIT, t0);
        assert_eq!(limiter.len(), 2);
        // Every shard that is used after the interval drops its refilled buckets first.
        let later = t0 + SWEEP_EVERY;
        for i in 0..10_000 {
            limiter.check(c, &format!("x{i}"), LIMIT, later);
            if limiter.len() == i + 1 {
                return;
            }
        }
        panic!("the old buckets were never swept");
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = RateLimiter::new(SHARDS * 2);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let c = ClientKey::V4(Ipv4Addr::from(i));
            limiter.check(c, "a.com", LIMIT, t0);
        }
        assert!(limiter.len() <= SHARDS * 2);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(client("2001:db8:1:2::1"), client("2001:db8:1:2:ffff::9"));
        assert_ne!(client("2001:db8:1:2::1"), client("2001:db8:1:3::1"));
        assert_eq!(client("::ffff:192.0.2.1"), client("192.0.2.1"));
    }

    #[test]
    fn connections_are_limited_per_client_and_in_all() {
        let limiter = Arc::new(ConnectionLimiter::new(3, 2));
        let a = client("192.0.2.1");
        let b = client("192.0.2.2");
        let a1 = limiter.acquire(a).expect("a1");
        let _a2 = limiter.acquire(a).expect("a2");
        assert_eq!(limiter.acquire(a).err(), Some(ConnectionRefused::Client(2)));
        let _b1 = limiter.acquire(b).expect("b1");
        assert_eq!(limiter.acquire(b).err(), Some(ConnectionRefused::Total(3)));
        drop(a1);
        assert_eq!(limiter.client_connections(a), 1);
        let _b2 = limiter.acquire(b).expect("b2 after a1 left");
        assert_eq!(limiter.total.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn counts_leave_the_map_at_zero() {
        let limiter = Arc::new(ConnectionLimiter::new(10, 10));
        let guards: Vec<_> = (0..5)
            .map(|i| limiter.acquire(ClientKey::V4(Ipv4Addr::from(i))))
            .collect();
        drop(guards);
        let held: usize = limiter.shards.iter().map(|s| lock(s).len()).sum();
        assert_eq!(held, 0);
        assert_eq!(limiter.total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn limits_use_the_route_limit_or_the_default() {
        let limits = Limits::new(&LimitSettings {
            default_rate: Some(RateLimit {
                per_second: 1,
                burst: 1,
            }),
            ..LimitSettings::default()
        });
        let ip: IpAddr = "192.0.2.9".parse().expect("ip");
        assert_eq!(limits.check_request(ip, "a", None), RateDecision::Allow);
        assert!(matches!(
            limits.check_request(ip, "a", None),
            RateDecision::Deny { .. }
        ));
        let generous = Some(RateLimit {
            per_second: 100,
            burst: 100,
        });
        assert_eq!(limits.check_request(ip, "b", generous), RateDecision::Allow);
        assert_eq!(limits.check_request(ip, "b", generous), RateDecision::Allow);
        let off = Limits::new(&LimitSettings {
            default_rate: None,
            ..LimitSettings::default()
        });
        for _ in 0..100 {
            assert_eq!(off.check_request(ip, "a", None), RateDecision::Allow);
        }
    }
}
