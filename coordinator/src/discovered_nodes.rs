//! Both pools' members from live discovery (etcd): each call reads the latest membership, so nodes
//! that register or whose lease expires are picked up by the next request. A node that announces
//! capacity 0 (draining) gets no new work; otherwise its capacity is its number of engine slots.

use std::sync::Arc;

use scot_discovery::{Discovery, Membership, NodeKind};
use tokio::sync::watch;

use crate::node_source::{NodeSource, PoolMember};

pub struct DiscoveredNodes {
    /// Kept so the discovery's background task lives as long as the pools.
    _discovery: Arc<dyn Discovery>,
    membership: watch::Receiver<Membership>,
}

impl DiscoveredNodes {
    pub fn new(discovery: Arc<dyn Discovery>) -> Self {
        let membership = discovery.subscribe();
        Self {
            _discovery: discovery,
            membership,
        }
    }

    /// The members of one pool now.
    pub fn members(&self, kind: NodeKind) -> Vec<PoolMember> {
        self.membership
            .borrow()
            .pool(kind)
            .iter()
            .filter(|node| node.capacity > 0)
            .map(|node| PoolMember::new(node.address.clone(), node.capacity))
            .collect()
    }

    /// One pool's view, as a pool's source.
    pub fn pool(self: &Arc<Self>, kind: NodeKind) -> Arc<dyn NodeSource> {
        Arc::new(DiscoveredPool {
            nodes: self.clone(),
            kind,
        })
    }
}

struct DiscoveredPool {
    nodes: Arc<DiscoveredNodes>,
    kind: NodeKind,
}

impl NodeSource for DiscoveredPool {
    fn members(&self) -> Vec<PoolMember> {
        self.nodes.members(self.kind)
    }
}

#[cfg(test)]
mod tests {
    use scot_discovery::{NodeInfo, StaticDiscovery};

    use super::*;

    #[test]
    fn each_pool_reads_its_kind_and_skips_draining_nodes() {
        let membership = Membership::from_nodes([
            NodeInfo::new(NodeKind::Draft, "d-0", "m", "http://d0:1", 2),
            NodeInfo::new(NodeKind::Draft, "d-1", "m", "http://d1:1", 0),
            NodeInfo::new(NodeKind::Target, "t-0", "m", "http://t0:1", 1),
        ]);
        let nodes = Arc::new(DiscoveredNodes::new(Arc::new(StaticDiscovery::new(
            membership,
        ))));
        assert_eq!(
            nodes.pool(NodeKind::Draft).members(),
            [PoolMember::new("http://d0:1", 2)]
        );
        assert_eq!(
            nodes.pool(NodeKind::Target).members(),
            [PoolMember::new("http://t0:1", 1)]
        );
    }
}
