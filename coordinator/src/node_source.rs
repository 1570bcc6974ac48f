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

/// A fixed address list (`--draft-nodes a,b`, `--target-node a,b`); blank entries are skipped.
#[derive(Debug, Clone, Default)]
pub struct StaticNodes(pub Vec<String>);

impl NodeSource for StaticNodes {
    fn members(&self) -> Vec<PoolMember> {
        self.0
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .map(|a| PoolMember::new(a, 1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_sources_skip_blanks() {
        let s = StaticNodes(vec!["a:1".into(), " ".into(), " b:2 ".into()]);
        assert_eq!(
            s.members(),
            vec![PoolMember::new("a:1", 1), PoolMember::new("b:2", 1)]
        );
        assert!(StaticNodes(vec![" ".into()]).members().is_empty());
    }
}
