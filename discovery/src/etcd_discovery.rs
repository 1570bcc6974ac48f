//! Coordinator side: the live membership from etcd.
//!
//! One background task: connect, `get` the whole prefix (a full snapshot, replacing what we had), then
//! watch the prefix from the snapshot's revision + 1. On any error it keeps publishing the last membership
//! it saw, and starts over (new connection, new snapshot) after a backoff. Re-reading the snapshot rather
//! than resuming the watch at the old revision also covers compaction and an etcd that lost its data.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::backoff::BackoffTimer;
use crate::error::{DiscoveryError, Result};
use crate::etcd_config::EtcdConfig;
use crate::keys::{instances_prefix, parse_instance_key};
use crate::node::{Membership, NodeInfo};
use crate::Discovery;

/// Where the watcher stands with etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    /// No snapshot read yet since start.
    Connecting,
    /// Snapshot read and watch running; `revision` is the last etcd revision seen.
    Synced { revision: i64 },
    /// etcd unreachable or the watch broke: the last membership stays published while it retries.
    Disconnected { attempt: u32, error: String },
}

/// Membership from etcd, kept live by a background task that stops when this is dropped.
#[derive(Debug)]
pub struct EtcdDiscovery {
    membership: watch::Receiver<Membership>,
    state: watch::Receiver<SyncState>,
    task: JoinHandle<()>,
}

impl EtcdDiscovery {
    /// Starts watching; returns at once (the membership starts empty). Use `wait_synced` to wait for the
    /// first snapshot. Must be called inside a tokio runtime.
    pub fn spawn(config: EtcdConfig) -> Result<Self> {
        config.validate()?;
        let (membership_tx, membership) = watch::channel(Membership::default());
        let (state_tx, state) = watch::channel(SyncState::Connecting);
        let task = tokio::spawn(run_watcher(config, membership_tx, state_tx));
        Ok(EtcdDiscovery {
            membership,
            state,
            task,
        })
    }

    /// The sync state, live.
    pub fn sync_state(&self) -> watch::Receiver<SyncState> {
        self.state.clone()
    }

    /// Waits until the watcher has read a snapshot and is watching (after a start or a reconnect).
    pub async fn wait_synced(&self, timeout: Duration) -> Result<()> {
        let mut state = self.state.clone();
        let wait = async {
            state
                .wait_for(|s| matches!(s, SyncState::Synced { .. }))
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(DiscoveryError::Stopped),
            Err(_) => Err(DiscoveryError::WaitTimedOut {
                what: "etcd discovery sync",
                timeout,
                last_state: format!("{:?}", *self.state.borrow()),
            }),
        }
    }
}

impl Drop for EtcdDiscovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Discovery for EtcdDiscovery {
    fn subscribe(&self) -> watch::Receiver<Membership> {
        self.membership.clone()
    }
}

async fn run_watcher(
    config: EtcdConfig,
    membership_tx: watch::Sender<Membership>,
    state_tx: watch::Sender<SyncState>,
) {
    let mut backoff = BackoffTimer::new(config.backoff);
    let mut attempt = 0u32;
    loop {
        let error = watch_until_error(&config, &membership_tx, &state_tx, &mut backoff).await;
        attempt = attempt.saturating_add(1);
        let delay = backoff.next_delay();
        let kept = membership_tx.borrow().len();
        warn!(%error, attempt, ?delay, kept_nodes = kept, "etcd discovery lost; keeping the last membership and retrying");
        state_tx.send_replace(SyncState::Disconnected {
            attempt,
            error: error.to_string(),
        });
        tokio::time::sleep(delay).await;
    }
}

/// One connection's life: snapshot, then watch. Returns only on error.
async fn watch_until_error(
    config: &EtcdConfig,
    membership_tx: &watch::Sender<Membership>,
    state_tx: &watch::Sender<SyncState>,
    backoff: &mut BackoffTimer,
) -> DiscoveryError {
    match watch_session(config, membership_tx, state_tx, backoff).await {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

enum Never {}

async fn watch_session(
    config: &EtcdConfig,
    membership_tx: &watch::Sender<Membership>,
    state_tx: &watch::Sender<SyncState>,
    backoff: &mut BackoffTimer,
) -> Result<Never> {
    let prefix = instances_prefix(&config.prefix);
    let mut client = config.connect().await?;
    let snapshot = config
        .timed(
            "get",
            config.request_timeout,
            client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
    let mut revision = snapshot.header().map(|h| h.revision()).unwrap_or(0);
    let mut nodes: BTreeMap<String, NodeInfo> = BTreeMap::new();
    for kv in snapshot.kvs() {
        if let Some((key, node)) = decode_entry(&prefix, kv) {
            nodes.insert(key, node);
        }
    }
    publish(membership_tx, &nodes);

    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = config
        .timed(
            "watch",
            config.request_timeout,
            client.watch(prefix.as_str(), Some(options)),
        )
        .await?;
    backoff.reset();
    info!(revision, nodes = nodes.len(), prefix = %prefix, "etcd discovery synced");
    state_tx.send_replace(SyncState::Synced { revision });

    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Err(DiscoveryError::StreamClosed("watch")),
            Err(source) => {
                return Err(DiscoveryError::Etcd {
                    operation: "watch",
                    endpoints: config.endpoints_label(),
                    source,
                })
            }
        };
        if response.canceled() {
            return Err(DiscoveryError::WatchCancelled(format!(
                "{} (compact revision {})",
                response.cancel_reason(),
                response.compact_revision()
            )));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match event.event_type() {
                EventType::Put => match decode_entry(&prefix, kv) {
                    Some((key, node)) => {
                        debug!(%key, "node registered or updated");
                        nodes.insert(key, node);
                    }
                    // A key we cannot read must not keep an old value alive.
                    None => {
                        nodes.remove(&key);
                    }
                },
                EventType::Delete => {
                    debug!(%key, "node left");
                    nodes.remove(&key);
                }
            }
        }
        publish(membership_tx, &nodes);
        if let Some(header) = response.header() {
            if header.revision() > revision {
                revision = header.revision();
                state_tx.send_replace(SyncState::Synced { revision });
            }
        }
    }
}

/// Parses one key/value; logs and skips entries that are not a well-formed registration.
fn decode_entry(prefix: &str, kv: &KeyValue) -> Option<(String, NodeInfo)> {
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    let Some((kind, id)) = parse_instance_key(prefix, &key) else {
        warn!(%key, "ignoring a key that is not {prefix}{{kind}}/{{id}}");
        return None;
    };
    let node: NodeInfo = match serde_json::from_slice(kv.value()) {
        Ok(node) => node,
        Err(error) => {
            warn!(%key, %error, "ignoring a registration whose value is not NodeInfo JSON");
            return None;
        }
    };
    if node.kind != kind || node.id != id {
        warn!(%key, kind = %node.kind, id = %node.id, "ignoring a registration whose value names another key");
        return None;
    }
    Some((key, node))
}

fn publish(membership_tx: &watch::Sender<Membership>, nodes: &BTreeMap<String, NodeInfo>) {
    let next = Membership::from_nodes(nodes.values().cloned());
    membership_tx.send_if_modified(|current| {
        if *current == next {
            false
        } else {
            *current = next;
            true
        }
    });
}
