//! Exponential backoff between reconnect attempts.

use std::time::Duration;

/// Delay before the first retry, doubling up to `max`.
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

    /// The delay to wait now; the following one doubles (capped at `max`).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.config.max);
        self.next = (self.next * 2).min(self.config.max);
        delay
    }

    /// Back to `initial` after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.config.initial;
    }
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
        let delays: Vec<_> = (0..4).map(|_| timer.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        timer.reset();
        assert_eq!(timer.next_delay().as_millis(), 100);
    }
}
