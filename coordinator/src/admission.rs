//! How many requests the coordinator solves at once, over both front doors (`--max-concurrent-requests`):
//! one more is refused at once (HTTP 429, gRPC RESOURCE_EXHAUSTED) instead of piling up. Admitted
//! requests that find every node of a pool at its limit wait in that pool's queue, so the queues are
//! bounded by this limit too. When a drain runs out of time the requests still in flight are aborted,
//! so their clients get a clean UNAVAILABLE rather than a broken stream.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
    aborted: CancellationToken,
}

/// One admitted request's place, held until it ends.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    aborted: CancellationToken,
}

impl Admitted {
    /// Resolves when the coordinator gives up on the requests in flight (its drain timed out).
    pub async fn aborted(&self) {
        self.aborted.cancelled().await;
    }
}

impl Admission {
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            aborted: CancellationToken::new(),
        }
    }

    /// A place for one request, held until it ends; None when the coordinator is at its limit.
    pub fn try_admit(&self) -> Option<Admitted> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(Admitted {
            _permit: permit,
            aborted: self.aborted.clone(),
        })
    }

    /// Ends every request in flight with UNAVAILABLE (the drain's time is up).
    pub fn abort_in_flight(&self) {
        self.aborted.cancel();
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests admitted and not yet ended.
    pub fn in_flight(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }

    /// The semaphore itself (tests fill it to see the refusals).
    pub fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }
}
