//! Exponential backoff between reconnect attempts, with jitter so that nodes which lost etcd together do
//! not all come back in the same instant.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// Delay before the first retry, doubling up to `max`; each delay is then scaled by a random factor in
/// [0.8, 1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

/// The running state of one retry loop.
#[derive(Debug)]
pub(crate) struct BackoffTimer {
    config: Backoff,
    next: Duration,
}

impl BackoffTimer {
    pub(crate) fn new(config: Backoff) -> Self {
        BackoffTimer {
            config,
            next: config.initial,
        }
    }

    /// The delay to wait now (jittered); the following one doubles (capped at `max`).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.config.max);
        self.next = (self.next * 2).min(self.config.max);
        delay.mul_f64(0.8 + 0.4 * unit_random())
    }

    /// Back to `initial` after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.config.initial;
    }
}

/// A number in [0, 1) from std's per-instance random hasher keys; good enough for jitter.
fn unit_random() -> f64 {
    let bits = RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_and_resets() {
        let mut timer = BackoffTimer::new(Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
        });
        let within = |delay: Duration, base_ms: f64| {
            let ms = delay.as_secs_f64() * 1000.0;
            ms >= base_ms * 0.8 - 1e-6 && ms < base_ms * 1.2
        };
        for base in [100.0, 200.0, 350.0, 350.0] {
            let delay = timer.next_delay();
            assert!(within(delay, base), "{delay:?} not within 20% of {base} ms");
        }
        timer.reset();
        let delay = timer.next_delay();
        assert!(within(delay, 100.0), "{delay:?} after reset");
    }
}
