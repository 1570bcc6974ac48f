//! The coordinator's wiring: the pools, the Solver and the front door built from the configuration, and
//! both doors (gRPC on `--listen`, HTTP on `--http-listen`) served until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use scot_discovery::NodeKind;
use scot_proto::coordinator_service_server::CoordinatorServiceServer;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::admission::Admission;
use crate::config::{endpoint_url, CoordinatorConfig};
use crate::discovered_nodes::DiscoveredNodes;
use crate::draft_pool::DraftPool;
use crate::front_door::FrontDoor;
use crate::http::{router, serve_http, HttpState};
use crate::metrics::metrics;
use crate::node_pool::PoolSettings;
use crate::node_source::{NodeSource, StaticNodes};
use crate::service::CoordinatorServiceImpl;
use crate::solve::Solver;
use crate::target_pool::TargetPool;
use crate::validation::resolve_options;

/// Largest Solve request the gRPC door reads (problems are at most 1 MiB).
const MAX_SOLVE_REQUEST_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A coordinator built from its configuration: what both doors serve.
pub struct Coordinator {
    front: Arc<FrontDoor>,
    model_name: String,
}

impl Coordinator {
    /// Checks the configuration (addresses, limits, defaults) and builds the pools and the front door.
    pub fn build(config: &CoordinatorConfig) -> Result<Self, CoordinatorError> {
        Self::build_with_sources(config, None, None)
    }

    /// `build` with either pool's members from the given source instead of the flags (tests).
    pub fn build_with_sources(
        config: &CoordinatorConfig,
        source: Option<Arc<dyn NodeSource>>,
        target_source: Option<Arc<dyn NodeSource>>,
    ) -> Result<Self, CoordinatorError> {
        check_config(config)?;
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
            (Some(nodes), None) if static_targets.members().is_empty() => {
                nodes.pool(NodeKind::Target)
            }
            _ => {
                if static_targets.members().is_empty() {
                    return Err(CoordinatorError::Config(
                        "--target-node (SCOT_TARGET_NODE) is required without --etcd-endpoints"
                            .to_string(),
                    ));
                }
                for member in static_targets.members() {
                    tonic::transport::Endpoint::from_shared(endpoint_url(&member.address))
                        .map_err(|e| {
                            CoordinatorError::Config(format!(
                                "--target-node {}: {e}",
                                member.address
                            ))
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
        let drafts = Arc::new(DraftPool::new(source, settings(config.draft_node_capacity)));
        let targets = Arc::new(TargetPool::new(
            targets,
            settings(config.target_node_capacity),
        ));
        let admission = Admission::new(config.http.max_concurrent_requests);
        metrics().set_max_concurrent(admission.limit());
        let default_timeout = (config.request_timeout_secs > 0)
            .then(|| Duration::from_secs(config.request_timeout_secs));
        let front = FrontDoor::new(
            Arc::new(Solver::new(drafts, targets)),
            admission,
            config.defaults.clone(),
            default_timeout,
        );
        Ok(Self {
            front: Arc::new(front),
            model_name: config.http.served_model_name.clone(),
        })
    }

    /// The Solver both doors run requests on (its pools, for tests and probes).
    pub fn solver(&self) -> &Arc<Solver> {
        self.front.solver()
    }

    /// The admission both doors share (tests fill it to see the refusals).
    pub fn admission(&self) -> &Admission {
        self.front.admission()
    }

    /// The gRPC door.
    pub fn grpc_service(&self) -> CoordinatorServiceServer<CoordinatorServiceImpl> {
        CoordinatorServiceServer::new(CoordinatorServiceImpl::new(self.front.clone()))
            .max_decoding_message_size(MAX_SOLVE_REQUEST_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The HTTP door's routes.
    pub fn http_router(&self) -> axum::Router {
        router(Arc::new(HttpState::new(
            self.front.clone(),
            self.model_name.clone(),
        )))
    }
}

fn check_config(config: &CoordinatorConfig) -> Result<(), CoordinatorError> {
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
    if config.http.listen.is_some() && config.http.served_model_name.trim().is_empty() {
        return Err(CoordinatorError::Config(
            "--served-model-name must not be empty".to_string(),
        ));
    }
    Ok(())
}

/// Serves the gRPC door (with gRPC health) on `config.listen`, and the HTTP door on `--http-listen`
/// when set, until `shutdown` resolves.
pub async fn serve(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let coordinator = Coordinator::build(&config)?;
    let stop_http = CancellationToken::new();
    let http = start_http(&config, &coordinator, stop_http.clone()).await?;
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
        .add_service(coordinator.grpc_service())
        .serve_with_shutdown(config.listen, shutdown)
        .await;
    stop_http.cancel();
    if let Some(http) = http {
        let _ = http.await;
    }
    served?;
    Ok(())
}

/// Binds `--http-listen` (when set) and serves the HTTP door on a background task.
async fn start_http(
    config: &CoordinatorConfig,
    coordinator: &Coordinator,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, CoordinatorError> {
    let Some(listen) = config.http.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CoordinatorError::Config(format!("--http-listen {listen}: {e}")))?;
    tracing::info!(%listen, model = %config.http.served_model_name, "HTTP API serving");
    let router = coordinator.http_router();
    Ok(Some(tokio::spawn(async move {
        if let Err(error) = serve_http(listener, router, stop).await {
            tracing::error!(%error, "HTTP server stopped");
        }
    })))
}
