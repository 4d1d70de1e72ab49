//! The closed-loop write load: C clients, each sending one write and waiting for its answer, in
//! a loop, over one HTTP/1.1 keep-alive connection pool.
//!
//! A step warms up first (same load, not recorded), then measures for a fixed time or until a
//! maximum number of writes has been started, whichever comes first. Every acknowledged write's
//! latency is kept; failed writes are counted (with a few samples of what went wrong) and are
//! not part of the latency figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::host::{self, CpuSnap};
use crate::write::{WriteKey, WriteTarget};

/// Pause after a failed write, so a client facing a refusing server does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Distinct error messages kept per step.
const ERROR_SAMPLES: usize = 5;

/// The shared HTTP client: HTTP/1.1 keep-alive, no proxy, Nagle off, and an idle pool large
/// enough that `max_clients` concurrent clients keep `max_clients` connections open (one each)
/// instead of reconnecting.
pub fn http_client(
    max_clients: usize,
    request_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(max_clients.max(1) * 2)
        .pool_idle_timeout(Duration::from_secs(120))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(3))
        .timeout(request_timeout)
        .no_proxy()
        .build()
}

/// What one step does.
#[derive(Debug, Clone)]
pub struct StepSpec {
    /// Step number, part of every write's unique label.
    pub step: u32,
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// At most this many measured writes are started.
    pub max_requests: u64,
}

/// What one step measured.
#[derive(Debug, Clone, Default)]
pub struct StepOutcome {
    /// Latency of every acknowledged measured write, in µs, sorted.
    pub latencies_us: Vec<u32>,
    /// Measured writes that were not acknowledged.
    pub errors: u64,
    /// A few distinct error messages.
    pub error_samples: Vec<String>,
    /// From the start of the measurement to the last measured answer.
    pub elapsed: Duration,
    /// Hypervisor steal over the measurement, in % of all CPU time.
    pub steal_pct: Option<f64>,
    /// Established TCP connections to the target's port right after the step.
    pub connections: usize,
}

/// Runs one step against `base_url` (e.g. `http://127.0.0.1:4000`).
pub async fn run_step(
    http: &reqwest::Client,
    target: &WriteTarget,
    base_url: &str,
    spec: &StepSpec,
) -> StepOutcome {
    let url = format!("{base_url}{}", target.path());
    let start = Instant::now();
    let window = Window {
        measure_from: start + spec.warmup,
        until: start + spec.warmup + spec.duration,
        max_requests: spec.max_requests,
        started: Arc::new(AtomicU64::new(0)),
    };
    let mut clients = JoinSet::new();
    for client in 0..spec.clients {
        let driver = Client {
            http: http.clone(),
            target: target.clone(),
            url: url.clone(),
            step: spec.step,
            id: u32::try_from(client).unwrap_or(u32::MAX),
            window: window.clone(),
        };
        clients.spawn(driver.run());
    }

    tokio::time::sleep_until(window.measure_from.into()).await;
    let cpu = CpuSnap::now();
    let mut merged = ClientOutcome::default();
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok(outcome) => merged.absorb(outcome),
            Err(error) => {
                merged.errors += 1;
                merged.sample(format!("client task failed: {error}"));
            }
        }
    }
    let steal_pct = cpu.and_then(|c| c.steal_pct_since());
    let connections = port_of(base_url).map_or(0, host::established_to);
    let elapsed = merged.last_done.map_or(spec.duration, |done| {
        done.saturating_duration_since(window.measure_from)
    });
    merged.latencies_us.sort_unstable();
    StepOutcome {
        latencies_us: merged.latencies_us,
        errors: merged.errors,
        error_samples: merged.samples,
        elapsed,
        steal_pct,
        connections,
    }
}

/// When a step measures, shared by its clients.
#[derive(Debug, Clone)]
struct Window {
    measure_from: Instant,
    until: Instant,
    max_requests: u64,
    /// Measured writes started so far (all clients).
    started: Arc<AtomicU64>,
}

/// One closed-loop client.
#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    target: WriteTarget,
    url: String,
    step: u32,
    id: u32,
    window: Window,
}

impl Client {
    async fn run(self) -> ClientOutcome {
        let mut outcome = ClientOutcome::default();
        for seq in 0.. {
            let sent = Instant::now();
            if sent >= self.window.until {
                break;
            }
            let measured = sent >= self.window.measure_from;
            if measured
                && self.window.started.fetch_add(1, Ordering::Relaxed) >= self.window.max_requests
            {
                break;
            }
            let key = WriteKey::load(self.step, self.id, seq);
            let result = self.target.send(&self.http, &self.url, &key, None).await;
            let done = Instant::now();
            let failed = result.is_err();
            if measured {
                outcome.last_done = Some(done);
                match result {
                    Ok(()) => outcome.latencies_us.push(micros(done - sent)),
                    Err(error) => {
                        outcome.errors += 1;
                        outcome.sample(error.to_string());
                    }
                }
            }
            if failed {
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
        outcome
    }
}

#[derive(Debug, Default)]
struct ClientOutcome {
    latencies_us: Vec<u32>,
    errors: u64,
    samples: Vec<String>,
    last_done: Option<Instant>,
}

impl ClientOutcome {
    fn sample(&mut self, message: String) {
        if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&message) {
            self.samples.push(message);
        }
    }

    fn absorb(&mut self, other: ClientOutcome) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        for sample in other.samples {
            self.sample(sample);
        }
        self.last_done = self.last_done.max(other.last_done);
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The port of `http://HOST:PORT`.
fn port_of(base_url: &str) -> Option<u16> {
    base_url
        .rsplit(':')
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_of_a_base_url() {
        assert_eq!(port_of("http://127.0.0.1:4000"), Some(4000));
        assert_eq!(port_of("http://127.0.0.1:4000/"), Some(4000));
        assert_eq!(port_of("http://localhost"), None);
    }

    #[test]
    fn merging_keeps_few_distinct_samples_and_the_last_answer() {
        let now = Instant::now();
        let mut a = ClientOutcome {
            latencies_us: vec![1, 2],
            errors: 1,
            samples: vec!["x".into()],
            last_done: Some(now),
        };
        let later = now + Duration::from_millis(5);
        let b = ClientOutcome {
            latencies_us: vec![3],
            errors: 7,
            samples: (0..9)
                .map(|i| format!("e{i}"))
                .chain(["x".into()])
                .collect(),
            last_done: Some(later),
        };
        a.absorb(b);
        assert_eq!(a.latencies_us, vec![1, 2, 3]);
        assert_eq!(a.errors, 8);
        assert_eq!(a.samples.len(), ERROR_SAMPLES);
        assert_eq!(a.samples[0], "x");
        assert_eq!(a.last_done, Some(later));
    }
}
