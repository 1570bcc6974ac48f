//! Where a pool learns which nodes exist: a `Discovery` (the flags' fixed lists, or etcd's live
//! membership). Each read takes the latest membership, so nodes that register or whose lease expires
//! are picked up by the next request. A node that announces capacity 0 (draining) gets no new work;
//! otherwise its engine slots become the pool's in-flight limit for it.

use std::sync::Arc;

use scot_discovery::{Discovery, Membership, NodeKind};
use tokio::sync::watch;

/// One node of a pool as its discovery lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    /// The node's id: what clients see of it, and with mTLS the name its certificate must carry
    /// when the pool reads etcd (see `NodeIdentity`).
    pub id: String,
    pub address: String,
    /// Engine slots the membership lists (etcd: the node's `--max-concurrent`; a flag's address:
    /// one); the node's own load report overrides it once read.
    pub slots: u32,
}

impl PoolMember {
    pub fn new(id: impl Into<String>, address: impl Into<String>, slots: u32) -> Self {
        Self {
            id: id.into(),
            address: address.into(),
            slots,
        }
    }
}

/// One pool's view of a discovery: the members of one kind.
pub struct PoolMembers {
    /// Kept so the discovery's background task (etcd's watcher) lives as long as the pool.
    _discovery: Arc<dyn Discovery>,
    membership: watch::Receiver<Membership>,
    kind: NodeKind,
}

impl PoolMembers {
    pub fn new(discovery: Arc<dyn Discovery>, kind: NodeKind) -> Self {
        let membership = discovery.subscribe();
        Self {
            _discovery: discovery,
            membership,
            kind,
        }
    }

    /// The pool's members now (read again on every routing decision).
    pub fn members(&self) -> Vec<PoolMember> {
        self.membership
            .borrow()
            .pool(self.kind)
            .iter()
            .filter(|node| node.capacity > 0)
            .map(|node| PoolMember::new(node.id.clone(), node.address.clone(), node.capacity))
            .collect()
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
        let discovery: Arc<dyn Discovery> = Arc::new(StaticDiscovery::new(membership));
        assert_eq!(
            PoolMembers::new(discovery.clone(), NodeKind::Draft).members(),
            [PoolMember::new("d-0", "http://d0:1", 2)]
        );
        assert_eq!(
            PoolMembers::new(discovery, NodeKind::Target).members(),
            [PoolMember::new("t-0", "http://t0:1", 1)]
        );
    }

    #[test]
    fn flag_lists_count_one_slot_each() {
        let discovery: Arc<dyn Discovery> = Arc::new(StaticDiscovery::from_addresses(
            &["a:1".into(), "b:2".into()],
            &[],
        ));
        assert_eq!(
            PoolMembers::new(discovery.clone(), NodeKind::Draft).members(),
            [
                PoolMember::new("draft-0", "a:1", 1),
                PoolMember::new("draft-1", "b:2", 1)
            ]
        );
        assert!(PoolMembers::new(discovery, NodeKind::Target)
            .members()
            .is_empty());
    }
}
