//! The etcd key layout: `{prefix}/v1/instances/{kind}/{id}`, value = `NodeInfo` as JSON.
//!
//! The version segment lets a later layout live beside this one during a rolling upgrade.

use crate::node::NodeKind;

/// Default key prefix; every scot deployment sharing one etcd should use its own.
pub const DEFAULT_PREFIX: &str = "/scot";

/// `{prefix}/v1/instances/` (a trailing `/` on `prefix` is ignored). Watching this prefix sees every node.
pub fn instances_prefix(prefix: &str) -> String {
    format!("{}/v1/instances/", prefix.trim_end_matches('/'))
}

/// The key one node registers under.
pub fn instance_key(prefix: &str, kind: NodeKind, id: &str) -> String {
    format!("{}{}/{}", instances_prefix(prefix), kind, id)
}

/// Splits a key under `instances_prefix` into kind and id; `None` for keys of any other shape.
pub(crate) fn parse_instance_key<'k>(
    instances_prefix: &str,
    key: &'k str,
) -> Option<(NodeKind, &'k str)> {
    let rest = key.strip_prefix(instances_prefix)?;
    let (kind, id) = rest.split_once('/')?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some((kind.parse().ok()?, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_is_versioned_and_hierarchical() {
        assert_eq!(instances_prefix("/scot/"), "/scot/v1/instances/");
        assert_eq!(
            instance_key("/scot", NodeKind::Draft, "draft-7"),
            "/scot/v1/instances/draft/draft-7"
        );
    }

    #[test]
    fn parse_accepts_only_instance_keys() {
        let p = instances_prefix("/scot");
        assert_eq!(
            parse_instance_key(&p, "/scot/v1/instances/target/t-1"),
            Some((NodeKind::Target, "t-1"))
        );
        assert_eq!(parse_instance_key(&p, "/scot/v1/instances/target/"), None);
        assert_eq!(parse_instance_key(&p, "/scot/v1/instances/router/x"), None);
        assert_eq!(parse_instance_key(&p, "/scot/v1/instances/draft/a/b"), None);
        assert_eq!(parse_instance_key(&p, "/other/v1/instances/draft/a"), None);
    }
}
