//! What the draft and target pools share: the members from their discovery, a lazily connected channel
//! per node, each node's health and load report (polled in the background, checked before first use,
//! and set down at once when a call fails UNAVAILABLE), the work in flight per node against its
//! capacity, and the queue of requests waiting for room when every node is at its limit. A node whose
//! report shows its line full (every coordinator's calls counted) gets no new call until one of ours
//! ends there or a later report shows room.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::metrics::{metrics, NodeGauges};
use crate::node_health::{check_health, fetch_load, Health};
use crate::placement::{NodeLoad, Placement};
use crate::pool_members::PoolMembers;
use crate::timing::Deadline;
use crate::wait_queue::{Ticket, WaitQueue};
use scot_proto::LoadReport;
use scot_tls::Tls;

/// How a pool is run.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// `draft` or `target`: metrics label and log field.
    pub name: &'static str,
    /// The gRPC service name asked about in health checks.
    pub service: &'static str,
    /// In-flight limit per engine slot of a node (the slots its load report states; before its first
    /// report, its etcd capacity, or one for a flag's address).
    pub capacity_per_slot: usize,
    /// Slots a member's advertised count is clamped to (`--max-node-slots`).
    pub max_slots: u32,
    pub health_timeout: Duration,
    /// Background health checks every this long; None: every routing decision checks every member.
    pub health_interval: Option<Duration>,
    /// The longest a request waits for room before it is refused.
    pub queue_timeout: Duration,
    /// mTLS towards the nodes: a node must present a certificate from the cluster CA that names
    /// the identity below, or it gets no call (its health check fails the handshake).
    pub tls: Option<Tls>,
    pub identity: NodeIdentity,
}

/// The name a member's certificate must carry (with mTLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeIdentity {
    /// The id it registered (etcd): an entry naming another node's address, or a node claiming an
    /// id it holds no certificate for, fails the handshake.
    NodeId,
    /// The host of its address (a flag's fixed list, which the operator wrote).
    AddressHost,
}

/// HTTP/2 ping period on a node's channel when background health checks are off.
const KEEPALIVE_WITHOUT_CHECKS: Duration = Duration::from_secs(10);

impl PoolSettings {
    /// A node's channel. HTTP/2 keepalive pings it every health interval, even with calls in flight,
    /// and close the connection when one goes unanswered for the health timeout: a stalled or
    /// partitioned node (SIGSTOP, a pulled cable) then fails its open calls instead of hanging them.
    fn channel(&self, endpoint: Endpoint) -> Channel {
        endpoint
            .connect_timeout(self.health_timeout)
            .http2_keep_alive_interval(self.health_interval.unwrap_or(KEEPALIVE_WITHOUT_CHECKS))
            .keep_alive_timeout(self.health_timeout)
            .keep_alive_while_idle(true)
            .tcp_keepalive(Some(KEEPALIVE_WITHOUT_CHECKS))
            .connect_lazy()
    }
}

/// One node of a pool.
#[derive(Debug)]
pub struct PoolNode {
    /// What clients see of the node (never its address).
    pub id: String,
    pub address: String,
    pub channel: Channel,
    pool: &'static str,
    capacity: AtomicUsize,
    outstanding: AtomicUsize,
    health: Mutex<Health>,
    /// Calls that found the node gone so far (a health check that began before the latest one does
    /// not bring it back).
    call_failures: AtomicUsize,
    /// The node's last load report and the calls it can still take by it (ours counted since).
    reported: Mutex<Option<Reported>>,
    gauges: NodeGauges,
}

#[derive(Debug, Clone)]
struct Reported {
    report: LoadReport,
    calls_free: usize,
}

impl PoolNode {
    fn new(pool: &'static str, id: &str, address: &str, channel: Channel, capacity: usize) -> Self {
        let gauges = metrics().pool_node(pool, id);
        gauges.capacity.set(capacity as i64);
        gauges.in_flight.set(0);
        gauges.up.set(0);
        Self {
            id: id.to_string(),
            address: address.to_string(),
            channel,
            pool,
            capacity: AtomicUsize::new(capacity),
            outstanding: AtomicUsize::new(0),
            health: Mutex::new(Health::Unknown),
            call_failures: AtomicUsize::new(0),
            reported: Mutex::new(None),
            gauges,
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// The load routing sees: full when the node's own report leaves no call free.
    pub fn load(&self) -> NodeLoad {
        let capacity = self.capacity();
        if self.reported().is_some_and(|r| r.calls_free == 0) {
            return NodeLoad::new(capacity.max(self.outstanding()), capacity);
        }
        NodeLoad::new(self.outstanding(), capacity)
    }

    /// The node's last load report (None: it never answered one).
    pub fn report(&self) -> Option<LoadReport> {
        self.reported().map(|r| r.report)
    }

    fn reported(&self) -> Option<Reported> {
        self.reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_report(&self, report: Option<LoadReport>) {
        let reported = report.map(|report| {
            let limit = report.max_running.saturating_add(report.max_waiting);
            let taken = report.running.saturating_add(report.waiting);
            Reported {
                calls_free: limit.saturating_sub(taken) as usize,
                report,
            }
        });
        *self.reported.lock().unwrap_or_else(PoisonError::into_inner) = reported;
    }

    /// A call of ours started (`started`) or ended there: the report's free calls follow.
    fn count_call(&self, started: bool) {
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = reported.as_mut() {
            r.calls_free = if started {
                r.calls_free.saturating_sub(1)
            } else {
                r.calls_free.saturating_add(1)
            };
        }
    }

    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the outcome of a health check that began when `call_failures` had `failures_before`;
    /// true when the node just came (back) into routing. A SERVING answer to a check that began before
    /// a call found the node gone is stale and ignored.
    fn set_health(&self, result: Result<(), String>, failures_before: usize) -> bool {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if result.is_ok() && self.call_failures.load(Ordering::SeqCst) != failures_before {
            return false;
        }
        let next = match result {
            Ok(()) => Health::Up,
            Err(reason) => Health::Down(reason),
        };
        let came_up = next == Health::Up && *health != Health::Up;
        match (&*health, &next) {
            // Once, not at every check: e.g. an etcd entry whose node fails the mTLS identity check.
            (Health::Unknown, Health::Down(reason)) => {
                tracing::warn!(pool = self.pool, node = %self.id, address = %self.address, %reason, "node not in routing: its first health check failed");
            }
            (Health::Up, Health::Down(reason)) => {
                tracing::warn!(pool = self.pool, node = %self.address, %reason, "node out of routing");
                metrics().node_failed(self.pool, "health_check");
            }
            (Health::Down(_) | Health::CallFailed(_), Health::Up) => {
                tracing::info!(pool = self.pool, node = %self.address, "node back in routing");
            }
            _ => {}
        }
        self.gauges.up.set(i64::from(next == Health::Up));
        *health = next;
        came_up
    }

    /// A call to the node found it gone: out of routing now, until a health check says SERVING.
    pub fn mark_down(&self, reason: &str) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*health, Health::Down(_) | Health::CallFailed(_)) {
            tracing::warn!(pool = self.pool, node = %self.address, %reason, "call failed, node gone: out of routing");
            metrics().node_failed(self.pool, "call");
        }
        *health = Health::CallFailed(format!("call failed: {reason}"));
        self.call_failures.fetch_add(1, Ordering::SeqCst);
        self.gauges.up.set(0);
    }

    /// A call to this node failed: UNAVAILABLE (connection refused, draining) or UNKNOWN (the
    /// connection broke mid-call: a killed node; scot's nodes never answer UNKNOWN themselves) takes it
    /// out of routing until its health check says SERVING again.
    pub fn call_failed(&self, status: &Status) {
        if matches!(status.code(), Code::Unavailable | Code::Unknown) {
            self.mark_down(status.message());
        }
    }

    /// This node's error as the client sees it: the same code, naming the node by its id.
    pub fn named(&self, status: &Status) -> Status {
        Status::new(
            status.code(),
            format!("{} node {}: {}", self.pool, self.id, status.message()),
        )
    }

    fn add(&self, work: usize) {
        let now = self.outstanding.fetch_add(work, Ordering::Relaxed) + work;
        self.gauges.in_flight.set(now as i64);
    }

    fn release(&self, work: usize) {
        let now = self.outstanding.fetch_sub(work, Ordering::Relaxed) - work;
        self.gauges.in_flight.set(now as i64);
    }
}

/// Work a request has on one node; what is not reported finished is released on drop.
#[derive(Debug)]
pub struct NodeLease {
    node: Arc<PoolNode>,
    queue: Arc<WaitQueue>,
    remaining: usize,
}

impl NodeLease {
    fn new(node: Arc<PoolNode>, queue: Arc<WaitQueue>, work: usize) -> Self {
        node.add(work);
        node.count_call(true);
        Self {
            node,
            queue,
            remaining: work,
        }
    }

    pub fn node(&self) -> &Arc<PoolNode> {
        &self.node
    }

    pub fn address(&self) -> &str {
        &self.node.address
    }

    pub fn channel(&self) -> Channel {
        self.node.channel.clone()
    }

    /// Work of this lease not reported finished yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// One unit of the work is done (a draft finished): its room goes to the next request.
    pub fn finish_one(&mut self) {
        if self.remaining > 0 {
            self.remaining -= 1;
            self.node.release(1);
            self.queue.wake_head();
        }
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        self.node.count_call(false);
        if self.remaining > 0 {
            self.node.release(self.remaining);
            self.queue.wake_head();
        }
    }
}

/// Why no work could be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireError {
    /// No member is in routing (none configured, all down, or invalid addresses), with the reasons.
    NoNodes(String),
    /// Every node stayed at its in-flight limit until the queue timeout (or the request's deadline).
    Timeout { waited: Duration },
    /// The request needs more than the pool's total capacity.
    TooLarge { capacity: usize },
}

/// A member not in routing, and why.
#[derive(Debug, Clone)]
pub struct Unreachable {
    pub id: String,
    pub address: String,
    pub reason: String,
}

pub struct NodePool {
    settings: PoolSettings,
    members: PoolMembers,
    /// By id (unique in a pool); a node that comes back under its id at a new address replaces the
    /// old member.
    nodes: Mutex<HashMap<String, Arc<PoolNode>>>,
    queue: Arc<WaitQueue>,
    /// Placements read the loads and add their work under this lock, so two never take the same room.
    placing: Mutex<()>,
    turn: AtomicUsize,
}

impl NodePool {
    /// The pool, with its background health checks running when an interval is set (and a runtime is).
    pub fn start(members: PoolMembers, settings: PoolSettings) -> Arc<Self> {
        let pool = Arc::new(Self {
            queue: Arc::new(WaitQueue::new(metrics().queue_depth(settings.name))),
            settings,
            members,
            nodes: Mutex::new(HashMap::new()),
            placing: Mutex::new(()),
            turn: AtomicUsize::new(0),
        });
        if let (Some(interval), Ok(runtime)) = (
            pool.settings.health_interval,
            tokio::runtime::Handle::try_current(),
        ) {
            runtime.spawn(poll_health(Arc::downgrade(&pool), interval));
        }
        pool
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Requests waiting for room now.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The members now (in the discovery's order), with nodes that left forgotten; invalid addresses are
    /// reported instead.
    fn sync_members(&self) -> (Vec<Arc<PoolNode>>, Vec<Unreachable>) {
        let members = self.members.members();
        let listed: HashSet<(&str, &str)> = members
            .iter()
            .map(|m| (m.id.as_str(), m.address.as_str()))
            .collect();
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.retain(|id, node| {
            let stays = listed.contains(&(id.as_str(), node.address.as_str()));
            // Forgotten unless the same id is still listed (it moved to a new address).
            if !stays && !members.iter().any(|m| &m.id == id) {
                metrics().forget_pool_node(self.settings.name, id);
            }
            stays
        });
        let mut current = Vec::new();
        let mut invalid = Vec::new();
        for member in members {
            let known = nodes.get(&member.id);
            // The node's own load report states its engine slots (its --max-concurrent); until
            // the first one, what the membership lists (etcd's capacity; a flag's address: one).
            let advertised = known
                .and_then(|node| node.report())
                .map_or(member.slots, |report| report.max_running.max(1));
            let slots = advertised.clamp(1, self.settings.max_slots.max(1));
            let capacity = (slots as usize).saturating_mul(self.settings.capacity_per_slot.max(1));
            if advertised > slots && known.is_none_or(|node| node.capacity() != capacity) {
                tracing::warn!(
                    pool = self.settings.name,
                    node = %member.address,
                    advertised,
                    used = slots,
                    "node advertises more slots than --max-node-slots: clamped"
                );
            }
            if let Some(node) = known {
                if node.capacity() != capacity {
                    node.capacity.store(capacity, Ordering::Relaxed);
                    node.gauges.capacity.set(capacity as i64);
                }
                current.push(node.clone());
                continue;
            }
            let server_name = match self.settings.identity {
                NodeIdentity::NodeId => Some(member.id.as_str()),
                NodeIdentity::AddressHost => None,
            };
            match scot_tls::endpoint(&member.address, self.settings.tls.as_ref(), server_name) {
                Ok(endpoint) => {
                    let channel = self.settings.channel(endpoint);
                    let node = Arc::new(PoolNode::new(
                        self.settings.name,
                        &member.id,
                        &member.address,
                        channel,
                        capacity,
                    ));
                    nodes.insert(member.id.clone(), node.clone());
                    current.push(node);
                }
                Err(e) => invalid.push(Unreachable {
                    id: member.id,
                    address: member.address,
                    reason: format!("invalid address: {e}"),
                }),
            }
        }
        (current, invalid)
    }

    /// Health-checks `nodes` now (all at once) and records the outcomes.
    async fn check(&self, nodes: &[Arc<PoolNode>]) {
        let failures_before: Vec<usize> = nodes
            .iter()
            .map(|node| node.call_failures.load(Ordering::SeqCst))
            .collect();
        let checks = nodes.iter().map(|node| async {
            let timeout = self.settings.health_timeout;
            tokio::join!(
                check_health(node.channel.clone(), self.settings.service, timeout),
                fetch_load(node.channel.clone(), timeout)
            )
        });
        let results = futures::future::join_all(checks).await;
        let mut came_up = false;
        for ((node, (health, load)), before) in nodes.iter().zip(results).zip(failures_before) {
            node.set_report(load);
            came_up |= node.set_health(health, before);
        }
        if came_up {
            self.queue.wake_head();
        }
    }

    /// The load reports of the members in routing now (no check is made for this).
    pub fn reports(&self) -> Vec<LoadReport> {
        let (members, _) = self.sync_members();
        members
            .iter()
            .filter(|node| node.health() == Health::Up)
            .filter_map(|node| node.report())
            .collect()
    }

    /// The members in routing and the others with the reason. Nodes never checked are checked first
    /// (every member is, when background checks are off).
    pub async fn routable(&self) -> (Vec<Arc<PoolNode>>, Vec<Unreachable>) {
        let (members, mut unreachable) = self.sync_members();
        let to_check: Vec<Arc<PoolNode>> = members
            .iter()
            .filter(|n| self.settings.health_interval.is_none() || n.health() == Health::Unknown)
            .cloned()
            .collect();
        if !to_check.is_empty() {
            self.check(&to_check).await;
        }
        // Nothing in routing: a node that failed its last background check may have come up since
        // (e.g. just started); check those now rather than refuse. Nodes whose calls failed wait for
        // the background check.
        if !members.iter().any(|n| n.health() == Health::Up) {
            let stale: Vec<Arc<PoolNode>> = members
                .iter()
                .filter(|n| matches!(n.health(), Health::Down(_)))
                .filter(|n| !to_check.iter().any(|c| Arc::ptr_eq(c, n)))
                .cloned()
                .collect();
            if !stale.is_empty() {
                self.check(&stale).await;
            }
        }
        let mut up = Vec::new();
        for node in members {
            match node.health() {
                Health::Up => up.push(node),
                Health::Down(reason) | Health::CallFailed(reason) => {
                    unreachable.push(Unreachable {
                        id: node.id.clone(),
                        address: node.address.clone(),
                        reason,
                    })
                }
                Health::Unknown => unreachable.push(Unreachable {
                    id: node.id.clone(),
                    address: node.address.clone(),
                    reason: "not checked yet".to_string(),
                }),
            }
        }
        (up, unreachable)
    }

    /// Places a request's work with `place` (given the routable nodes' loads, in turn `start`), waiting
    /// in the queue while the pool is full. `place` returns per node how much work it gets.
    pub async fn acquire(
        &self,
        deadline: Deadline,
        place: impl Fn(&[NodeLoad], usize) -> Placement<Vec<usize>>,
    ) -> Result<Vec<NodeLease>, AcquireError> {
        let started = Instant::now();
        let mut wait_until = started + self.settings.queue_timeout;
        if let Some(deadline) = deadline {
            wait_until = wait_until.min(deadline);
        }
        let mut ticket: Option<Ticket> = None;
        loop {
            let (nodes, unreachable) = self.routable().await;
            if nodes.is_empty() {
                return Err(AcquireError::NoNodes(describe_unreachable(&unreachable)));
            }
            let my_turn = match &ticket {
                None => self.queue.is_empty(),
                Some(ticket) => ticket.is_head(),
            };
            if my_turn {
                let _placing = self.placing.lock().unwrap_or_else(PoisonError::into_inner);
                let loads: Vec<NodeLoad> = nodes.iter().map(|n| n.load()).collect();
                let start = self.turn.fetch_add(1, Ordering::Relaxed);
                match place(&loads, start) {
                    Placement::Placed(work) => {
                        if ticket.is_some() {
                            metrics()
                                .queue_waited(self.settings.name, started.elapsed().as_secs_f64());
                        }
                        return Ok(nodes
                            .into_iter()
                            .zip(work)
                            .filter(|(_, work)| *work > 0)
                            .map(|(node, work)| NodeLease::new(node, self.queue.clone(), work))
                            .collect());
                    }
                    Placement::TooLarge { capacity } => {
                        return Err(AcquireError::TooLarge { capacity })
                    }
                    Placement::Full => {}
                }
            }
            let Some(ticket) = &ticket else {
                // Join, then try once more: room freed before joining woke nobody.
                ticket = Some(self.queue.join());
                continue;
            };
            let woken = tokio::time::timeout_at(wait_until.into(), ticket.woken()).await;
            if woken.is_err() {
                metrics().queue_waited(self.settings.name, started.elapsed().as_secs_f64());
                return Err(AcquireError::Timeout {
                    waited: started.elapsed(),
                });
            }
        }
    }
}

fn describe_unreachable(unreachable: &[Unreachable]) -> String {
    if unreachable.is_empty() {
        "none configured".to_string()
    } else {
        unreachable
            .iter()
            .map(|u| format!("{} ({})", u.id, u.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Checks every member each `interval` until the pool is gone; then gives the queue's head a try (a
/// node may have joined).
async fn poll_health(pool: Weak<NodePool>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let (members, _) = pool.sync_members();
        pool.check(&members).await;
        pool.queue.wake_head();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::plan_drafts;
    use scot_discovery::{NodeKind, StaticDiscovery};

    fn settings(health_interval: Option<Duration>) -> PoolSettings {
        PoolSettings {
            name: "draft",
            service: "scot.v1.DraftService",
            capacity_per_slot: 4,
            max_slots: 8,
            health_timeout: Duration::from_millis(300),
            health_interval,
            queue_timeout: Duration::from_millis(100),
            tls: None,
            identity: NodeIdentity::AddressHost,
        }
    }

    #[tokio::test]
    async fn leases_count_work_and_free_it_when_done_or_dropped() {
        let channel = Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let node = Arc::new(PoolNode::new(
            "draft",
            "draft-0",
            "lease-test:1",
            channel,
            4,
        ));
        let queue = Arc::new(WaitQueue::new(Default::default()));
        let mut lease = NodeLease::new(node.clone(), queue.clone(), 3);
        assert_eq!((node.outstanding(), node.gauges.in_flight.get()), (3, 3));
        lease.finish_one();
        assert_eq!(node.outstanding(), 2);
        drop(lease);
        assert_eq!((node.outstanding(), node.gauges.in_flight.get()), (0, 0));
        let before = node.call_failures.load(Ordering::SeqCst);
        node.mark_down("connection refused");
        assert!(matches!(node.health(), Health::CallFailed(r) if r.contains("connection refused")));
        // A check that began before the failure does not bring the node back; a later one does.
        assert!(
            !node.set_health(Ok(()), before),
            "a stale SERVING is ignored"
        );
        assert!(matches!(node.health(), Health::CallFailed(_)));
        let after = node.call_failures.load(Ordering::SeqCst);
        assert!(node.set_health(Ok(()), after), "coming back is reported");
        assert_eq!(node.gauges.up.get(), 1);
    }

    #[tokio::test]
    async fn unreachable_and_invalid_members_leave_nothing_to_route_to() {
        // Port 9 (discard) on loopback: nothing listens there.
        let discovery = Arc::new(StaticDiscovery::from_addresses(
            &["127.0.0.1:9".into(), "not a url".into()],
            &[],
        ));
        let members = PoolMembers::new(discovery, NodeKind::Draft);
        let pool = NodePool::start(members, settings(None));
        let (up, down) = pool.routable().await;
        assert!(up.is_empty());
        assert_eq!(down.len(), 2);
        let error = pool
            .acquire(None, |loads, start| plan_drafts(1, loads, start))
            .await
            .unwrap_err();
        match error {
            AcquireError::NoNodes(reason) => {
                // Clients see the nodes' ids, never their addresses.
                assert!(
                    reason.contains("draft-0 (") && reason.contains("draft-1 (invalid address"),
                    "{reason}"
                );
                assert!(!reason.contains("127.0.0.1:9"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_node_whose_report_shows_its_line_full_gets_no_call_until_one_ends() {
        let channel = Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let node = Arc::new(PoolNode::new(
            "target",
            "target-0",
            "report-test:1",
            channel,
            4,
        ));
        let queue = Arc::new(WaitQueue::new(Default::default()));
        assert_eq!(
            node.load(),
            NodeLoad::new(0, 4),
            "no report: our own count only"
        );
        // Other coordinators' calls fill all but one of its places (1 running + 2 waiting of 1 + 3).
        node.set_report(Some(LoadReport {
            running: 1,
            waiting: 2,
            max_running: 1,
            max_waiting: 3,
            ..Default::default()
        }));
        assert_eq!(node.load(), NodeLoad::new(0, 4), "one place left");
        let lease = NodeLease::new(node.clone(), queue.clone(), 1);
        assert_eq!(
            node.load(),
            NodeLoad::new(4, 4),
            "our call took the last place"
        );
        drop(lease);
        assert_eq!(
            node.load(),
            NodeLoad::new(0, 4),
            "our call ended: its place is free"
        );
        node.set_report(Some(LoadReport {
            running: 1,
            waiting: 3,
            max_running: 1,
            max_waiting: 3,
            ..Default::default()
        }));
        assert_eq!(node.load(), NodeLoad::new(4, 4), "full by the next report");
        assert_eq!(node.report().map(|r| r.waiting), Some(3));
    }

    #[tokio::test]
    async fn an_advertised_capacity_past_the_maximum_is_clamped() {
        use scot_discovery::{Membership, NodeInfo};
        let membership = Membership::from_nodes([
            NodeInfo::new(
                NodeKind::Draft,
                "rogue",
                "m",
                "http://127.0.0.1:9",
                u32::MAX,
            ),
            NodeInfo::new(NodeKind::Draft, "honest", "m", "http://127.0.0.1:10", 2),
        ]);
        let members = PoolMembers::new(Arc::new(StaticDiscovery::new(membership)), NodeKind::Draft);
        let pool = NodePool::start(members, settings(None));
        let (nodes, invalid) = pool.sync_members();
        assert!(invalid.is_empty());
        let capacity = |address: &str| {
            nodes
                .iter()
                .find(|n| n.address == address)
                .map(|n| n.capacity())
        };
        // max_slots 8 x 4 per slot: the claim of 4294967295 slots counts as 8.
        assert_eq!(capacity("http://127.0.0.1:9"), Some(32));
        assert_eq!(capacity("http://127.0.0.1:10"), Some(8));
    }

    #[tokio::test]
    async fn a_nodes_load_report_states_its_slots() {
        // A flag's address: one slot until the node reports its own (its --max-concurrent).
        let discovery = Arc::new(StaticDiscovery::from_addresses(
            &["127.0.0.1:9".into()],
            &[],
        ));
        let members = PoolMembers::new(discovery, NodeKind::Draft);
        let pool = NodePool::start(members, settings(None));
        let (nodes, _) = pool.sync_members();
        assert_eq!(nodes[0].capacity(), 4, "one slot x 4 per slot");
        let report = |max_running| {
            Some(LoadReport {
                max_running,
                max_waiting: 64,
                ..Default::default()
            })
        };
        nodes[0].set_report(report(3));
        let (nodes, _) = pool.sync_members();
        assert_eq!(nodes[0].capacity(), 12, "three slots");
        // A report past --max-node-slots (8) is clamped like an etcd claim.
        nodes[0].set_report(report(100));
        let (nodes, _) = pool.sync_members();
        assert_eq!(nodes[0].capacity(), 32);
    }
}
