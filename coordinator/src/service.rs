//! The CoordinatorService: validates a Solve request, runs it on its own task, and streams its events.
//! The request stops (and cancels its work on the nodes) when the client goes away or its deadline
//! passes.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scot_discovery::NodeKind;
use scot_proto::coordinator_service_server::{CoordinatorService, CoordinatorServiceServer};
use scot_proto::limits::{MAX_MESSAGE_BYTES, MAX_REQUEST_ID};
use scot_proto::{SolveEvent, SolveRequest};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use crate::admission::Admission;
use crate::config::{CoordinatorConfig, SolveDefaults};
use crate::discovered_nodes::DiscoveredNodes;
use crate::draft_pool::DraftPool;
use crate::metrics::{metrics, Api};
use crate::node_pool::PoolSettings;
use crate::node_source::{NodeSource, StaticNodes};
use crate::solve::{SolveJob, Solver};
use crate::solve_task::spawn_solve;
use crate::target_pool::TargetPool;
use crate::validation::{resolve_options, validate_request};

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

pub struct CoordinatorServiceImpl {
    solver: Arc<Solver>,
    defaults: SolveDefaults,
    default_timeout: Option<Duration>,
}

impl CoordinatorServiceImpl {
    pub fn new(
        solver: Arc<Solver>,
        defaults: SolveDefaults,
        default_timeout: Option<Duration>,
    ) -> Self {
        Self {
            solver,
            defaults,
            default_timeout,
        }
    }

    /// The Solver, shared with the HTTP front door.
    pub fn solver(&self) -> Arc<Solver> {
        self.solver.clone()
    }
}

#[tonic::async_trait]
impl CoordinatorService for CoordinatorServiceImpl {
    type SolveStream = UnboundedReceiverStream<Result<SolveEvent, Status>>;

    async fn solve(
        &self,
        request: Request<SolveRequest>,
    ) -> Result<Response<Self::SolveStream>, Status> {
        // The same admission as HTTP: over the limit is refused at once, before any work.
        let Some(permit) = self.solver.admission().try_admit() else {
            tracing::warn!(
                limit = self.solver.admission().limit(),
                "over capacity: RESOURCE_EXHAUSTED"
            );
            metrics().refused(Api::Grpc, "over_capacity");
            return Err(Status::resource_exhausted(
                self.solver.admission().refusal(),
            ));
        };
        let timeout =
            scot_proto::deadline::grpc_timeout(request.metadata()).or(self.default_timeout);
        let request = request.into_inner();
        let settings = validate_request(&request, &self.defaults).map_err(|e| {
            metrics().refused(Api::Grpc, "invalid");
            Status::invalid_argument(e.to_string())
        })?;
        let request_id = request_id(&request.request_id).inspect_err(|_| {
            metrics().refused(Api::Grpc, "invalid");
        })?;
        let job = SolveJob {
            request_id: request_id.clone(),
            problem: request.problem,
            settings,
            deadline: timeout.map(|t| Instant::now() + t),
        };
        let events = spawn_solve(self.solver.clone(), job, Api::Grpc, permit);
        Ok(Response::new(UnboundedReceiverStream::new(events)))
    }
}

fn request_id(given: &str) -> Result<String, Status> {
    if given.is_empty() {
        return Ok(uuid::Uuid::new_v4().to_string());
    }
    if given.len() > MAX_REQUEST_ID || given.chars().any(|c| c.is_control()) {
        return Err(Status::invalid_argument(format!(
            "request_id must be at most {MAX_REQUEST_ID} printable characters (or empty for a generated one)"
        )));
    }
    Ok(given.to_string())
}

/// Builds the service from the configuration (checks addresses, limits and defaults). `source`
/// replaces the draft pool's members (tests).
pub fn build_service(
    config: &CoordinatorConfig,
    source: Option<Arc<dyn NodeSource>>,
) -> Result<CoordinatorServiceImpl, CoordinatorError> {
    build_service_with_sources(config, source, None)
}

/// `build_service` with either pool's members from the given source instead of the flags (tests).
pub fn build_service_with_sources(
    config: &CoordinatorConfig,
    source: Option<Arc<dyn NodeSource>>,
    target_source: Option<Arc<dyn NodeSource>>,
) -> Result<CoordinatorServiceImpl, CoordinatorError> {
    resolve_options(&Default::default(), &config.defaults)
        .map_err(|e| CoordinatorError::Config(format!("default knobs: {e}")))?;
    for (flag, value) in [
        ("--draft-node-capacity", config.draft_node_capacity),
        ("--target-node-capacity", config.target_node_capacity),
        (
            "--max-concurrent-requests",
            config.http.max_concurrent_requests,
        ),
    ] {
        if value == 0 {
            return Err(CoordinatorError::Config(format!(
                "{flag} must be at least 1"
            )));
        }
    }
    let discovered = match config.etcd.config() {
        Some(etcd) => {
            let discovery = scot_discovery::EtcdDiscovery::spawn(etcd)
                .map_err(|e| CoordinatorError::Config(format!("--etcd-endpoints: {e}")))?;
            Some(Arc::new(DiscoveredNodes::new(Arc::new(discovery))))
        }
        None => None,
    };
    let static_targets = StaticNodes(config.target_nodes.clone());
    let targets: Arc<dyn NodeSource> = match (&discovered, target_source) {
        (_, Some(targets)) => targets,
        (Some(nodes), None) if static_targets.members().is_empty() => nodes.pool(NodeKind::Target),
        _ => {
            if static_targets.members().is_empty() {
                return Err(CoordinatorError::Config(
                    "--target-node (SCOT_TARGET_NODE) is required without --etcd-endpoints"
                        .to_string(),
                ));
            }
            for member in static_targets.members() {
                tonic::transport::Endpoint::from_shared(crate::config::endpoint_url(
                    &member.address,
                ))
                .map_err(|e| {
                    CoordinatorError::Config(format!("--target-node {}: {e}", member.address))
                })?;
            }
            Arc::new(static_targets)
        }
    };
    let source = source.unwrap_or_else(|| match &discovered {
        Some(nodes) if config.draft_nodes.is_empty() => nodes.pool(NodeKind::Draft),
        _ => Arc::new(StaticNodes(config.draft_nodes.clone())),
    });
    let settings = |capacity_per_slot: usize| PoolSettings {
        name: "",
        service: "",
        capacity_per_slot,
        health_timeout: Duration::from_millis(config.health_timeout_ms.max(1)),
        health_interval: (config.health_interval_ms > 0)
            .then(|| Duration::from_millis(config.health_interval_ms)),
        queue_timeout: Duration::from_millis(config.queue_timeout_ms),
    };
    let pool = Arc::new(DraftPool::new(source, settings(config.draft_node_capacity)));
    let targets = Arc::new(TargetPool::new(
        targets,
        settings(config.target_node_capacity),
    ));
    let admission = Arc::new(Admission::new(config.http.max_concurrent_requests));
    metrics().set_max_concurrent(admission.limit());
    let solver = Arc::new(Solver::new(pool, targets, admission));
    let default_timeout =
        (config.request_timeout_secs > 0).then(|| Duration::from_secs(config.request_timeout_secs));
    Ok(CoordinatorServiceImpl::new(
        solver,
        config.defaults.clone(),
        default_timeout,
    ))
}

/// Serves the CoordinatorService and gRPC health on `config.listen` until `shutdown` resolves.
pub async fn serve(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let service = build_service(&config, None)?;
    let stop_http = tokio_util::sync::CancellationToken::new();
    let http = crate::http::start(&config, service.solver(), stop_http.clone()).await?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<CoordinatorServiceServer<CoordinatorServiceImpl>>()
        .await;
    tracing::info!(
        listen = %config.listen,
        target_nodes = ?config.target_nodes,
        draft_nodes = ?config.draft_nodes,
        "coordinator serving"
    );
    let served = Server::builder()
        .layer(scot_telemetry::GrpcServerLayer)
        .add_service(health_service)
        .add_service(
            CoordinatorServiceServer::new(service)
                .max_decoding_message_size(4 << 20)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_shutdown(config.listen, shutdown)
        .await;
    stop_http.cancel();
    if let Some(http) = http {
        let _ = http.await;
    }
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_generated_or_checked() {
        assert_eq!(request_id("abc").unwrap(), "abc");
        assert_eq!(request_id("").unwrap().len(), 36);
        assert!(request_id(&"x".repeat(200)).is_err());
        assert!(request_id("a\nb").is_err());
    }
}
