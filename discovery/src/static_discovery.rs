//! Fixed membership: the one-machine default (the coordinator's `--draft-nodes`/`--target-node` lists).

use tokio::sync::watch;

use crate::node::{Membership, NodeInfo, NodeKind};
use crate::Discovery;

/// A membership that never changes. Receivers of `subscribe()` never see a change nor a close.
#[derive(Debug)]
pub struct StaticDiscovery {
    sender: watch::Sender<Membership>,
}

impl StaticDiscovery {
    pub fn new(membership: Membership) -> Self {
        StaticDiscovery {
            sender: watch::Sender::new(membership),
        }
    }

    /// Nodes named `draft-0`, `draft-1`, ... and `target-0`, ... at the given gRPC addresses, with an
    /// unknown model (empty string: ask the node) and capacity 1.
    pub fn from_addresses(draft: &[String], target: &[String]) -> Self {
        let nodes = |kind: NodeKind, addresses: &[String]| -> Vec<NodeInfo> {
            addresses
                .iter()
                .enumerate()
                .map(|(i, address)| {
                    NodeInfo::new(kind, format!("{kind}-{i}"), "", address.clone(), 1)
                })
                .collect()
        };
        StaticDiscovery::new(Membership {
            draft: nodes(NodeKind::Draft, draft),
            target: nodes(NodeKind::Target, target),
        })
    }
}

impl Discovery for StaticDiscovery {
    fn subscribe(&self) -> watch::Receiver<Membership> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_addresses_names_nodes_by_kind_and_position() {
        let discovery = StaticDiscovery::from_addresses(
            &[
                "http://127.0.0.1:50061".into(),
                "http://127.0.0.1:50062".into(),
            ],
            &["http://127.0.0.1:50071".into()],
        );
        let m = discovery.membership();
        assert_eq!(m.draft.len(), 2);
        assert_eq!(m.draft[1].id, "draft-1");
        assert_eq!(m.draft[1].address, "http://127.0.0.1:50062");
        assert_eq!(m.target[0].id, "target-0");
        assert_eq!(m.target[0].kind, NodeKind::Target);
    }

    #[tokio::test]
    async fn subscribers_see_the_fixed_membership_and_no_change() {
        let discovery = StaticDiscovery::from_addresses(&["http://a:1".into()], &[]);
        let mut rx = discovery.subscribe();
        assert_eq!(rx.borrow_and_update().draft.len(), 1);
        assert!(
            !rx.has_changed().unwrap(),
            "static membership must never change"
        );
    }
}
