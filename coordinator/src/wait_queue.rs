//! The queue of requests waiting for room in a pool: first come, first placed. Only the head tries to
//! place itself when room frees up, so one release wakes one waiter (no thundering herd), and a request
//! that needs many drafts is not starved by later small ones.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

struct Waiter {
    id: u64,
    wake: Notify,
}

pub struct WaitQueue {
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
    next_id: AtomicU64,
    depth: Gauge,
}

impl std::fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitQueue")
            .field("len", &self.len())
            .finish()
    }
}

impl WaitQueue {
    /// `depth` follows the number of waiting requests (a metrics gauge).
    pub fn new(depth: Gauge) -> Self {
        Self {
            waiters: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
            depth,
        }
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_empty(&self) -> bool {
        self.waiters().is_empty()
    }

    pub fn len(&self) -> usize {
        self.waiters().len()
    }

    /// Joins the end of the queue; leaving it is dropping the ticket.
    pub fn join(self: &Arc<Self>) -> Ticket {
        let waiter = Arc::new(Waiter {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            wake: Notify::new(),
        });
        self.waiters().push_back(waiter.clone());
        self.depth.inc();
        Ticket {
            queue: self.clone(),
            waiter,
        }
    }

    /// Room was freed (work finished, a node came back): the head of the queue tries again.
    pub fn wake_head(&self) {
        if let Some(head) = self.waiters().front() {
            // Stores a permit when the head is not waiting yet, so the wake-up is never lost.
            head.wake.notify_one();
        }
    }
}

/// A place in the queue.
pub struct Ticket {
    queue: Arc<WaitQueue>,
    waiter: Arc<Waiter>,
}

impl Ticket {
    pub fn is_head(&self) -> bool {
        self.queue
            .waiters()
            .front()
            .is_some_and(|w| w.id == self.waiter.id)
    }

    /// Until this ticket is woken (it may not be the head yet: check again).
    pub async fn woken(&self) {
        self.waiter.wake.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut waiters = self.queue.waiters();
        let was_head = waiters.front().is_some_and(|w| w.id == self.waiter.id);
        waiters.retain(|w| w.id != self.waiter.id);
        self.queue.depth.dec();
        // The next in line may fit in the room this one leaves (or took only part of).
        if was_head {
            if let Some(head) = waiters.front() {
                head.wake.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_come_first_served_and_wakeups_are_not_lost() {
        let depth = Gauge::default();
        let queue = Arc::new(WaitQueue::new(depth.clone()));
        let first = queue.join();
        let second = queue.join();
        assert_eq!(depth.get(), 2);
        assert!(first.is_head() && !second.is_head());
        // Woken before it waits: the permit is kept.
        queue.wake_head();
        first.woken().await;
        drop(first);
        assert!(second.is_head());
        // Leaving as head wakes the next one.
        second.woken().await;
        drop(second);
        assert!(queue.is_empty());
        assert_eq!(depth.get(), 0);
    }
}
