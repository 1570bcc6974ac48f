//! How a node stops (SIGTERM, Ctrl-C, or a test's request): it drains. Health turns NOT_SERVING and the
//! node leaves etcd first, so routers stop sending work; new engine jobs are refused UNAVAILABLE (a
//! caller retries them elsewhere); the jobs already accepted, running or waiting, get the grace period
//! (`--drain-grace-secs`, under the pod's terminationGracePeriodSeconds) to finish; then the server
//! stops.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The default drain grace period, in seconds: under the draft pods' terminationGracePeriodSeconds (90),
/// leaving time to deregister and exit. Target pods, whose answers run longer, set their own.
pub const DEFAULT_DRAIN_GRACE_SECS: u64 = 80;

/// A node's stop request and its drain's grace period. Clones share the request.
#[derive(Debug, Clone)]
pub struct NodeStop {
    requested: CancellationToken,
    /// Set once health says NOT_SERVING and new work is refused: only then does the node leave etcd.
    refusing: CancellationToken,
    grace: Duration,
}

impl NodeStop {
    pub fn new(grace: Duration) -> Self {
        Self {
            requested: CancellationToken::new(),
            refusing: CancellationToken::new(),
            grace,
        }
    }

    /// A stop requested when `signal` resolves (e.g. [`crate::shutdown_signal`]); spawned on the
    /// current runtime.
    pub fn on(
        signal: impl std::future::Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> Self {
        let stop = Self::new(grace);
        let requested = stop.requested.clone();
        tokio::spawn(async move {
            signal.await;
            requested.cancel();
        });
        stop
    }

    /// Starts the drain (idempotent).
    pub fn request(&self) {
        self.requested.cancel();
    }

    /// Resolves once a stop was requested.
    pub async fn requested(&self) {
        self.requested.cancelled().await;
    }

    /// Called by the server once it answers NOT_SERVING and refuses new work.
    pub fn refusing_new_work(&self) {
        self.refusing.cancel();
    }

    /// Resolves once the server answers NOT_SERVING and refuses new work.
    pub async fn refuses_new_work(&self) {
        self.refusing.cancelled().await;
    }

    pub fn is_requested(&self) -> bool {
        self.requested.is_cancelled()
    }

    /// How long accepted work may take to finish once the stop was requested.
    pub fn grace(&self) -> Duration {
        self.grace
    }
}
