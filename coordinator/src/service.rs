//! The CoordinatorService: validates a Solve request, runs it on its own task, and streams its events.
//! The request stops (and cancels its work on the nodes) when the client goes away or its deadline
//! passes.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scot_proto::coordinator_service_server::{CoordinatorService, CoordinatorServiceServer};
use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::{SolveEvent, SolveRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::config::{CoordinatorConfig, SolveDefaults};
use crate::discovered_nodes::DiscoveredNodes;
use crate::draft_pool::{DraftNodeSource, DraftPool, StaticDraftNodes};
use crate::metrics::{Api, RequestTracker};
use crate::solve::{SolveJob, Solver};
use crate::target_pool::{StaticTargetNode, TargetNodeSource, TargetPool};
use crate::validation::{resolve_options, validate_request};

/// Longest request id accepted from a client (ids end up in logs and metadata).
const MAX_REQUEST_ID: usize = 128;

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
        let timeout =
            scot_proto::deadline::grpc_timeout(request.metadata()).or(self.default_timeout);
        let request = request.into_inner();
        let settings = validate_request(&request, &self.defaults)
            .map_err(|e| Status::invalid_argument(e.0))?;
        let request_id = request_id(&request.request_id)?;
        let job = SolveJob {
            request_id: request_id.clone(),
            problem: request.problem,
            settings,
            deadline: timeout.map(|t| Instant::now() + t),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let solver = self.solver.clone();
        let span = tracing::info_span!("solve", request_id = %request_id);
        tokio::spawn(
            async move {
                tracing::info!(mode = ?job.settings.mode, n = job.settings.n, "solve started");
                let tracker = Arc::new(RequestTracker::start(Api::Grpc));
                let observer = tracker.clone();
                let events = tx.clone();
                let emit = move |event: SolveEvent| {
                    observer.observe(&event);
                    let _ = events.send(Ok(event));
                };
                let work = solver.solve(&job, &emit);
                let outcome = tokio::select! {
                    _ = tx.closed() => {
                        tracing::info!("client went away; request cancelled");
                        return;
                    }
                    outcome = with_deadline(job.deadline, work) => outcome,
                };
                match outcome {
                    Ok(result) => {
                        tracker.succeeded(&result);
                        if let Some(stats) = &result.stats {
                            tracing::info!(
                                path = stats.path,
                                total_ms = stats.total_ms,
                                chosen = stats.chosen,
                                "solve finished"
                            );
                        }
                        let _ = tx.send(Ok(SolveEvent {
                            event: Some(SolveEventKind::Result(result)),
                        }));
                    }
                    Err(status) => {
                        tracker.failed(&status);
                        tracing::warn!(code = ?status.code(), error = %status.message(), "solve failed");
                        let _ = tx.send(Err(status));
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}

async fn with_deadline<T>(
    deadline: Option<Instant>,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match deadline {
        None => work.await,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), work)
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("the request's deadline passed"))),
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

/// Builds the service from the configuration (checks addresses and defaults).
pub fn build_service(
    config: &CoordinatorConfig,
    source: Option<Arc<dyn DraftNodeSource>>,
) -> Result<CoordinatorServiceImpl, CoordinatorError> {
    resolve_options(&Default::default(), &config.defaults)
        .map_err(|e| CoordinatorError::Config(format!("default knobs: {}", e.0)))?;
    let discovered = match config.etcd.config() {
        Some(etcd) => {
            let discovery = scot_discovery::EtcdDiscovery::spawn(etcd)
                .map_err(|e| CoordinatorError::Config(format!("--etcd-endpoints: {e}")))?;
            Some(Arc::new(DiscoveredNodes::new(Arc::new(discovery))))
        }
        None => None,
    };
    let targets: Arc<dyn TargetNodeSource> = match &discovered {
        Some(nodes) if config.target_node.trim().is_empty() => nodes.clone(),
        _ => {
            if config.target_node.trim().is_empty() {
                return Err(CoordinatorError::Config(
                    "--target-node (SCOT_TARGET_NODE) is required without --etcd-endpoints"
                        .to_string(),
                ));
            }
            tonic::transport::Endpoint::from_shared(crate::config::endpoint_url(
                &config.target_node,
            ))
            .map_err(|e| {
                CoordinatorError::Config(format!("--target-node {}: {e}", config.target_node))
            })?;
            Arc::new(StaticTargetNode(config.target_node.clone()))
        }
    };
    let source = source.unwrap_or_else(|| match discovered {
        Some(nodes) if config.draft_nodes.is_empty() => nodes,
        _ => Arc::new(StaticDraftNodes(config.draft_nodes.clone())),
    });
    let pool = Arc::new(DraftPool::new(
        source,
        Duration::from_millis(config.health_timeout_ms.max(1)),
    ));
    let solver = Arc::new(Solver::new(pool, Arc::new(TargetPool::new(targets))));
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
        target = %config.target_node,
        draft_nodes = ?config.draft_nodes,
        "coordinator serving"
    );
    let served = Server::builder()
        .layer(scot_telemetry::GrpcServerLayer)
        .add_service(health_service)
        .add_service(
            CoordinatorServiceServer::new(service)
                .max_decoding_message_size(4 << 20)
                .max_encoding_message_size(64 << 20),
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
