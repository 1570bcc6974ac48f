//! Both pools' members from live discovery (etcd): each call reads the latest membership, so nodes
//! that register or whose lease expires are picked up by the next request. A node that announces
//! capacity 0 (draining) gets no new work.

use std::sync::Arc;

use scot_discovery::{Discovery, Membership, NodeKind};
use tokio::sync::watch;

use crate::draft_pool::DraftNodeSource;
use crate::target_pool::TargetNodeSource;

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

    fn addresses(&self, kind: NodeKind) -> Vec<String> {
        self.membership
            .borrow()
            .pool(kind)
            .iter()
            .filter(|node| node.capacity > 0)
            .map(|node| node.address.clone())
            .collect()
    }
}

impl DraftNodeSource for DiscoveredNodes {
    fn addresses(&self) -> Vec<String> {
        DiscoveredNodes::addresses(self, NodeKind::Draft)
    }
}

impl TargetNodeSource for DiscoveredNodes {
    fn addresses(&self) -> Vec<String> {
        DiscoveredNodes::addresses(self, NodeKind::Target)
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
        let nodes = DiscoveredNodes::new(Arc::new(StaticDiscovery::new(membership)));
        assert_eq!(DraftNodeSource::addresses(&nodes), ["http://d0:1"]);
        assert_eq!(TargetNodeSource::addresses(&nodes), ["http://t0:1"]);
    }
}
