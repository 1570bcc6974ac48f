//! The gRPC server every node runs: its one service plus gRPC health and its load report, behind the telemetry layer, until
//! a stop drains it (see [`NodeStop`]) — or until a tensor-parallel rank fails. Then health is already
//! NOT_SERVING (see [`NodeFailure`](crate::node_failure::NodeFailure)), the server drains briefly and
//! the node ends with the failure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

use scot_discovery::NodeKind;
use scot_tls::Tls;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::model_args::LoadError;
use crate::node_failure::RankFailure;
use crate::node_load::NodeLoadServer;
use crate::node_model::NodeModel;
use crate::node_stop::NodeStop;
use scot_proto::node_load_service_server::NodeLoadServiceServer;

/// Once the engine work is over (drained, or a rank failed), how long the answers already written get
/// to flush before the server is dropped (long-lived streams such as health Watch would otherwise hold
/// a graceful shutdown open).
const FLUSH: Duration = Duration::from_secs(2);

/// `scot_node_tensor_parallel_ranks`: the ranks this node's model is sharded over.
static TENSOR_PARALLEL_RANKS: LazyLock<Gauge> = LazyLock::new(|| {
    let gauge = Gauge::default();
    scot_telemetry::register(
        "scot_node_tensor_parallel_ranks",
        "Tensor-parallel ranks the node's model is sharded over (1 = unsharded)",
        gauge.clone(),
    );
    gauge
});

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    RankFailed(RankFailure),
    /// A node kind's own start-up input was refused (e.g. a target's selection prior).
    #[error(transparent)]
    Config(Box<dyn std::error::Error + Send + Sync>),
}

/// Serves `service` and gRPC health on `listen` (with mTLS when `tls` is set: clients without a
/// certificate from the cluster CA fail the handshake) until `stop` is requested and the node drained (Ok:
/// the service NOT_SERVING at once, new engine jobs refused, accepted ones finished within the grace
/// period), or a rank of the node's model fails (Err(RankFailed)).
pub async fn serve_node<S>(
    kind: NodeKind,
    listen: SocketAddr,
    tls: Option<Tls>,
    node: &NodeModel,
    service: S,
    stop: &NodeStop,
) -> Result<(), NodeError>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(S::NAME, ServingStatus::Serving)
        .await;
    scot_telemetry::set_ready(true);
    let failure = node.gate.failure().clone();
    failure.attach_health(health.clone(), S::NAME).await;
    TENSOR_PARALLEL_RANKS.set(i64::try_from(node.tensor_parallel).unwrap_or(i64::MAX));
    tracing::info!(
        %listen,
        model = %node.model.info().name,
        tensor_parallel = node.tensor_parallel,
        mtls = tls.is_some(),
        "{} node serving",
        kind.as_str()
    );
    let server_stop = CancellationToken::new();
    let mut builder = Server::builder();
    if let Some(tls) = &tls {
        builder = builder.tls_config(tls.server())?;
    }
    let server = builder
        .layer(scot_telemetry::GrpcServerLayer)
        .layer(scot_proto::RequestDecodeLayer)
        .add_service(health_service)
        .add_service(NodeLoadServiceServer::new(NodeLoadServer::new(
            node.gate.clone(),
        )))
        .add_service(service)
        .serve_with_shutdown(listen, server_stop.clone().cancelled_owned());
    tokio::pin!(server);
    let drain = async {
        stop.requested().await;
        health
            .set_service_status(S::NAME, ServingStatus::NotServing)
            .await;
        scot_telemetry::set_ready(false);
        node.gate.start_draining();
        stop.refusing_new_work();
        tracing::info!(
            accepted = node.gate.accepted(),
            grace_secs = stop.grace().as_secs(),
            "draining: NOT_SERVING, refusing new work, finishing the work accepted"
        );
        if tokio::time::timeout(stop.grace(), node.gate.drained())
            .await
            .is_err()
        {
            tracing::warn!(
                accepted = node.gate.accepted(),
                "drain grace period over: stopping with work unfinished"
            );
        }
    };
    let gauges = crate::node_load::publish_load_gauges(node.gate.clone());
    tokio::pin!(gauges);
    let result = tokio::select! {
        never = &mut gauges => match never {},
        // The server ended on its own (it could not serve).
        result = &mut server => result,
        () = drain => {
            server_stop.cancel();
            if tokio::time::timeout(FLUSH, &mut server).await.is_err() {
                tracing::warn!("open streams after the drain: closing them");
            }
            tracing::info!("drained; stopping");
            Ok(())
        }
        rank_failure = failure.wait() => {
            server_stop.cancel();
            if tokio::time::timeout(FLUSH, &mut server).await.is_err() {
                tracing::warn!("open streams after the rank failure: closing them");
            }
            return Err(NodeError::RankFailed(rank_failure));
        }
    };
    match failure.failed() {
        Some(rank_failure) => Err(NodeError::RankFailed(rank_failure)),
        None => Ok(result?),
    }
}
