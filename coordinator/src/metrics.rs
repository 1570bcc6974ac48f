//! The coordinator's metrics, registered once in the process registry (scot-telemetry) and served on
//! `/metrics`. Names, labels and formulas: docs/metrics.md. A `RequestTracker` follows one request
//! (HTTP or gRPC) from start to outcome; dropping it unfinished counts the request as cancelled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use scot_discovery::NodeKind;
use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::{AnswerPath, SolveEvent, SolveResult, SolveStats};
use scot_telemetry::register;
use tonic::Code;

/// Which front door a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Http,
    Grpc,
}

impl Api {
    fn label(self) -> String {
        match self {
            Api::Http => "http",
            Api::Grpc => "grpc",
        }
        .to_string()
    }
}

/// How a request ended (the `outcome` label of `scot_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused as bad input, or a node refused it as such.
    Invalid,
    /// Refused at admission, or no node room within the queue timeout.
    OverCapacity,
    DeadlineExceeded,
    Unavailable,
    /// The client went away.
    Cancelled,
    Error,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Invalid => "invalid",
            Outcome::OverCapacity => "over_capacity",
            Outcome::DeadlineExceeded => "deadline_exceeded",
            Outcome::Unavailable => "unavailable",
            Outcome::Cancelled => "cancelled",
            Outcome::Error => "error",
        }
    }

    /// The outcome of a request that failed with `code`.
    pub fn of(code: Code) -> Self {
        match code {
            Code::InvalidArgument
            | Code::OutOfRange
            | Code::FailedPrecondition
            | Code::NotFound => Outcome::Invalid,
            Code::DeadlineExceeded => Outcome::DeadlineExceeded,
            Code::Unavailable => Outcome::Unavailable,
            Code::Cancelled => Outcome::Cancelled,
            Code::ResourceExhausted => Outcome::OverCapacity,
            _ => Outcome::Error,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    api: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    policy: String,
    path: String,
    /// How an accepted draft was chosen (target, votes); "none" when rejected.
    basis: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    role: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolKindLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    pool: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    pool: String,
    source: String,
}

/// One pool node's gauges (clones share the registered values).
#[derive(Debug, Clone, Default)]
pub struct NodeGauges {
    pub in_flight: Gauge,
    pub capacity: Gauge,
    pub up: Gauge,
}

pub struct CoordinatorMetrics {
    requests: Family<OutcomeLabels, Counter>,
    request_duration: Family<ApiLabels, Histogram>,
    in_flight: Family<ApiLabels, Gauge>,
    in_phase: Family<PhaseLabels, Gauge>,
    phase_duration: Family<PhaseLabels, Histogram>,
    paths: Family<PathLabels, Counter>,
    selections: Counter,
    accepted: Counter,
    target_retries: Counter,
    target_migrations: Counter,
    drafts_replaced: Counter,
    decisions: Family<DecisionLabels, Counter>,
    drafts_per_request: Histogram,
    generated_tokens: Family<ModelLabels, Counter>,
    generation_seconds: Family<ModelLabels, Counter<f64, AtomicU64>>,
    pool_nodes: Family<PoolLabels, Gauge>,
    max_concurrent: Gauge,
    node_in_flight: Family<NodeLabels, Gauge>,
    node_capacity: Family<NodeLabels, Gauge>,
    node_up: Family<NodeLabels, Gauge>,
    node_failures: Family<FailureLabels, Counter>,
    queue_depth: Family<PoolKindLabels, Gauge>,
    queue_wait: Family<PoolKindLabels, Histogram>,
}

fn seconds_histogram() -> Histogram {
    // 10 ms .. ~11 min
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

static METRICS: LazyLock<CoordinatorMetrics> = LazyLock::new(|| {
    let m = CoordinatorMetrics {
        requests: Family::default(),
        request_duration: Family::new_with_constructor(seconds_histogram),
        in_flight: Family::default(),
        in_phase: Family::default(),
        phase_duration: Family::new_with_constructor(seconds_histogram),
        paths: Family::default(),
        selections: Counter::default(),
        accepted: Counter::default(),
        target_retries: Counter::default(),
        target_migrations: Counter::default(),
        drafts_replaced: Counter::default(),
        decisions: Family::default(),
        drafts_per_request: Histogram::new([
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0,
        ]),
        generated_tokens: Family::default(),
        generation_seconds: Family::default(),
        pool_nodes: Family::default(),
        max_concurrent: Gauge::default(),
        node_in_flight: Family::default(),
        node_capacity: Family::default(),
        node_up: Family::default(),
        node_failures: Family::default(),
        queue_depth: Family::default(),
        // 1 ms .. ~65 s
        queue_wait: Family::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        }),
    };
    register(
        "scot_requests",
        "Solve requests by front door (api) and outcome",
        m.requests.clone(),
    );
    register(
        "scot_request_duration_seconds",
        "Time from a request's start to its outcome, by api",
        m.request_duration.clone(),
    );
    register(
        "scot_requests_in_flight",
        "Requests being solved now, by api",
        m.in_flight.clone(),
    );
    register(
        "scot_requests_in_phase",
        "Requests in flight by phase: starting, drafting (drafts and selection), answering (target)",
        m.in_phase.clone(),
    );
    register(
        "scot_phase_duration_seconds",
        "Per-phase latency of finished requests: draft, select, correction, answer, total",
        m.phase_duration.clone(),
    );
    register(
        "scot_answer_paths",
        "Finished requests by the path that produced the answer",
        m.paths.clone(),
    );
    register(
        "scot_selections",
        "Selections run (requests whose drafts went to the target)",
        m.selections.clone(),
    );
    register(
        "scot_drafts_accepted",
        "Selections that accepted a draft; acceptance rate = scot_drafts_accepted_total / scot_selections_total",
        m.accepted.clone(),
    );
    register(
        "scot_target_retries",
        "Target calls made again on another target node after the first failed (UNAVAILABLE, RESOURCE_EXHAUSTED, a broken connection) before any output reached the client",
        m.target_retries.clone(),
    );
    register(
        "scot_target_migrations",
        "Answers moved to another target node after the first failed mid-stream (the next prefilled the tokens already streamed and went on)",
        m.target_migrations.clone(),
    );
    register(
        "scot_drafts_replaced",
        "Drafts lost with their draft node mid-stream and placed again on another",
        m.drafts_replaced.clone(),
    );
    register(
        "scot_selection_decisions",
        "Selection decisions by policy, resulting path and how an accepted draft was chosen (basis: target, votes; none when the target thought)",
        m.decisions.clone(),
    );
    register(
        "scot_drafts_per_request",
        "Drafts finished per request that drafted",
        m.drafts_per_request.clone(),
    );
    register(
        "scot_generated_tokens",
        "Tokens generated, by role (draft, target) and model",
        m.generated_tokens.clone(),
    );
    register(
        "scot_generation_seconds",
        "Wall time of generation, by role and model (draft: the draft phase; target: thinking + answer); tokens/s = rate(scot_generated_tokens_total) / rate(scot_generation_seconds_total)",
        m.generation_seconds.clone(),
    );
    register(
        "scot_draft_pool_nodes",
        "Draft nodes by state (reachable, unreachable) at the last probe (/ready or /metrics)",
        m.pool_nodes.clone(),
    );
    register(
        "scot_http_max_concurrent_requests",
        "Requests (HTTP and gRPC) solved at once before 429 / RESOURCE_EXHAUSTED (max_concurrent_requests)",
        m.max_concurrent.clone(),
    );
    register(
        "scot_pool_node_in_flight",
        "Work in flight on a node from this coordinator, by pool (draft: drafts; target: requests) and node",
        m.node_in_flight.clone(),
    );
    register(
        "scot_pool_node_capacity",
        "The most work a node may have in flight from this coordinator, by pool and node",
        m.node_capacity.clone(),
    );
    register(
        "scot_pool_node_up",
        "1 while a node is in routing (its last health check said SERVING), else 0, by pool and node",
        m.node_up.clone(),
    );
    register(
        "scot_pool_node_failures",
        "Nodes taken out of routing, by pool and source (health_check, call: a call found the node gone: UNAVAILABLE or a broken connection)",
        m.node_failures.clone(),
    );
    register(
        "scot_pool_queue_depth",
        "Requests waiting for room in a pool (every node at its in-flight limit), by pool",
        m.queue_depth.clone(),
    );
    register(
        "scot_pool_queue_wait_seconds",
        "How long requests that had to wait for room waited (placed or timed out), by pool",
        m.queue_wait.clone(),
    );
    m
});

pub fn metrics() -> &'static CoordinatorMetrics {
    &METRICS
}

impl CoordinatorMetrics {
    /// A request refused before it started (bad input, over capacity), or one that ended.
    pub fn count_outcome(&self, api: Api, outcome: Outcome) {
        self.requests
            .get_or_create(&OutcomeLabels {
                api: api.label(),
                outcome: outcome.label().to_string(),
            })
            .inc();
    }

    pub fn set_pool(&self, reachable: usize, unreachable: usize) {
        for (state, count) in [("reachable", reachable), ("unreachable", unreachable)] {
            self.pool_nodes
                .get_or_create(&PoolLabels {
                    state: state.to_string(),
                })
                .set(count as i64);
        }
    }

    /// The gauges of one node of `pool` (`draft` or `target`).
    /// A node's gauges, labelled by its id (unique in its pool; an address can be claimed twice).
    pub fn pool_node(&self, pool: &str, id: &str) -> NodeGauges {
        let labels = NodeLabels {
            pool: pool.to_string(),
            node: id.to_string(),
        };
        NodeGauges {
            in_flight: self.node_in_flight.get_or_create(&labels).clone(),
            capacity: self.node_capacity.get_or_create(&labels).clone(),
            up: self.node_up.get_or_create(&labels).clone(),
        }
    }

    /// A node left its pool: its series go away.
    pub fn forget_pool_node(&self, pool: &str, id: &str) {
        let labels = NodeLabels {
            pool: pool.to_string(),
            node: id.to_string(),
        };
        self.node_in_flight.remove(&labels);
        self.node_capacity.remove(&labels);
        self.node_up.remove(&labels);
    }

    pub fn node_failed(&self, pool: &str, source: &str) {
        self.node_failures
            .get_or_create(&FailureLabels {
                pool: pool.to_string(),
                source: source.to_string(),
            })
            .inc();
    }

    pub fn queue_depth(&self, pool: &str) -> Gauge {
        self.queue_depth
            .get_or_create(&PoolKindLabels {
                pool: pool.to_string(),
            })
            .clone()
    }

    pub fn queue_waited(&self, pool: &str, seconds: f64) {
        self.queue_wait
            .get_or_create(&PoolKindLabels {
                pool: pool.to_string(),
            })
            .observe(seconds);
    }

    pub fn set_max_concurrent(&self, limit: usize) {
        self.max_concurrent.set(limit as i64);
    }

    fn record_stats(&self, stats: &SolveStats) {
        let phase = |name: &str, ms: f64| {
            self.phase_duration
                .get_or_create(&PhaseLabels {
                    phase: name.to_string(),
                })
                .observe(ms / 1000.0);
        };
        phase("total", stats.total_ms);
        self.target_retries.inc_by(u64::from(stats.target_retries));
        self.target_migrations
            .inc_by(u64::from(stats.target_migrations));
        self.drafts_replaced
            .inc_by(u64::from(stats.drafts_replaced));
        if stats.draft_ms > 0.0 {
            phase("draft", stats.draft_ms);
        }
        if stats.chosen > 0 {
            if stats.target_scored {
                phase("select", stats.select_ms);
            }
            self.selections.inc();
            if stats.path == AnswerPath::DraftAccepted as i32 {
                self.accepted.inc();
            }
            self.decisions
                .get_or_create(&DecisionLabels {
                    policy: stats.selection_policy.clone(),
                    path: AnswerPath::label_of(stats.path).to_string(),
                    basis: if stats.accept_basis.is_empty() {
                        "none".to_string()
                    } else {
                        stats.accept_basis.clone()
                    },
                })
                .inc();
        }
        if stats.target_thinking_tokens > 0 || stats.target_thinking_ms > 0.0 {
            phase("correction", stats.target_thinking_ms);
        }
        if stats.answer_ms > 0.0 {
            phase("answer", stats.answer_ms);
        }
        self.paths
            .get_or_create(&PathLabels {
                path: AnswerPath::label_of(stats.path).to_string(),
            })
            .inc();
        if !stats.drafts.is_empty() {
            self.drafts_per_request.observe(stats.drafts.len() as f64);
        }
        let generated = |role: &str, model: &str, tokens: u64, ms: f64| {
            if tokens == 0 {
                return;
            }
            let labels = ModelLabels {
                role: role.to_string(),
                model: if model.is_empty() { "unknown" } else { model }.to_string(),
            };
            self.generated_tokens.get_or_create(&labels).inc_by(tokens);
            self.generation_seconds
                .get_or_create(&labels)
                .inc_by(ms / 1000.0);
        };
        generated(
            NodeKind::Draft.as_str(),
            &stats.draft_model,
            stats.draft_tokens,
            stats.draft_ms,
        );
        generated(
            NodeKind::Target.as_str(),
            &stats.target_model,
            stats.target_tokens,
            stats.target_thinking_ms + stats.answer_ms,
        );
    }
}

/// Follows one request: in flight and its phase while it runs, its outcome and stats when it ends.
pub struct RequestTracker {
    api: Api,
    started: Instant,
    phase: Mutex<&'static str>,
    finished: AtomicBool,
}

impl RequestTracker {
    pub fn start(api: Api) -> Self {
        let m = metrics();
        m.in_flight
            .get_or_create(&ApiLabels { api: api.label() })
            .inc();
        m.in_phase
            .get_or_create(&PhaseLabels {
                phase: "starting".into(),
            })
            .inc();
        Self {
            api,
            started: Instant::now(),
            phase: Mutex::new("starting"),
            finished: AtomicBool::new(false),
        }
    }

    /// Moves the request's phase gauge along with the Solver's events.
    pub fn observe(&self, event: &SolveEvent) {
        let next = match &event.event {
            Some(SolveEventKind::DraftingStarted(_)) => "drafting",
            Some(SolveEventKind::Selection(_)) | Some(SolveEventKind::Token(_)) => "answering",
            _ => return,
        };
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if *phase != next {
            let m = metrics();
            m.in_phase
                .get_or_create(&PhaseLabels {
                    phase: phase.to_string(),
                })
                .dec();
            m.in_phase
                .get_or_create(&PhaseLabels {
                    phase: next.to_string(),
                })
                .inc();
            *phase = next;
        }
    }

    pub fn succeeded(&self, result: &SolveResult) {
        self.finish(Outcome::Ok);
        if let Some(stats) = &result.stats {
            metrics().record_stats(stats);
        }
    }

    pub fn failed(&self, status: &tonic::Status) {
        self.finish(Outcome::of(status.code()));
    }

    fn finish(&self, outcome: Outcome) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        let m = metrics();
        m.count_outcome(self.api, outcome);
        m.request_duration
            .get_or_create(&ApiLabels {
                api: self.api.label(),
            })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for RequestTracker {
    fn drop(&mut self) {
        // Dropped before an outcome: the client went away.
        self.finish(Outcome::Cancelled);
        let m = metrics();
        m.in_flight
            .get_or_create(&ApiLabels {
                api: self.api.label(),
            })
            .dec();
        let phase = *self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        m.in_phase
            .get_or_create(&PhaseLabels {
                phase: phase.to_string(),
            })
            .dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracked_request_shows_up_in_the_registry() {
        let tracker = RequestTracker::start(Api::Grpc);
        tracker.observe(&SolveEvent {
            event: Some(SolveEventKind::DraftingStarted(Default::default())),
        });
        let text = scot_telemetry::encode_metrics();
        assert!(
            text.contains("scot_requests_in_phase{phase=\"drafting\"} 1"),
            "{text}"
        );
        tracker.succeeded(&SolveResult {
            stats: Some(SolveStats {
                path: AnswerPath::DraftAccepted as i32,
                chosen: 1,
                selection_policy: "hybrid".into(),
                accept_basis: "votes".into(),
                total_ms: 10.0,
                draft_ms: 5.0,
                draft_tokens: 30,
                draft_model: "m".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        drop(tracker);
        let text = scot_telemetry::encode_metrics();
        assert!(
            text.contains("scot_requests_total{api=\"grpc\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("scot_selections_total 1"), "{text}");
        assert!(text.contains("scot_drafts_accepted_total 1"), "{text}");
        assert!(
            text.contains("scot_selection_decisions_total{policy=\"hybrid\",path=\"draft_accepted\",basis=\"votes\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("scot_generated_tokens_total{role=\"draft\",model=\"m\"} 30"),
            "{text}"
        );
        assert!(
            text.contains("scot_requests_in_flight{api=\"grpc\"} 0"),
            "{text}"
        );
        assert_eq!(Outcome::of(Code::InvalidArgument).label(), "invalid");
    }
}
