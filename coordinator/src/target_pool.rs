//! The target pool: which target nodes exist (behind `TargetNodeSource`: `--target-node`, a pool of one,
//! or etcd discovery) and which one a request runs on (least outstanding requests first, ties taken in
//! turn).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::config::endpoint_url;

/// Where the pool learns which target nodes exist.
pub trait TargetNodeSource: Send + Sync {
    fn addresses(&self) -> Vec<String>;
}

/// One fixed target (`--target-node`), the one-machine default.
#[derive(Debug, Clone)]
pub struct StaticTargetNode(pub String);

impl TargetNodeSource for StaticTargetNode {
    fn addresses(&self) -> Vec<String> {
        let address = self.0.trim();
        if address.is_empty() {
            Vec::new()
        } else {
            vec![address.to_string()]
        }
    }
}

/// One target node: a (lazily connected) channel and the requests running on it.
#[derive(Debug)]
struct TargetNode {
    address: String,
    channel: Channel,
    outstanding: AtomicUsize,
}

/// The target one request runs on; counts as outstanding on that node until dropped.
#[derive(Debug)]
pub struct TargetLease {
    node: Arc<TargetNode>,
}

impl TargetLease {
    pub fn address(&self) -> &str {
        &self.node.address
    }

    pub fn channel(&self) -> Channel {
        self.node.channel.clone()
    }
}

impl Drop for TargetLease {
    fn drop(&mut self) {
        self.node.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct TargetPool {
    source: Arc<dyn TargetNodeSource>,
    nodes: Mutex<HashMap<String, Arc<TargetNode>>>,
    turn: AtomicUsize,
}

impl TargetPool {
    pub fn new(source: Arc<dyn TargetNodeSource>) -> Self {
        Self {
            source,
            nodes: Mutex::new(HashMap::new()),
            turn: AtomicUsize::new(0),
        }
    }

    /// The target for one request: the member with the fewest outstanding requests.
    pub fn pick(&self) -> Result<TargetLease, Status> {
        let addresses = self.source.addresses();
        let mut nodes = self
            .nodes
            .lock()
            .map_err(|_| Status::internal("target pool lock poisoned"))?;
        // Forget nodes that left; in-flight requests keep their own Arc.
        nodes.retain(|address, _| addresses.contains(address));
        let mut members = Vec::new();
        let mut invalid = Vec::new();
        for address in &addresses {
            if let Some(node) = nodes.get(address) {
                members.push(node.clone());
                continue;
            }
            match Endpoint::from_shared(endpoint_url(address)) {
                Ok(endpoint) => {
                    let node = Arc::new(TargetNode {
                        address: address.clone(),
                        channel: endpoint.connect_lazy(),
                        outstanding: AtomicUsize::new(0),
                    });
                    nodes.insert(address.clone(), node.clone());
                    members.push(node);
                }
                Err(e) => invalid.push(format!("{address}: {e}")),
            }
        }
        if members.is_empty() {
            let mut message = "no target node available".to_string();
            if !invalid.is_empty() {
                message.push_str(&format!(" (invalid addresses: {})", invalid.join("; ")));
            }
            return Err(Status::unavailable(message));
        }
        // Start the search at a rotating offset so ties go round-robin.
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % members.len();
        let node = (0..members.len())
            .map(|i| &members[(start + i) % members.len()])
            .min_by_key(|node| node.outstanding.load(Ordering::Relaxed))
            .cloned()
            .ok_or_else(|| Status::unavailable("no target node available"))?;
        node.outstanding.fetch_add(1, Ordering::Relaxed);
        Ok(TargetLease { node })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<String>);

    impl TargetNodeSource for Fixed {
        fn addresses(&self) -> Vec<String> {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn picks_the_least_busy_target_and_spreads_ties() {
        let pool = TargetPool::new(Arc::new(Fixed(vec!["a:1".into(), "b:1".into()])));
        let first = pool.pick().unwrap();
        let second = pool.pick().unwrap();
        assert_ne!(first.address(), second.address());
        let busy = first.address().to_string();
        drop(second);
        // `busy` still runs a request, so the other one is taken every time.
        for _ in 0..3 {
            assert_ne!(pool.pick().unwrap().address(), busy);
        }
    }

    #[tokio::test]
    async fn no_target_is_unavailable() {
        let pool = TargetPool::new(Arc::new(StaticTargetNode(" ".into())));
        assert_eq!(pool.pick().unwrap_err().code(), tonic::Code::Unavailable);
        let pool = TargetPool::new(Arc::new(StaticTargetNode("127.0.0.1:5".into())));
        assert_eq!(pool.pick().unwrap().address(), "127.0.0.1:5");
    }
}
