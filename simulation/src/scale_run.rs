//! One SIMULATED scale run: K draft and T target simulated nodes in this process, the real coordinator
//! as a child process, a warm-up, then the measured load. Reports what the coordinator cost (CPU per
//! request), the latency it added (end-to-end minus the time any of the request's node calls was
//! running) and the throughput.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Endpoint;

use crate::batch_scheduler::SchedulerStats;
use crate::call_ledger::{covered, NodeCall, NodeCallKind, SimulatedCallLedger};
use crate::coordinator_process::{
    process_cpu_time, CoordinatorLaunch, CoordinatorProcess, TargetNodes,
};
use crate::cost_profile::SimulatedCostProfile;
use crate::draft_node::SimulatedDraftNode;
use crate::error::{Result, SimulationError};
use crate::etcd_membership::{SimulatedEtcd, SIMULATED_ETCD_PREFIX};
use crate::load_driver::{
    connect, drive_solves, simulated_problem, solve_one, LoadPlan, SolveFront,
};
use crate::node_server::{
    serve_simulated_draft_node, serve_simulated_target_node, SimulatedNodeServer,
};
use crate::solve_outcome::SolveOutcome;
use crate::target_node::SimulatedTargetNode;

#[derive(Debug, Clone)]
pub struct ScaleConfig {
    pub draft_nodes: usize,
    pub target_nodes: usize,
    pub profile: SimulatedCostProfile,
    /// Wall time per model time (0.01: a 100 s simulated job takes 1 s).
    pub time_scale: f64,
    pub requests: usize,
    pub concurrency: usize,
    pub connections: usize,
    pub n: u32,
    /// The coordinator's RUST_LOG.
    pub coordinator_log_filter: String,
    pub coordinator_args: Vec<String>,
    /// Where the coordinator's log goes.
    pub log_dir: PathBuf,
    /// Requests sent (and waited for) before the measurement, to connect every channel.
    pub warmup_requests: usize,
    /// `--draft-node-capacity`: drafts in flight per simulated draft node (its batch slots).
    pub draft_node_capacity: usize,
    /// `--target-node-capacity`: requests in flight per simulated target node.
    pub target_node_capacity: usize,
    /// No coordinator: the load driver calls the nodes itself (the baseline of "latency added").
    pub direct_baseline: bool,
}

impl ScaleConfig {
    /// The coordinator flags a run sets: admission sized to the load (the default, 128, would refuse
    /// the rest with RESOURCE_EXHAUSTED), the per-node limits, and a queue timeout long enough that
    /// requests queued for a small pool wait instead of being refused; then `coordinator_args`.
    pub fn coordinator_flags(&self) -> Vec<String> {
        let admitted = self.concurrency.max(self.warmup_requests) + 8;
        let mut flags = vec![
            format!("--max-concurrent-requests={admitted}"),
            format!("--draft-node-capacity={}", self.draft_node_capacity.max(1)),
            format!(
                "--target-node-capacity={}",
                self.target_node_capacity.max(1)
            ),
            "--queue-timeout-ms=3600000".to_string(),
        ];
        flags.extend(self.coordinator_args.iter().cloned());
        flags
    }
}

/// Counters summed over one kind of node, for the measured phase only.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolActivity {
    pub decode_steps: u64,
    pub batched_tokens: u64,
    pub prefill_tokens: u64,
    pub busy: Duration,
    pub lag: Duration,
}

impl PoolActivity {
    fn of(stats: &[Arc<SchedulerStats>]) -> Self {
        let sum = |f: fn(&SchedulerStats) -> u64| stats.iter().map(|s| f(s)).sum::<u64>();
        Self {
            decode_steps: sum(|s| s.decode_steps.load(Ordering::Relaxed)),
            batched_tokens: sum(|s| s.batched_tokens.load(Ordering::Relaxed)),
            prefill_tokens: sum(|s| s.prefill_tokens.load(Ordering::Relaxed)),
            busy: Duration::from_micros(sum(|s| s.busy_us.load(Ordering::Relaxed))),
            lag: Duration::from_micros(sum(|s| s.lag_us.load(Ordering::Relaxed))),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            decode_steps: self.decode_steps - before.decode_steps,
            batched_tokens: self.batched_tokens - before.batched_tokens,
            prefill_tokens: self.prefill_tokens - before.prefill_tokens,
            busy: self.busy.saturating_sub(before.busy),
            lag: self.lag.saturating_sub(before.lag),
        }
    }

    pub fn mean_batch(&self) -> f64 {
        if self.decode_steps == 0 {
            0.0
        } else {
            self.batched_tokens as f64 / self.decode_steps as f64
        }
    }
}

/// One request's timing split.
#[derive(Debug, Clone)]
pub struct RequestTiming {
    pub outcome: SolveOutcome,
    pub end_to_end: Duration,
    /// Time any of the request's node calls was running.
    pub node_time: Duration,
    /// end_to_end - node_time: coordinator, gRPC and loopback, client.
    pub added: Duration,
    /// Where `added` falls between the request's phases.
    pub gaps: PhaseGaps,
}

/// The request's time outside node calls, by where it falls (None when the request had no such
/// phase, e.g. no Draft call on the fallback path).
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseGaps {
    /// Request start -> first node call (Draft, or Generate when the target answers alone).
    pub before_first_call: Option<Duration>,
    /// Last Draft stream end -> Select call.
    pub drafts_to_select: Option<Duration>,
    /// Select answered -> Generate call.
    pub select_to_generate: Option<Duration>,
    /// Generate stream end -> the client has the result.
    pub after_generate: Option<Duration>,
}

impl PhaseGaps {
    fn of(calls: &[NodeCall], start: Instant, end: Instant) -> Self {
        let first = |kind: NodeCallKind| {
            calls
                .iter()
                .filter(|c| c.kind == kind)
                .map(|c| c.start)
                .min()
        };
        let last =
            |kind: NodeCallKind| calls.iter().filter(|c| c.kind == kind).map(|c| c.end).max();
        let gap = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_duration_since(a)),
            _ => None,
        };
        Self {
            before_first_call: gap(Some(start), calls.iter().map(|c| c.start).min()),
            drafts_to_select: gap(last(NodeCallKind::Draft), first(NodeCallKind::Select)),
            select_to_generate: gap(last(NodeCallKind::Select), first(NodeCallKind::Generate)),
            after_generate: gap(last(NodeCallKind::Generate), Some(end)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScaleReport {
    pub config: ScaleConfig,
    pub coordinator_command: String,
    pub requests: Vec<RequestTiming>,
    pub wall: Duration,
    pub coordinator_cpu: Duration,
    /// CPU of this process (simulated nodes + load driver) during the measurement.
    pub harness_cpu: Duration,
    pub drafts: PoolActivity,
    pub targets: PoolActivity,
}

impl ScaleReport {
    pub fn completed(&self) -> usize {
        self.requests
            .iter()
            .filter(|r| r.outcome.result.is_ok())
            .count()
    }

    pub fn errors(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter_map(|r| r.outcome.result.as_ref().err().cloned())
            .collect()
    }

    pub fn throughput(&self) -> f64 {
        self.completed() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub fn cpu_per_request(&self) -> Duration {
        self.coordinator_cpu / self.completed().max(1) as u32
    }

    /// Count of completed requests with this AnswerPath.
    pub fn path_count(&self, path: scot_proto::AnswerPath) -> usize {
        self.requests
            .iter()
            .filter(|r| r.outcome.result.is_ok() && r.outcome.path == path as i32)
            .count()
    }
}

/// The running simulated cluster (kept alive for the run).
struct SimulatedCluster {
    drafts: Vec<SimulatedNodeServer>,
    targets: Vec<SimulatedNodeServer>,
    draft_stats: Vec<Arc<SchedulerStats>>,
    target_stats: Vec<Arc<SchedulerStats>>,
}

async fn start_cluster(
    config: &ScaleConfig,
    ledger: &SimulatedCallLedger,
) -> Result<SimulatedCluster> {
    let mut cluster = SimulatedCluster {
        drafts: Vec::new(),
        targets: Vec::new(),
        draft_stats: Vec::new(),
        target_stats: Vec::new(),
    };
    for _ in 0..config.draft_nodes {
        let node =
            SimulatedDraftNode::new(config.profile.clone(), config.time_scale, ledger.clone());
        cluster.draft_stats.push(node.scheduler().stats());
        cluster.drafts.push(
            serve_simulated_draft_node(node)
                .await
                .map_err(|e| SimulationError::io("simulated draft node", e))?,
        );
    }
    for _ in 0..config.target_nodes.max(1) {
        let node =
            SimulatedTargetNode::new(config.profile.clone(), config.time_scale, ledger.clone());
        cluster.target_stats.push(node.scheduler().stats());
        cluster.targets.push(
            serve_simulated_target_node(node)
                .await
                .map_err(|e| SimulationError::io("simulated target node", e))?,
        );
    }
    Ok(cluster)
}

/// Sends warm-up requests until `count` of them succeed (etcd membership reaching the coordinator,
/// channels connecting), giving up after 60 s.
async fn warm_up(url: &str, count: usize, n: u32, problem_tokens: usize) -> Result<()> {
    let clients = connect(url, 1).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = 0;
    let mut attempt = 0;
    let mut last_error = String::new();
    while done < count {
        if Instant::now() > deadline {
            return Err(SimulationError::NotReady(format!(
                "warm-up: {done} of {count} requests succeeded in 60 s; last error: {last_error}"
            )));
        }
        let batch: Vec<_> = (0..(count - done))
            .map(|_| {
                attempt += 1;
                solve_one(
                    &clients[0],
                    format!("warmup-{attempt}"),
                    simulated_problem(1_000_000 + attempt, problem_tokens),
                    n,
                )
            })
            .collect();
        for outcome in futures::future::join_all(batch).await {
            match outcome.result {
                Ok(()) => done += 1,
                Err(e) => last_error = e,
            }
        }
        if done < count {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

pub async fn run_scale(config: &ScaleConfig) -> Result<ScaleReport> {
    let ledger = SimulatedCallLedger::default();
    let cluster = start_cluster(config, &ledger).await?;
    if config.direct_baseline {
        let mut drafts = Vec::new();
        for node in &cluster.drafts {
            drafts.push(Endpoint::from_shared(node.url())?.connect().await?);
        }
        let mut targets = Vec::new();
        for node in &cluster.targets {
            targets.push(Endpoint::from_shared(node.url())?.connect().await?);
        }
        let front = SolveFront::Direct { drafts, targets };
        return measure(
            config,
            &ledger,
            &cluster,
            &front,
            None,
            "direct (no coordinator)".to_string(),
        )
        .await;
    }
    // One target: the static flag. More: registered in a real etcd (the static flag takes one).
    let mut etcd_server = None;
    let mut registrations = Vec::new();
    let targets = if cluster.targets.len() == 1 {
        TargetNodes::Static(cluster.targets[0].url())
    } else {
        let etcd = SimulatedEtcd::start()?;
        let urls: Vec<String> = cluster.targets.iter().map(|t| t.url()).collect();
        registrations = etcd.register_targets(&urls).await?;
        let endpoint = etcd.endpoint();
        etcd_server = Some(etcd);
        TargetNodes::Etcd {
            endpoint,
            prefix: SIMULATED_ETCD_PREFIX.to_string(),
        }
    };
    std::fs::create_dir_all(&config.log_dir)
        .map_err(|e| SimulationError::io(format!("log dir {}", config.log_dir.display()), e))?;
    let launch = CoordinatorLaunch {
        draft_nodes: cluster.drafts.iter().map(|d| d.url()).collect(),
        targets,
        log_filter: config.coordinator_log_filter.clone(),
        extra_args: config.coordinator_flags(),
        log_file: config.log_dir.join(format!(
            "coordinator-k{}-t{}.log",
            config.draft_nodes, config.target_nodes
        )),
    };
    // The coordinator's port is probed free and then bound by the child: retry if another process
    // took it in between.
    let mut started = CoordinatorProcess::start(&launch).await;
    for _ in 0..2 {
        match &started {
            Err(SimulationError::NotReady(reason)) => {
                tracing::warn!(%reason, "coordinator did not start; retrying on another port");
                started = CoordinatorProcess::start(&launch).await;
            }
            _ => break,
        }
    }
    let coordinator = started?;
    let problem_tokens = config.profile.workload.problem_tokens;
    warm_up(
        &coordinator.url(),
        config.warmup_requests.max(1),
        config.n,
        problem_tokens,
    )
    .await?;
    let front = SolveFront::Coordinator(connect(&coordinator.url(), config.connections).await?);
    let report = measure(
        config,
        &ledger,
        &cluster,
        &front,
        Some(&coordinator),
        coordinator.command_line.clone(),
    )
    .await;
    drop(coordinator);
    // Take the targets out of etcd before etcd stops, so no keep-alive task complains afterwards.
    for registration in registrations {
        let _ = tokio::time::timeout(Duration::from_secs(2), registration.deregister()).await;
    }
    drop(etcd_server);
    drop(cluster);
    report
}

/// Drives the measured load through `front` and collects the report.
async fn measure(
    config: &ScaleConfig,
    ledger: &SimulatedCallLedger,
    cluster: &SimulatedCluster,
    front: &SolveFront,
    coordinator: Option<&CoordinatorProcess>,
    coordinator_command: String,
) -> Result<ScaleReport> {
    let plan = LoadPlan {
        requests: config.requests,
        concurrency: config.concurrency,
        connections: config.connections,
        n: config.n,
        id_prefix: "sim".to_string(),
        problem_tokens: config.profile.workload.problem_tokens,
    };
    let coordinator_cpu = || match coordinator {
        Some(process) => process.cpu_time(),
        None => Ok(Duration::ZERO),
    };
    let drafts_before = PoolActivity::of(&cluster.draft_stats);
    let targets_before = PoolActivity::of(&cluster.target_stats);
    let cpu_before = coordinator_cpu()?;
    let harness_before = process_cpu_time(std::process::id())?;
    let started = Instant::now();
    let outcomes = drive_solves(front, &plan).await;
    let wall = started.elapsed();
    let coordinator_cpu = coordinator_cpu()?.saturating_sub(cpu_before);
    let harness_cpu = process_cpu_time(std::process::id())?.saturating_sub(harness_before);
    let drafts = PoolActivity::of(&cluster.draft_stats).since(drafts_before);
    let targets = PoolActivity::of(&cluster.target_stats).since(targets_before);

    let requests = outcomes
        .into_iter()
        .map(|outcome| {
            let end_to_end = outcome.end - outcome.start;
            let calls = ledger.calls(&outcome.request_id);
            let node_time = covered(&calls, outcome.start, outcome.end);
            RequestTiming {
                gaps: PhaseGaps::of(&calls, outcome.start, outcome.end),
                added: end_to_end.saturating_sub(node_time),
                end_to_end,
                node_time,
                outcome,
            }
        })
        .collect();
    Ok(ScaleReport {
        config: config.clone(),
        coordinator_command,
        requests,
        wall,
        coordinator_cpu,
        harness_cpu,
        drafts,
        targets,
    })
}
