//! How many requests the coordinator solves at once, over both front doors (`--max-concurrent-requests`):
//! one more is refused at once (HTTP 429, gRPC RESOURCE_EXHAUSTED) instead of piling up. Admitted
//! requests that find every node of a pool at its limit wait in that pool's queue, so the queues are
//! bounded by this limit too.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl Admission {
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A place for one request, held until it ends; None when the coordinator is at its limit.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
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
