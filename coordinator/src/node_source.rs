//! Where a pool learns which nodes exist: a static address list (`--draft-nodes`, `--target-node`) or
//! live discovery (etcd). Each member says how many engine slots it advertises; the pool turns slots
//! into its in-flight limit.

/// One node of a pool as its source lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    pub address: String,
    /// Engine slots the node advertises (its `--max-concurrent`); a static address counts as one.
    pub slots: u32,
}

impl PoolMember {
    pub fn new(address: impl Into<String>, slots: u32) -> Self {
        Self {
            address: address.into(),
            slots,
        }
    }
}

/// The members of one pool (read again on every routing decision, so membership changes apply live).
pub trait NodeSource: Send + Sync {
    fn members(&self) -> Vec<PoolMember>;
}

/// A fixed list (`--draft-nodes a,b`); blank entries are skipped.
#[derive(Debug, Clone, Default)]
pub struct StaticDraftNodes(pub Vec<String>);

impl NodeSource for StaticDraftNodes {
    fn members(&self) -> Vec<PoolMember> {
        self.0
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .map(|a| PoolMember::new(a, 1))
            .collect()
    }
}

/// One fixed target (`--target-node`), the one-machine default.
#[derive(Debug, Clone)]
pub struct StaticTargetNode(pub String);

impl NodeSource for StaticTargetNode {
    fn members(&self) -> Vec<PoolMember> {
        let address = self.0.trim();
        if address.is_empty() {
            Vec::new()
        } else {
            vec![PoolMember::new(address, 1)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_sources_skip_blanks() {
        let s = StaticDraftNodes(vec!["a:1".into(), " ".into(), " b:2 ".into()]);
        assert_eq!(
            s.members(),
            vec![PoolMember::new("a:1", 1), PoolMember::new("b:2", 1)]
        );
        assert!(StaticTargetNode(" ".into()).members().is_empty());
        assert_eq!(
            StaticTargetNode("t:1".into()).members(),
            vec![PoolMember::new("t:1", 1)]
        );
    }
}
