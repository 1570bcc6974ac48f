//! The draft pool: which draft nodes exist (behind `DraftNodeSource`, a static list for now; etcd
//! discovery plugs in later), which of them answer their health check, and how one request's n draft
//! indices are spread over them (least outstanding work first).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::config::endpoint_url;

/// The gRPC service name draft nodes report in their health checks.
pub const DRAFT_SERVICE_NAME: &str = "scot.v1.DraftService";

/// Where the pool learns which draft nodes exist.
pub trait DraftNodeSource: Send + Sync {
    fn addresses(&self) -> Vec<String>;
}

/// A fixed list (`--draft-nodes a,b`).
#[derive(Debug, Clone, Default)]
pub struct StaticDraftNodes(pub Vec<String>);

impl DraftNodeSource for StaticDraftNodes {
    fn addresses(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect()
    }
}

/// One draft node: a (lazily connected) channel and the number of drafts it is writing for us.
#[derive(Debug)]
pub struct DraftNode {
    pub address: String,
    pub channel: Channel,
    outstanding: AtomicUsize,
}

impl DraftNode {
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// Drafts a node is writing for one request; every draft not reported finished is released on drop.
#[derive(Debug)]
pub struct WorkLease {
    node: Arc<DraftNode>,
    remaining: usize,
}

impl WorkLease {
    pub fn new(node: Arc<DraftNode>, drafts: usize) -> Self {
        node.outstanding.fetch_add(drafts, Ordering::Relaxed);
        Self {
            node,
            remaining: drafts,
        }
    }

    pub fn finish_one(&mut self) {
        if self.remaining > 0 {
            self.remaining -= 1;
            self.node.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for WorkLease {
    fn drop(&mut self) {
        self.node
            .outstanding
            .fetch_sub(self.remaining, Ordering::Relaxed);
    }
}

/// A draft node that failed its health check, and why.
#[derive(Debug, Clone)]
pub struct Unreachable {
    pub address: String,
    pub reason: String,
}

pub struct DraftPool {
    source: Arc<dyn DraftNodeSource>,
    nodes: Mutex<HashMap<String, Arc<DraftNode>>>,
    health_timeout: Duration,
}

impl DraftPool {
    pub fn new(source: Arc<dyn DraftNodeSource>, health_timeout: Duration) -> Self {
        Self {
            source,
            nodes: Mutex::new(HashMap::new()),
            health_timeout,
        }
    }

    /// The current members whose health check says SERVING, and the others with the reason.
    pub async fn reachable(&self) -> (Vec<Arc<DraftNode>>, Vec<Unreachable>) {
        let addresses = self.source.addresses();
        let mut members = Vec::new();
        let mut unreachable = Vec::new();
        for address in addresses {
            match self.node(&address) {
                Ok(node) => members.push(node),
                Err(reason) => unreachable.push(Unreachable { address, reason }),
            }
        }
        let checks = members
            .iter()
            .map(|node| check_health(node, self.health_timeout));
        let results = futures::future::join_all(checks).await;
        let mut ready = Vec::new();
        for (node, result) in members.into_iter().zip(results) {
            match result {
                Ok(()) => ready.push(node),
                Err(reason) => unreachable.push(Unreachable {
                    address: node.address.clone(),
                    reason,
                }),
            }
        }
        (ready, unreachable)
    }

    fn node(&self, address: &str) -> Result<Arc<DraftNode>, String> {
        let mut nodes = self
            .nodes
            .lock()
            .map_err(|_| "draft pool lock poisoned".to_string())?;
        if let Some(node) = nodes.get(address) {
            return Ok(node.clone());
        }
        let endpoint = Endpoint::from_shared(endpoint_url(address))
            .map_err(|e| format!("invalid address: {e}"))?
            .connect_timeout(self.health_timeout);
        let node = Arc::new(DraftNode {
            address: address.to_string(),
            channel: endpoint.connect_lazy(),
            outstanding: AtomicUsize::new(0),
        });
        nodes.insert(address.to_string(), node.clone());
        Ok(node)
    }
}

async fn check_health(node: &DraftNode, timeout: Duration) -> Result<(), String> {
    let mut client = HealthClient::new(node.channel.clone());
    let request = HealthCheckRequest {
        service: DRAFT_SERVICE_NAME.to_string(),
    };
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => Err(format!("health check timed out after {timeout:?}")),
        Ok(Err(status)) => Err(format!("health check failed: {}", status.message())),
        Ok(Ok(response)) => {
            let status = response.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                Ok(())
            } else {
                Err(format!("not serving (health status {status})"))
            }
        }
    }
}

/// Spreads draft indices 0..n over nodes with the given outstanding work: each index goes to the node
/// with the least work (outstanding + assigned so far), ties to the earlier node. Returns one list per
/// node (possibly empty). Draft i is sampled with seed + i on whichever node, so the spread does not
/// change the drafts.
pub fn assign_drafts(n: u32, outstanding: &[usize]) -> Vec<Vec<u32>> {
    let mut load: Vec<usize> = outstanding.to_vec();
    let mut plan = vec![Vec::new(); outstanding.len()];
    for index in 0..n {
        let Some((best, _)) = load.iter().enumerate().min_by_key(|&(i, &l)| (l, i)) else {
            break;
        };
        plan[best].push(index);
        load[best] += 1;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_evenly_over_idle_nodes() {
        assert_eq!(assign_drafts(5, &[0, 0]), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(assign_drafts(3, &[0]), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn prefers_the_least_loaded_node() {
        // loads 5,0,1: index 0 -> node 1 (0), index 1 -> node 1 (tie at 1, earlier wins), index 2 -> node 2.
        assert_eq!(
            assign_drafts(3, &[5, 0, 1]),
            vec![vec![], vec![0, 1], vec![2]]
        );
    }

    #[test]
    fn no_nodes_no_plan() {
        assert!(assign_drafts(3, &[]).is_empty());
    }

    #[test]
    fn static_source_skips_blanks() {
        let s = StaticDraftNodes(vec!["a:1".into(), " ".into(), " b:2 ".into()]);
        assert_eq!(s.addresses(), vec!["a:1", "b:2"]);
    }

    #[tokio::test]
    async fn leases_count_outstanding_work() {
        let node = Arc::new(DraftNode {
            address: "x".into(),
            channel: Endpoint::from_static("http://127.0.0.1:9").connect_lazy(),
            outstanding: AtomicUsize::new(0),
        });
        let mut lease = WorkLease::new(node.clone(), 3);
        assert_eq!(node.outstanding(), 3);
        lease.finish_one();
        assert_eq!(node.outstanding(), 2);
        drop(lease);
        assert_eq!(node.outstanding(), 0);
    }

    #[tokio::test]
    async fn unreachable_nodes_are_reported_with_a_reason() {
        // Port 9 (discard) on loopback: nothing listens there.
        let pool = DraftPool::new(
            Arc::new(StaticDraftNodes(vec![
                "127.0.0.1:9".into(),
                "not a url".into(),
            ])),
            Duration::from_millis(500),
        );
        let (ready, unreachable) = pool.reachable().await;
        assert!(ready.is_empty());
        assert_eq!(unreachable.len(), 2);
        assert!(unreachable.iter().all(|u| !u.reason.is_empty()));
    }
}
