//! The draft pool: the draft nodes (from `--draft-nodes` or etcd), which of them are in routing, and
//! where one request's n drafts go (spread when the pool has room, packed under load: `placement`),
//! never past a node's in-flight limit; a request waits in the pool's queue while it is full.

use std::sync::Arc;

use scot_discovery::{Discovery, NodeKind};
use scot_proto::draft_service_server::SERVICE_NAME;

use crate::metrics::metrics;
use crate::node_pool::{AcquireError, NodeLease, NodePool, PoolNode, PoolSettings, Unreachable};
use crate::placement::{deal_indices, plan_drafts};
use crate::pool_members::PoolMembers;
use crate::request_fit::PoolLimits;
use crate::timing::Deadline;

/// The drafts of one request on one node, counted in flight there until finished or dropped.
#[derive(Debug)]
pub struct DraftAssignment {
    pub indices: Vec<u32>,
    pub lease: NodeLease,
}

impl DraftAssignment {
    pub fn node(&self) -> &Arc<PoolNode> {
        self.lease.node()
    }
}

pub struct DraftPool {
    pool: Arc<NodePool>,
}

impl DraftPool {
    /// `settings.name`/`service` are set here; the rest is the caller's.
    pub fn new(discovery: Arc<dyn Discovery>, settings: PoolSettings) -> Self {
        let settings = PoolSettings {
            name: NodeKind::Draft.as_str(),
            service: SERVICE_NAME,
            ..settings
        };
        Self {
            pool: NodePool::start(PoolMembers::new(discovery, NodeKind::Draft), settings),
        }
    }

    pub fn settings(&self) -> &PoolSettings {
        self.pool.settings()
    }

    /// The context and KV budget its nodes in routing reported (None: none reported yet).
    pub fn limits(&self) -> Option<PoolLimits> {
        PoolLimits::of(&self.pool.reports())
    }

    /// Requests waiting for room now.
    pub fn queued(&self) -> usize {
        self.pool.queued()
    }

    /// The nodes in routing and the others with the reason (also updates the pool gauges).
    pub async fn reachable(&self) -> (Vec<Arc<PoolNode>>, Vec<Unreachable>) {
        let (up, down) = self.pool.routable().await;
        metrics().set_pool(up.len(), down.len());
        (up, down)
    }

    /// Places the draft `indices` (waiting while the pool is full, until `deadline`). Which node writes
    /// which index does not change the drafts: index i is sampled with seed + i.
    pub async fn reserve(
        &self,
        indices: &[u32],
        deadline: Deadline,
    ) -> Result<Vec<DraftAssignment>, AcquireError> {
        let leases = self
            .pool
            .acquire(deadline, |loads, start| {
                plan_drafts(indices.len(), loads, start)
            })
            .await?;
        let counts: Vec<usize> = leases.iter().map(NodeLease::remaining).collect();
        Ok(leases
            .into_iter()
            .zip(deal_indices(&counts))
            .map(|(lease, positions)| DraftAssignment {
                indices: positions
                    .into_iter()
                    .filter_map(|p| indices.get(p as usize).copied())
                    .collect(),
                lease,
            })
            .collect())
    }
}
