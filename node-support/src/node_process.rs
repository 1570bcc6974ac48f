//! A node's process around its server (the node binaries and `scot draft-node`/`scot target-node`):
//! flags beside the node's own (metrics, etcd registration), and the server process of
//! [`run_server_process`] under the name `scot-<kind>-node`.

use std::future::Future;
use std::net::SocketAddr;

use scot_discovery::{DiscoveryError, NodeKind, RegistrationArgs};

use crate::discovery_registration::serve_registered;
use crate::grpc_server::NodeError;
use crate::model_args::ModelArgs;
use crate::runtime::{run_server_process, ProcessError};

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
    #[error(transparent)]
    Process(#[from] ProcessError),
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

/// Runs a node process: the runtime and telemetry (service `scot-<kind>-node`), the metrics
/// endpoint, then `serve` (the node's load-then-serve future), registered in etcd when configured.
pub fn run_node_process(
    kind: NodeKind,
    process: &NodeProcessArgs,
    model: &ModelArgs,
    listen: SocketAddr,
    serve: impl Future<Output = Result<(), NodeError>>,
) -> Result<(), NodeProcessError> {
    let service_name = format!("scot-{}-node", kind.as_str());
    run_server_process(&service_name, async {
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
    })
}
