//! What a node announces about itself, and the membership of the two pools.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DiscoveryError, Result};

/// The two node pools the coordinator routes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Draft,
    Target,
}

impl NodeKind {
    pub const ALL: [NodeKind; 2] = [NodeKind::Draft, NodeKind::Target];

    /// The name used in etcd keys and JSON: `draft` or `target`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Draft => "draft",
            NodeKind::Target => "target",
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeKind {
    type Err = DiscoveryError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "draft" => Ok(NodeKind::Draft),
            "target" => Ok(NodeKind::Target),
            other => Err(DiscoveryError::InvalidNode(format!(
                "unknown node kind {other:?} (expected \"draft\" or \"target\")"
            ))),
        }
    }
}

/// One serving node, as registered in etcd (the JSON value of its key) or listed statically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique within its kind; part of the etcd key, so no `/`. In Kubernetes: the pod name.
    pub id: String,
    pub kind: NodeKind,
    /// The model the node serves (file or folder name, or a model id). Empty = unknown (static lists).
    pub model: String,
    /// gRPC endpoint the coordinator dials, e.g. `http://10.1.2.3:50051`.
    pub address: String,
    /// How many requests the node serves at once (draft: concurrent Draft streams; target: concurrent
    /// sessions). 0 means the node is draining and takes no new work.
    pub capacity: u32,
    /// Free-form extras, e.g. `tp` (tensor-parallel size) or `device`. Omitted from JSON when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl NodeInfo {
    pub fn new(
        kind: NodeKind,
        id: impl Into<String>,
        model: impl Into<String>,
        address: impl Into<String>,
        capacity: u32,
    ) -> Self {
        NodeInfo {
            id: id.into(),
            kind,
            model: model.into(),
            address: address.into(),
            capacity,
            metadata: BTreeMap::new(),
        }
    }

    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Checks what a registration needs: an id usable as one etcd key segment and an address.
    pub fn validate(&self) -> Result<()> {
        if self.id.is_empty() {
            return Err(DiscoveryError::InvalidNode("empty node id".into()));
        }
        if self
            .id
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(DiscoveryError::InvalidNode(format!(
                "node id {:?} must not contain '/', whitespace or control characters",
                self.id
            )));
        }
        if self.address.trim().is_empty() {
            return Err(DiscoveryError::InvalidNode(format!(
                "node {:?} has an empty address",
                self.id
            )));
        }
        Ok(())
    }
}

/// The live members of both pools, each sorted by id (so equal memberships compare equal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub draft: Vec<NodeInfo>,
    pub target: Vec<NodeInfo>,
}

impl Membership {
    /// Splits nodes into the two pools, sorted by id; a later node with the same kind and id wins.
    pub fn from_nodes(nodes: impl IntoIterator<Item = NodeInfo>) -> Self {
        let mut by_key: BTreeMap<(NodeKind, String), NodeInfo> = BTreeMap::new();
        for node in nodes {
            by_key.insert((node.kind, node.id.clone()), node);
        }
        let mut membership = Membership::default();
        for ((kind, _), node) in by_key {
            match kind {
                NodeKind::Draft => membership.draft.push(node),
                NodeKind::Target => membership.target.push(node),
            }
        }
        membership
    }

    pub fn pool(&self, kind: NodeKind) -> &[NodeInfo] {
        match kind {
            NodeKind::Draft => &self.draft,
            NodeKind::Target => &self.target,
        }
    }

    pub fn get(&self, kind: NodeKind, id: &str) -> Option<&NodeInfo> {
        self.pool(kind).iter().find(|n| n.id == id)
    }

    pub fn len(&self) -> usize {
        self.draft.len() + self.target.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_info_json_round_trips_with_lowercase_kind() {
        let node = NodeInfo::new(
            NodeKind::Target,
            "target-0",
            "qwen",
            "http://10.0.0.1:50051",
            4,
        )
        .with_metadata("tp", "2");
        let json = serde_json::to_string(&node).unwrap();
        assert!(json.contains("\"kind\":\"target\""), "{json}");
        assert!(json.contains("\"tp\":\"2\""), "{json}");
        let back: NodeInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, node);
    }

    #[test]
    fn metadata_is_optional_in_json() {
        let json = r#"{"id":"d1","kind":"draft","model":"m","address":"http://a:1","capacity":2}"#;
        let node: NodeInfo = serde_json::from_str(json).unwrap();
        assert!(node.metadata.is_empty());
        assert!(!serde_json::to_string(&node).unwrap().contains("metadata"));
    }

    #[test]
    fn validate_rejects_bad_ids_and_addresses() {
        let ok = NodeInfo::new(NodeKind::Draft, "draft-0", "m", "http://a:1", 1);
        ok.validate().unwrap();
        for bad_id in ["", "a/b", "a b"] {
            let mut node = ok.clone();
            node.id = bad_id.into();
            assert!(matches!(
                node.validate(),
                Err(DiscoveryError::InvalidNode(_))
            ));
        }
        let mut node = ok;
        node.address = " ".into();
        assert!(matches!(
            node.validate(),
            Err(DiscoveryError::InvalidNode(_))
        ));
    }

    #[test]
    fn membership_splits_sorts_and_dedups() {
        let m = Membership::from_nodes([
            NodeInfo::new(NodeKind::Draft, "d2", "m", "http://b:1", 1),
            NodeInfo::new(NodeKind::Target, "t1", "M", "http://c:1", 1),
            NodeInfo::new(NodeKind::Draft, "d1", "m", "http://a:1", 1),
            NodeInfo::new(NodeKind::Draft, "d2", "m", "http://b:2", 3),
        ]);
        let ids: Vec<_> = m.draft.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["d1", "d2"]);
        assert_eq!(m.get(NodeKind::Draft, "d2").unwrap().capacity, 3);
        assert_eq!(m.pool(NodeKind::Target).len(), 1);
        assert_eq!(m.len(), 3);
        assert!(Membership::default().is_empty());
    }

    #[test]
    fn kind_parses_and_rejects_unknown() {
        assert_eq!("draft".parse::<NodeKind>().unwrap(), NodeKind::Draft);
        assert_eq!("target".parse::<NodeKind>().unwrap(), NodeKind::Target);
        assert!("router".parse::<NodeKind>().is_err());
    }
}
