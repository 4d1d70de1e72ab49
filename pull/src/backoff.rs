//! The wait between attempts after an error: exponential, with jitter, from [`BACKOFF_MIN`] to
//! [`BACKOFF_MAX`], so that many edges and agents do not retry in lockstep.

use std::time::Duration;

use rand::Rng;

/// First wait after an error.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Exponential backoff with jitter between [`BACKOFF_MIN`] and [`BACKOFF_MAX`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The next wait: a random point in the upper half of the current step, which then doubles.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let low = step / 2;
        low + rand::thread_rng().gen_range(Duration::ZERO..=step - low)
    }

    /// Back to the shortest wait, after a success.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= BACKOFF_MIN / 2 && waits[0] <= BACKOFF_MIN);
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX));
        assert!(waits[7] >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.next_wait() <= BACKOFF_MIN);
    }
}
