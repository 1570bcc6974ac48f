//! The target pool: the target nodes (`--target-node`, or etcd discovery), which of them are in
//! routing, and which one a request runs on (least loaded against its in-flight limit, ties in turn);
//! a request waits in the pool's queue while every target is at its limit.

use std::sync::Arc;

use scot_discovery::{Discovery, NodeKind};
use scot_proto::target_service_server::SERVICE_NAME;

use tonic::Status;

use crate::node_pool::{AcquireError, NodeLease, NodePool, PoolNode, PoolSettings, Unreachable};
use crate::placement::{pick_target, Placement};
use crate::pool_members::PoolMembers;
use crate::request_fit::PoolLimits;
use crate::timing::Deadline;

/// The target one request runs on; counts as in flight on that node until dropped.
pub type TargetLease = NodeLease;

pub struct TargetPool {
    pool: Arc<NodePool>,
}

impl TargetPool {
    /// `settings.name`/`service` are set here; the rest is the caller's.
    pub fn new(discovery: Arc<dyn Discovery>, settings: PoolSettings) -> Self {
        let settings = PoolSettings {
            name: NodeKind::Target.as_str(),
            service: SERVICE_NAME,
            ..settings
        };
        Self {
            pool: NodePool::start(PoolMembers::new(discovery, NodeKind::Target), settings),
        }
    }

    /// The context and KV budget its nodes in routing reported (None: none reported yet).
    pub fn limits(&self) -> Option<PoolLimits> {
        PoolLimits::of(&self.pool.reports())
    }

    /// Requests waiting for room now.
    pub fn queued(&self) -> usize {
        self.pool.queued()
    }

    /// The nodes in routing and the others with the reason.
    pub async fn reachable(&self) -> (Vec<Arc<PoolNode>>, Vec<Unreachable>) {
        self.pool.routable().await
    }

    /// The target for one request. UNAVAILABLE when no target is in routing, RESOURCE_EXHAUSTED when
    /// every one stayed at its limit for the queue timeout.
    pub async fn pick(&self, deadline: Deadline) -> Result<TargetLease, Status> {
        let leases = self
            .pool
            .acquire(deadline, |loads, start| match pick_target(loads, start) {
                Placement::Placed(i) => {
                    let mut work = vec![0; loads.len()];
                    work[i] = 1;
                    Placement::Placed(work)
                }
                Placement::Full => Placement::Full,
                Placement::TooLarge { capacity } => Placement::TooLarge { capacity },
            })
            .await
            .map_err(|error| self.status(error))?;
        leases
            .into_iter()
            .next()
            .ok_or_else(|| Status::unavailable("no target node available"))
    }

    fn status(&self, error: AcquireError) -> Status {
        match error {
            AcquireError::NoNodes(reason) => {
                Status::unavailable(format!("no target node available: {reason}"))
            }
            AcquireError::Timeout { waited } => Status::resource_exhausted(format!(
                "every target node is at its in-flight limit ({} requests per node slot, --target-node-capacity); waited {} ms (--queue-timeout-ms); retry later",
                self.pool.settings().capacity_per_slot,
                waited.as_millis()
            )),
            AcquireError::TooLarge { .. } => Status::unavailable("no target node available"),
        }
    }
}
