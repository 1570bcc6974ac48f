//! A node binary's process around its server: flags beside the node's own (metrics, etcd
//! registration), telemetry, the runtime, and a bounded runtime shutdown so a failed node exits
//! instead of waiting on engine threads.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use scot_discovery::{DiscoveryError, NodeKind, RegistrationArgs};

use crate::discovery_registration::serve_registered;
use crate::grpc_server::NodeError;
use crate::model_args::ModelArgs;

/// How long engine threads still running after the server stopped may hold up the exit.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);

/// Process flags every node binary takes besides its node config.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeProcessArgs {
    /// Address of the Prometheus `/metrics` endpoint (off when unset).
    #[arg(long, env = "SCOT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// etcd registration (off unless --etcd-endpoints / SCOT_ETCD_ENDPOINTS is set).
    #[command(flatten)]
    pub registration: RegistrationArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeProcessError {
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("telemetry")]
    Telemetry(#[source] scot_telemetry::TelemetryError),
    #[error("--metrics-listen")]
    MetricsListen(#[source] std::io::Error),
    #[error("etcd registration")]
    Registration(#[source] DiscoveryError),
    #[error("{kind} node failed")]
    Node {
        kind: &'static str,
        #[source]
        source: NodeError,
    },
}

/// Runs a node binary: starts the runtime and telemetry (service `scot-<kind>-node`), the metrics
/// endpoint, then `serve` (the node's load-then-serve future), registered in etcd when configured.
pub fn run_node_process(
    kind: NodeKind,
    process: &NodeProcessArgs,
    model: &ModelArgs,
    listen: SocketAddr,
    serve: impl Future<Output = Result<(), NodeError>>,
) -> Result<(), NodeProcessError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(NodeProcessError::Runtime)?;
    let result = runtime.block_on(async {
        let service_name = format!("scot-{}-node", kind.as_str());
        let _telemetry =
            scot_telemetry::init(&service_name).map_err(NodeProcessError::Telemetry)?;
        scot_telemetry::spawn_metrics_server(process.metrics_listen)
            .await
            .map_err(NodeProcessError::MetricsListen)?;
        serve_registered(&process.registration, kind, model, listen, serve)
            .await
            .map_err(NodeProcessError::Registration)?
            .map_err(|source| NodeProcessError::Node {
                kind: kind.as_str(),
                source,
            })
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    result
}
