//! # scot-discovery: which draft and target nodes exist
//!
//! The coordinator routes to two pools (draft, target). This crate tells it who is in them, either from
//! fixed lists (one machine, the default) or live from etcd (a cluster), and lets nodes announce
//! themselves in etcd.
//!
//! ## API
//!
//! ```text
//! NodeKind    = Draft | Target                       (JSON/key: "draft" | "target")
//! NodeInfo    { id, kind, model, address, capacity, metadata: BTreeMap<String,String> }   (serde JSON)
//! Membership  { draft: Vec<NodeInfo>, target: Vec<NodeInfo> }   each sorted by id
//!
//! trait Discovery: Send + Sync
//!     fn subscribe(&self) -> tokio::sync::watch::Receiver<Membership>   // live; changed() on every change
//!     fn membership(&self) -> Membership                                // snapshot (provided)
//!
//! StaticDiscovery::new(Membership) | ::from_addresses(&draft_addrs, &target_addrs)   // never changes
//!
//! EtcdConfig::new(endpoints) | ::from_endpoint_list("http://a:2379,http://b:2379")
//!     .with_prefix("/scot") .with_backoff(Backoff { initial, max })   // + timeouts as pub fields
//! EtcdDiscovery::spawn(EtcdConfig) -> Result<EtcdDiscovery>   // coordinator side, returns at once
//!     .wait_synced(timeout).await    .sync_state() -> watch::Receiver<SyncState>
//!     SyncState = Connecting | Synced { revision } | Disconnected { attempt, error }
//!
//! Registration::spawn(EtcdConfig, NodeInfo, ttl) -> Result<Registration>   // node side, returns at once
//!     .wait_registered(timeout).await -> lease id    .state() -> watch::Receiver<RegistrationState>
//!     .update(NodeInfo)        // e.g. capacity 0 when draining; re-put at once
//!     .deregister().await      // revoke the lease: the key goes now (dropping does it best-effort)
//!     RegistrationState = Connecting | Registered { lease_id, renewals } | Retrying { attempt, error }
//!
//! instance_key(prefix, kind, id) = "{prefix}/v1/instances/{kind}/{id}"   instances_prefix(prefix)
//! DiscoveryError (thiserror), Result<T>
//!
//! loopback_port() / loopback_addr()   // free 127.0.0.1 ports for a one-machine cluster, never one twice
//!
//! // clap flags/env matching k8s/ (flatten them into the binaries' CLIs):
//! EtcdArgs { --etcd-endpoints SCOT_ETCD_ENDPOINTS (comma list), --etcd-prefix SCOT_ETCD_PREFIX }
//!     .config() -> Option<EtcdConfig>          // None = no etcd: use StaticDiscovery
//! RegistrationArgs { EtcdArgs, --node-id SCOT_NODE_ID, --advertise-addr SCOT_ADVERTISE_ADDR,
//!                    --lease-ttl-secs SCOT_LEASE_TTL_SECS (10) }
//!     .node_info(kind, model, capacity, listen_addr) -> Result<NodeInfo>
//!     .spawn(NodeInfo) -> Result<Option<Registration>>   // None = no etcd configured
//! ```
//!
//! ## Behaviour
//!
//! - A node's key lives on a lease with the TTL (default suggestion 10 s); a task renews it every TTL/2.
//!   If the lease is lost (etcd restarted, lost its data, or answered nothing for a whole TTL) the task
//!   grants a new lease and puts the key again, retrying with exponential backoff while etcd is down.
//! - The watcher reads the whole prefix, then watches from that revision + 1. On any error it keeps the
//!   last membership, retries with backoff, and on reconnect reads a fresh snapshot, so it catches up on
//!   whatever happened while it was away (including compaction or a wiped etcd).
//! - Entries that are not valid `NodeInfo` JSON, or whose kind/id disagree with their key, are logged
//!   and left out of the membership.
//! - Both background tasks run on the caller's tokio runtime and stop when their handle is dropped.
//!
//! ## Wiring (for the binaries)
//!
//! ```text
//! coordinator: let live: Option<Arc<dyn Discovery>> = args.etcd.config()           // args.etcd: EtcdArgs
//!                  .map(|config| Arc::new(EtcdDiscovery::spawn(config)?));
//!              let fixed = Arc::new(StaticDiscovery::from_addresses(&draft_nodes, &target_nodes));
//!              // each pool reads its flag's list when it names nodes, else `live`, through
//!              // discovery.subscribe().borrow().pool(kind) on every routing decision
//! nodes:       let node = args.registration.node_info(NodeKind::Draft, model_name, capacity, listen)?;
//!              let registration = args.registration.spawn(node)?;   // after the model is loaded
//!              ... serve ...;  on SIGTERM: if let Some(r) = registration { r.deregister().await }
//! ```

mod args;
mod backoff;
mod error;
mod etcd_config;
mod etcd_discovery;
mod keys;
mod loopback_port;
mod node;
mod registration;
mod static_discovery;
#[cfg(feature = "test-etcd")]
pub mod test_etcd;

pub use args::{EtcdArgs, RegistrationArgs};
pub use backoff::Backoff;
pub use error::{DiscoveryError, Result};
pub use etcd_config::{EtcdConfig, EtcdTls, Secret};
pub use etcd_discovery::{EtcdDiscovery, SyncState};
pub use keys::{instance_key, instances_prefix, DEFAULT_PREFIX};
pub use loopback_port::{loopback_addr, loopback_port};
pub use node::{Membership, NodeInfo, NodeKind};
pub use registration::{Registration, RegistrationState, MIN_TTL};
pub use static_discovery::StaticDiscovery;

use tokio::sync::watch;

/// A source of pool membership.
pub trait Discovery: Send + Sync {
    /// A receiver of the live membership; `changed()` fires on every change.
    fn subscribe(&self) -> watch::Receiver<Membership>;

    /// The membership now.
    fn membership(&self) -> Membership {
        self.subscribe().borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn both_sources_work_behind_one_trait_object() {
        let sources: Vec<Arc<dyn Discovery>> = vec![
            Arc::new(StaticDiscovery::from_addresses(&["http://a:1".into()], &[])),
            Arc::new(
                EtcdDiscovery::spawn(EtcdConfig::new(vec!["http://127.0.0.1:1".into()])).unwrap(),
            ),
        ];
        assert_eq!(sources[0].membership().draft.len(), 1);
        // An unreachable etcd yields an empty (not an error) membership until it answers.
        assert!(sources[1].membership().is_empty());
    }

    #[test]
    fn unknown_json_fields_from_newer_nodes_are_ignored() {
        let json = r#"{"id":"d1","kind":"draft","model":"m","address":"http://a:1","capacity":2,"zone":"eu"}"#;
        let node: NodeInfo = serde_json::from_str(json).unwrap();
        assert_eq!(node.id, "d1");
    }
}
