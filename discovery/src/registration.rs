//! Node side: keep this node's key in etcd for as long as the node lives.
//!
//! One background task per registration: connect, grant a lease with the TTL, put
//! `{prefix}/v1/instances/{kind}/{id}` = `NodeInfo` JSON attached to it, then renew it every TTL/2 on the
//! keep-alive stream. When the lease is lost (etcd says TTL 0, no answer for a whole TTL, the stream
//! breaks, etcd restarts or loses its data) it starts over with a new lease after a backoff, and revokes
//! the previous lease once the key sits on the new one. Shutting down revokes the lease, so the
//! coordinator sees the node leave at once instead of after the TTL.
//!
//! The key is created only if absent (an etcd transaction): a second node with the same id is refused
//! (it retries, in case the first one's lease is expiring) instead of taking the key over. While the
//! lease lives the key is read back at every renewal: deleted or on another lease, the session starts
//! over (which recreates it if it is free).

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::backoff::BackoffTimer;
use crate::error::{DiscoveryError, Result};
use crate::etcd_config::EtcdConfig;
use crate::keys::instance_key;
use crate::node::NodeInfo;

/// etcd's own floor on lease TTLs is about 1.5 s with default timings; below 2 s a renewal at TTL/2 has
/// no slack.
pub const MIN_TTL: Duration = Duration::from_secs(2);

/// Where a registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// Not registered yet since start.
    Connecting,
    /// The key is in etcd on `lease_id`; `renewals` counts keep-alive answers on this lease.
    Registered { lease_id: i64, renewals: u64 },
    /// Lost or never reached etcd; retrying (the key may still be there until its lease expires).
    Retrying { attempt: u32, error: String },
}

/// A node's registration in etcd. Dropping it revokes the lease in the background (best effort; the
/// TTL is the backstop); `deregister` does the same and waits for the answer.
#[derive(Debug)]
pub struct Registration {
    key: String,
    node: watch::Sender<NodeInfo>,
    state: watch::Receiver<RegistrationState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
}

impl Registration {
    /// Validates, then starts registering in the background and returns at once: a node must come up
    /// even while etcd is down. `ttl` is rounded to whole seconds (etcd's unit), at least `MIN_TTL`.
    /// Must be called inside a tokio runtime.
    pub fn spawn(config: EtcdConfig, node: NodeInfo, ttl: Duration) -> Result<Self> {
        config.validate()?;
        node.validate()?;
        if ttl < MIN_TTL {
            return Err(DiscoveryError::InvalidConfig(format!(
                "lease TTL {ttl:?} is below the minimum {MIN_TTL:?}"
            )));
        }
        let key = instance_key(&config.prefix, node.kind, &node.id);
        let (node_tx, node_rx) = watch::channel(node);
        let (state_tx, state) = watch::channel(RegistrationState::Connecting);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let worker = Worker {
            config,
            key: key.clone(),
            ttl_secs: ttl.as_secs() as i64,
            node: node_rx,
            state: state_tx,
            current: None,
            stale_lease: None,
        };
        let task = tokio::spawn(worker.run(shutdown_rx));
        Ok(Registration {
            key,
            node: node_tx,
            state,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// The etcd key this node lives under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The registration state, live.
    pub fn state(&self) -> watch::Receiver<RegistrationState> {
        self.state.clone()
    }

    /// Replaces the announced info (say, capacity 0 while draining); written at once when registered,
    /// and on every re-registration. Kind and id must stay the same (they are the key).
    pub fn update(&self, node: NodeInfo) -> Result<()> {
        node.validate()?;
        let current = self.node.borrow();
        if node.kind != current.kind || node.id != current.id {
            return Err(DiscoveryError::InvalidNode(format!(
                "update may not change kind or id ({} {} -> {} {})",
                current.kind, current.id, node.kind, node.id
            )));
        }
        drop(current);
        self.node.send_replace(node);
        Ok(())
    }

    /// Waits until the key is in etcd; returns the lease id.
    pub async fn wait_registered(&self, timeout: Duration) -> Result<i64> {
        let mut state = self.state.clone();
        let wait = async {
            let state = state
                .wait_for(|s| matches!(s, RegistrationState::Registered { .. }))
                .await
                .map_err(|_| DiscoveryError::Stopped)?;
            match *state {
                RegistrationState::Registered { lease_id, .. } => Ok(lease_id),
                _ => Err(DiscoveryError::Stopped),
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(DiscoveryError::WaitTimedOut {
                what: "etcd registration",
                timeout,
                last_state: format!("{:?}", *self.state.borrow()),
            }),
        }
    }

    /// Stops renewing and revokes the lease, so the key disappears now. An error means etcd did not
    /// confirm the revoke; the key then goes when the lease expires.
    pub async fn deregister(mut self) -> Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|_| DiscoveryError::Stopped)?,
            None => Ok(()),
        }
    }
}

/// Runs inside the background task.
struct Worker {
    config: EtcdConfig,
    key: String,
    ttl_secs: i64,
    node: watch::Receiver<NodeInfo>,
    state: watch::Sender<RegistrationState>,
    /// The live session's client and lease, kept here so shutdown can revoke it.
    current: Option<(Client, i64)>,
    /// A lease from a broken session that may still exist in etcd; revoked after the next put.
    stale_lease: Option<i64>,
}

impl Worker {
    async fn run(mut self, mut shutdown: oneshot::Receiver<()>) -> Result<()> {
        let mut backoff = BackoffTimer::new(self.config.backoff);
        let mut attempt = 0u32;
        loop {
            // `shutdown` resolves on send and on drop of the Registration alike.
            let error = tokio::select! {
                _ = &mut shutdown => break,
                error = self.session_until_error(&mut backoff) => error,
            };
            if let Some((_, lease)) = self.current.take() {
                self.stale_lease = Some(lease);
            }
            attempt = attempt.saturating_add(1);
            let delay = backoff.next_delay();
            warn!(key = %self.key, %error, attempt, ?delay, "etcd registration lost; re-registering");
            self.state.send_replace(RegistrationState::Retrying {
                attempt,
                error: error.to_string(),
            });
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.revoke_on_shutdown().await
    }

    async fn revoke_on_shutdown(&mut self) -> Result<()> {
        let config = self.config.clone();
        let (mut client, lease) = match (self.current.take(), self.stale_lease.take()) {
            (Some(live), _) => live,
            // Registered once, but the session broke: the lease may still hold the key, so try anyway.
            (None, Some(stale)) => (config.connect().await?, stale),
            // Never registered: nothing to revoke.
            (None, None) => return Ok(()),
        };
        match config
            .timed(
                "lease revoke",
                config.request_timeout,
                client.lease_revoke(lease),
            )
            .await
        {
            Ok(_) => {}
            // Expired already: the key is gone, which is what deregistering wants.
            Err(error) if is_lease_not_found(&error) => {}
            Err(error) => return Err(error),
        }
        info!(key = %self.key, lease = format_args!("{lease:#x}"), "deregistered");
        Ok(())
    }

    async fn session_until_error(&mut self, backoff: &mut BackoffTimer) -> DiscoveryError {
        match self.session(backoff).await {
            Ok(never) => match never {},
            Err(error) => error,
        }
    }

    /// Grant, put, keep alive. Returns only on error.
    async fn session(&mut self, backoff: &mut BackoffTimer) -> Result<Never> {
        let config = self.config.clone();
        let mut client = config.connect().await?;
        let granted = config
            .timed(
                "lease grant",
                config.request_timeout,
                client.lease_grant(self.ttl_secs, None),
            )
            .await?;
        let lease = granted.id();
        self.current = Some((client.clone(), lease));
        self.claim(&mut client, lease).await?;
        if let Some(stale) = self.stale_lease.take() {
            // The key now sits on the new lease, so dropping the old one removes nothing.
            if let Err(error) = config
                .timed(
                    "lease revoke",
                    config.request_timeout,
                    client.lease_revoke(stale),
                )
                .await
            {
                debug!(%error, "old lease already gone");
            }
        }
        backoff.reset();
        info!(key = %self.key, lease = format_args!("{lease:#x}"), ttl_s = granted.ttl(), "registered in etcd");
        let mut renewals = 0u64;
        self.state.send_replace(RegistrationState::Registered {
            lease_id: lease,
            renewals,
        });

        let (mut keeper, mut answers) = config
            .timed(
                "lease keep-alive",
                config.request_timeout,
                client.lease_keep_alive(lease),
            )
            .await?;
        let ttl = Duration::from_secs(self.ttl_secs as u64);
        let mut renew = tokio::time::interval(ttl / 2);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_answer = Instant::now();
        loop {
            tokio::select! {
                _ = renew.tick() => {
                    if last_answer.elapsed() >= ttl {
                        return Err(DiscoveryError::LeaseLost {
                            lease_id: lease,
                            reason: format!("no keep-alive answer for {ttl:?}"),
                        });
                    }
                    config
                        .timed("lease keep-alive", config.request_timeout, keeper.keep_alive())
                        .await?;
                    self.check_key(&mut client, lease).await?;
                }
                answer = answers.message() => match answer {
                    Ok(Some(answer)) if answer.ttl() > 0 => {
                        last_answer = Instant::now();
                        renewals += 1;
                        self.state.send_replace(RegistrationState::Registered { lease_id: lease, renewals });
                    }
                    Ok(Some(_)) => {
                        return Err(DiscoveryError::LeaseLost {
                            lease_id: lease,
                            reason: "etcd reports it expired or revoked".into(),
                        })
                    }
                    Ok(None) => return Err(DiscoveryError::StreamClosed("lease keep-alive")),
                    Err(source) => {
                        return Err(DiscoveryError::Etcd {
                            operation: "lease keep-alive",
                            endpoints: config.endpoints_label(),
                            source,
                        })
                    }
                },
                changed = self.node.changed() => {
                    if changed.is_err() {
                        // The Registration is gone; `run` sees the shutdown signal next.
                        std::future::pending::<()>().await;
                    }
                    self.put(&mut client, lease).await?;
                }
            }
        }
    }

    /// Puts the key on `lease` only if it is absent, or still on one of this node's own leases (the
    /// current one, or the stale one of a session that broke). Someone else's key is refused.
    async fn claim(&mut self, client: &mut Client, lease: i64) -> Result<()> {
        let mine = [Some(lease), self.stale_lease];
        let mut when = vec![Compare::create_revision(
            self.key.as_str(),
            CompareOp::Equal,
            0,
        )];
        for own in mine.into_iter().flatten() {
            // etcd ANDs a transaction's compares, so each owner case is its own attempt below.
            when.push(Compare::lease(self.key.as_str(), CompareOp::Equal, own));
        }
        for compare in when {
            if self.put_if(client, lease, compare).await? {
                return Ok(());
            }
        }
        let holder = self.holder(client).await?;
        Err(DiscoveryError::IdTaken {
            key: self.key.clone(),
            holder,
        })
    }

    /// Puts the node on `lease` (node info changed while registered): only while the key is ours.
    async fn put(&mut self, client: &mut Client, lease: i64) -> Result<()> {
        let compare = Compare::lease(self.key.as_str(), CompareOp::Equal, lease);
        if self.put_if(client, lease, compare).await? {
            return Ok(());
        }
        Err(DiscoveryError::LeaseLost {
            lease_id: lease,
            reason: "the key was deleted or taken over".into(),
        })
    }

    /// One transaction: if `compare` holds, put the node on `lease`. Returns whether it held.
    async fn put_if(&mut self, client: &mut Client, lease: i64, compare: Compare) -> Result<bool> {
        let value = serde_json::to_vec(&*self.node.borrow())?;
        let txn = Txn::new().when([compare]).and_then([TxnOp::put(
            self.key.as_str(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        )]);
        let config = &self.config;
        let answer = config
            .timed("put", config.request_timeout, client.txn(txn))
            .await?;
        if answer.succeeded() {
            self.node.borrow_and_update();
        }
        Ok(answer.succeeded())
    }

    /// The key is still there on `lease`; otherwise the session ends (and the next one recreates it).
    async fn check_key(&mut self, client: &mut Client, lease: i64) -> Result<()> {
        match self.read_key(client).await? {
            Some(kv) if kv.lease() == lease => Ok(()),
            Some(kv) => Err(DiscoveryError::LeaseLost {
                lease_id: lease,
                reason: format!("the key was taken over by lease {:#x}", kv.lease()),
            }),
            None => Err(DiscoveryError::LeaseLost {
                lease_id: lease,
                reason: "the key was deleted".into(),
            }),
        }
    }

    /// Who holds the key now, for the error message.
    async fn holder(&mut self, client: &mut Client) -> Result<String> {
        Ok(match self.read_key(client).await? {
            Some(kv) => match serde_json::from_slice::<NodeInfo>(kv.value()) {
                Ok(node) => format!("{} (lease {:#x})", node.address, kv.lease()),
                Err(_) => format!("lease {:#x}", kv.lease()),
            },
            None => "nobody (it was just deleted)".into(),
        })
    }

    /// This node's key as etcd holds it now.
    async fn read_key(&mut self, client: &mut Client) -> Result<Option<KeyValue>> {
        let config = &self.config;
        let answer = config
            .timed(
                "get",
                config.request_timeout,
                client.get(self.key.as_str(), None),
            )
            .await?;
        Ok(answer.kvs().first().cloned())
    }
}

enum Never {}

fn is_lease_not_found(error: &DiscoveryError) -> bool {
    matches!(
        error,
        DiscoveryError::Etcd { source: etcd_client::Error::GRpcStatus(status), .. }
            if status.code() == tonic::Code::NotFound
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeKind;

    fn config() -> EtcdConfig {
        EtcdConfig::new(vec!["http://127.0.0.1:1".into()])
    }

    #[tokio::test]
    async fn spawn_rejects_short_ttl_and_bad_nodes_before_touching_etcd() {
        let node = NodeInfo::new(NodeKind::Draft, "d-0", "m", "http://10.0.0.1:50051", 1);
        assert!(matches!(
            Registration::spawn(config(), node.clone(), Duration::from_secs(1)),
            Err(DiscoveryError::InvalidConfig(_))
        ));
        let bad = NodeInfo {
            id: "a/b".into(),
            ..node.clone()
        };
        assert!(matches!(
            Registration::spawn(config(), bad, Duration::from_secs(10)),
            Err(DiscoveryError::InvalidNode(_))
        ));
        assert!(matches!(
            Registration::spawn(EtcdConfig::new(vec![]), node, Duration::from_secs(10)),
            Err(DiscoveryError::InvalidConfig(_))
        ));
    }

    #[tokio::test]
    async fn deregister_before_any_registration_is_a_no_op() {
        let node = NodeInfo::new(NodeKind::Target, "t-0", "m", "http://10.0.0.1:50051", 1);
        // Nothing listens on port 1: the registration never gets a lease, so there is nothing to revoke.
        let registration = Registration::spawn(config(), node, Duration::from_secs(10)).unwrap();
        assert_eq!(registration.key(), "/scot/v1/instances/target/t-0");
        registration.deregister().await.unwrap();
    }
}
