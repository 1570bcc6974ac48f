//! The one error type of scot-discovery.

use std::time::Duration;

/// Everything that can go wrong in discovery. Background tasks log these and retry; the calls that
/// return them directly are validation, `wait_*` helpers and `Registration::deregister`.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A `NodeInfo` that cannot be registered (empty id, `/` in the id, empty address, ...).
    #[error("invalid node info: {0}")]
    InvalidNode(String),
    /// A configuration value out of range (no endpoints, a lease TTL under 2 s, ...).
    #[error("invalid discovery config: {0}")]
    InvalidConfig(String),
    /// An etcd call failed (connection refused, gRPC status, broken stream).
    #[error("etcd {operation} at [{endpoints}] failed: {source}")]
    Etcd {
        operation: &'static str,
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    /// An etcd call did not answer in time (etcd down or partitioned).
    #[error("etcd {operation} at [{endpoints}] timed out after {timeout:?}")]
    Timeout {
        operation: &'static str,
        endpoints: String,
        timeout: Duration,
    },
    /// etcd says the lease no longer exists (it expired or was revoked), or no keep-alive answer came for
    /// a whole TTL.
    #[error("lease {lease_id:#x} was lost: {reason}")]
    LeaseLost { lease_id: i64, reason: String },
    /// Another node holds this node's key (the same id registered twice): refused, retried.
    #[error("node id already registered at {key} by {holder}; ids must be unique")]
    IdTaken { key: String, holder: String },
    /// etcd ended a stream (watch or lease keep-alive) without an error.
    #[error("etcd closed the {0} stream")]
    StreamClosed(&'static str),
    /// etcd cancelled the watch (for example, the revision was compacted).
    #[error("etcd cancelled the watch: {0}")]
    WatchCancelled(String),
    /// The node info could not be written as JSON.
    #[error("cannot encode node info as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// A `wait_*` helper gave up.
    #[error("{what} did not happen within {timeout:?} (last state: {last_state})")]
    WaitTimedOut {
        what: &'static str,
        timeout: Duration,
        last_state: String,
    },
    /// The background task has ended (its owner was dropped or shut down).
    #[error("the discovery background task has stopped")]
    Stopped,
}

pub type Result<T> = std::result::Result<T, DiscoveryError>;
