//! The coordinator's wiring: the pools, the Solver and the front door built from the configuration, and
//! both doors (gRPC on `--listen`, HTTP on `--http-listen`) served until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use scot_discovery::{Discovery, StaticDiscovery};
use scot_proto::coordinator_service_server::CoordinatorServiceServer;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::StreamChunking;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::admission::Admission;
use crate::config::CoordinatorConfig;
use crate::draft_pool::DraftPool;
use crate::front_door::FrontDoor;
use crate::http::{admin_router, router, serve_http, ApiKeys, HttpState};
use crate::metrics::metrics;
use crate::node_pool::{NodeIdentity, PoolSettings};
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
    #[error(transparent)]
    Tls(#[from] scot_tls::TlsError),
}

/// A coordinator built from its configuration: what both doors serve.
pub struct Coordinator {
    front: Arc<FrontDoor>,
    model_name: String,
    api_keys: Option<Arc<ApiKeys>>,
    tls: Option<scot_tls::Tls>,
    /// `--admin-listen` is set: the admin routes are not on the API's port.
    admin_apart: bool,
    body_timeout: Duration,
}

impl Coordinator {
    /// Checks the configuration (addresses, limits, defaults) and builds the pools and the front door.
    /// Each pool's members come from its flag's list when given, else from etcd (`--etcd-endpoints`).
    pub fn build(config: &CoordinatorConfig) -> Result<Self, CoordinatorError> {
        let live: Option<Arc<dyn Discovery>> = match config.etcd.config() {
            Some(etcd) => Some(Arc::new(
                scot_discovery::EtcdDiscovery::spawn(etcd)
                    .map_err(|e| CoordinatorError::Config(format!("--etcd-endpoints: {e}")))?,
            )),
            None => None,
        };
        Self::assemble(config, live)
    }

    /// `build` with `discovery` where etcd would be: the members of the pools whose flag is empty
    /// (tests, and embedders with their own membership).
    pub fn build_with_discovery(
        config: &CoordinatorConfig,
        discovery: Arc<dyn Discovery>,
    ) -> Result<Self, CoordinatorError> {
        Self::assemble(config, Some(discovery))
    }

    fn assemble(
        config: &CoordinatorConfig,
        live: Option<Arc<dyn Discovery>>,
    ) -> Result<Self, CoordinatorError> {
        check_config(config)?;
        let tls = config.tls.load()?;
        let members = pool_discovery(config, live)?;
        let settings = |capacity_per_slot: usize, identity: NodeIdentity| PoolSettings {
            name: "",
            service: "",
            capacity_per_slot,
            max_slots: config.max_node_slots,
            health_timeout: Duration::from_millis(config.health_timeout_ms.max(1)),
            health_interval: (config.health_interval_ms > 0)
                .then(|| Duration::from_millis(config.health_interval_ms)),
            queue_timeout: Duration::from_millis(config.queue_timeout_ms),
            tls: tls.clone(),
            identity,
        };
        let drafts = Arc::new(DraftPool::new(
            members.drafts.0,
            settings(config.draft_node_capacity, members.drafts.1),
        ));
        let targets = Arc::new(TargetPool::new(
            members.targets.0,
            settings(config.target_node_capacity, members.targets.1),
        ));
        let admission = Admission::new(config.http.max_concurrent_requests);
        metrics().set_max_concurrent(admission.limit());
        let default_timeout = (config.request_timeout_secs > 0)
            .then(|| Duration::from_secs(config.request_timeout_secs));
        let front = FrontDoor::new(
            Arc::new(Solver::new(
                drafts,
                targets,
                StreamChunking {
                    max_tokens: config.stream_chunk_tokens,
                    max_ms: config.stream_chunk_ms,
                },
            )),
            admission,
            config.defaults.clone(),
            default_timeout,
        );
        let api_keys = ApiKeys::new(
            config.http.api_keys_file.as_deref(),
            config.http.api_keys.as_deref(),
            config.http.api_key_rate_limit,
        )
        .map_err(|e| CoordinatorError::Config(format!("--api-keys-file: {e}")))?;
        Ok(Self {
            front: Arc::new(front),
            model_name: config.http.served_model_name.clone(),
            api_keys,
            tls,
            admin_apart: config.http.admin_listen.is_some(),
            body_timeout: Duration::from_secs(config.http.body_timeout_secs.max(1)),
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

    /// The mTLS material of the gRPC door and the node channels (None: plaintext).
    pub fn tls(&self) -> Option<&scot_tls::Tls> {
        self.tls.as_ref()
    }

    /// The gRPC door.
    pub fn grpc_service(&self) -> CoordinatorServiceServer<CoordinatorServiceImpl> {
        CoordinatorServiceServer::new(CoordinatorServiceImpl::new(self.front.clone()))
            .max_decoding_message_size(MAX_SOLVE_REQUEST_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn http_state(&self) -> Arc<HttpState> {
        Arc::new(HttpState::new(
            self.front.clone(),
            self.model_name.clone(),
            self.api_keys.clone(),
            self.body_timeout,
        ))
    }

    /// The HTTP door's routes (with the admin routes unless `--admin-listen` takes them).
    pub fn http_router(&self) -> axum::Router {
        router(self.http_state(), !self.admin_apart)
    }

    /// The admin listener's routes (`/health`, `/ready`, `/metrics`).
    pub fn admin_router(&self) -> axum::Router {
        admin_router(self.http_state())
    }
}

/// The discovery each pool reads, and the name its members' certificates must carry.
struct PoolDiscovery {
    drafts: (Arc<dyn Discovery>, NodeIdentity),
    targets: (Arc<dyn Discovery>, NodeIdentity),
}

/// Each pool reads its flag's fixed list where it names nodes (certificates checked against the
/// addresses' hosts), else the live discovery (against the ids the nodes registered); without
/// either, drafts are empty (target-only still serves) and targets an error.
fn pool_discovery(
    config: &CoordinatorConfig,
    live: Option<Arc<dyn Discovery>>,
) -> Result<PoolDiscovery, CoordinatorError> {
    let listed = |addresses: &[String]| -> Vec<String> {
        addresses
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (drafts, targets) = (listed(&config.draft_nodes), listed(&config.target_nodes));
    for address in &targets {
        tonic::transport::Endpoint::from_shared(scot_tls::endpoint_url(address, false))
            .map_err(|e| CoordinatorError::Config(format!("--target-node {address}: {e}")))?;
    }
    let fixed: Arc<dyn Discovery> = Arc::new(StaticDiscovery::from_addresses(&drafts, &targets));
    let pick = |listed: &[String]| match &live {
        Some(live) if listed.is_empty() => (live.clone(), NodeIdentity::NodeId),
        _ => (fixed.clone(), NodeIdentity::AddressHost),
    };
    if targets.is_empty() && live.is_none() {
        return Err(CoordinatorError::Config(
            "--target-node (SCOT_TARGET_NODE) is required without --etcd-endpoints".to_string(),
        ));
    }
    Ok(PoolDiscovery {
        drafts: pick(&drafts),
        targets: pick(&targets),
    })
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
/// when set, until `shutdown` resolves; then drains: readiness turns NOT_SERVING, both doors stop
/// taking requests at once, and the requests in flight get `--drain-timeout-secs` to finish.
pub async fn serve(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let coordinator = Coordinator::build(&config)?;
    let stop = CancellationToken::new();
    start_admin(&config, &coordinator).await?;
    let http = start_http(&config, &coordinator, stop.clone()).await?;
    let (health, health_service) = tonic_health::server::health_reporter();
    let readiness = tokio::spawn(track_readiness(
        health.clone(),
        coordinator.solver().target_pool(),
        Duration::from_millis(config.health_interval_ms.max(READINESS_MIN_INTERVAL_MS)),
    ));
    tracing::info!(
        listen = %config.listen,
        target_nodes = ?config.target_nodes,
        draft_nodes = ?config.draft_nodes,
        mtls = coordinator.tls().is_some(),
        "coordinator serving"
    );
    let mut builder = Server::builder();
    if let Some(tls) = coordinator.tls() {
        builder = builder.tls_config(tls.server())?;
    }
    let grpc = builder
        .layer(scot_telemetry::GrpcServerLayer)
        .layer(scot_proto::RequestDecodeLayer)
        .add_service(health_service)
        .add_service(coordinator.grpc_service())
        .serve_with_shutdown(config.listen, stop.clone().cancelled_owned());
    tokio::pin!(grpc, shutdown);
    let served = tokio::select! {
        // The server ended on its own (it could not serve).
        served = &mut grpc => served,
        () = &mut shutdown => {
            readiness.abort();
            health
                .set_not_serving::<CoordinatorServiceServer<CoordinatorServiceImpl>>()
                .await;
            let grace = Duration::from_secs(config.drain_timeout_secs);
            tracing::info!(
                in_flight = coordinator.admission().in_flight(),
                grace_secs = grace.as_secs(),
                "draining: no new requests; waiting for those in flight"
            );
            stop.cancel();
            let drained = tokio::time::timeout(grace, async {
                let served = (&mut grpc).await;
                if let Some(http) = http {
                    let _ = http.await;
                }
                served
            })
            .await;
            match drained {
                Ok(served) => served,
                Err(_) => {
                    tracing::warn!(
                        in_flight = coordinator.admission().in_flight(),
                        "drain timeout: ending the requests still in flight with UNAVAILABLE"
                    );
                    coordinator.admission().abort_in_flight();
                    // Time for those errors to reach their clients.
                    let _ = tokio::time::timeout(ABORT_FLUSH, &mut grpc).await;
                    Ok(())
                }
            }
        }
    };
    readiness.abort();
    stop.cancel();
    served?;
    Ok(())
}

/// After a drain timeout, how long the aborted requests' errors get to reach their clients.
const ABORT_FLUSH: Duration = Duration::from_secs(2);

/// The shortest period of the readiness check (a 0 health interval means "check on every routing
/// decision", which a timer cannot follow).
const READINESS_MIN_INTERVAL_MS: u64 = 200;

/// The gRPC health of CoordinatorService (what the k8s readiness probe asks) follows the target pool:
/// SERVING while some target is in routing, NOT_SERVING otherwise. The server's overall health (""),
/// the liveness probe's, stays SERVING.
async fn track_readiness(
    reporter: tonic_health::server::HealthReporter,
    targets: Arc<TargetPool>,
    every: Duration,
) {
    let mut serving = None;
    loop {
        let (up, down) = targets.reachable().await;
        let now = !up.is_empty();
        if serving != Some(now) {
            if now {
                reporter
                    .set_serving::<CoordinatorServiceServer<CoordinatorServiceImpl>>()
                    .await;
                tracing::info!(targets = up.len(), "ready: a target node is in routing");
            } else {
                reporter
                    .set_not_serving::<CoordinatorServiceServer<CoordinatorServiceImpl>>()
                    .await;
                tracing::warn!(
                    unreachable = down.len(),
                    "not ready: no target node in routing"
                );
            }
            serving = Some(now);
        }
        tokio::time::sleep(every).await;
    }
}

/// Binds `--admin-listen` (when set) and serves the admin routes on a background task for as long
/// as the process lives (probes keep their answers through a drain).
async fn start_admin(
    config: &CoordinatorConfig,
    coordinator: &Coordinator,
) -> Result<(), CoordinatorError> {
    let Some(listen) = config.http.admin_listen else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CoordinatorError::Config(format!("--admin-listen {listen}: {e}")))?;
    tracing::info!(%listen, "admin endpoints serving (/health, /ready, /metrics)");
    let (router, limits) = (coordinator.admin_router(), config.http.connection_limits());
    tokio::spawn(async move {
        if let Err(error) = serve_http(listener, router, limits, CancellationToken::new()).await {
            tracing::error!(%error, "admin server stopped");
        }
    });
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
    let (router, limits) = (coordinator.http_router(), config.http.connection_limits());
    Ok(Some(tokio::spawn(async move {
        if let Err(error) = serve_http(listener, router, limits, stop).await {
            tracing::error!(%error, "HTTP server stopped");
        }
    })))
}
