//! A node's process around its server (the node binaries and `scot draft-node`/`scot target-node`):
//! flags beside the node's own (metrics, etcd registration), and the server process of
//! [`run_server_process`] under the name `scot-<kind>-node`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use scot_discovery::{DiscoveryError, NodeKind, RegistrationArgs};
use scot_tls::{Tls, TlsArgs, TlsError};

use crate::discovery_registration::serve_registered;
use crate::grpc_server::NodeError;
use crate::model_args::ModelArgs;
use crate::node_stop::{NodeStop, DEFAULT_DRAIN_GRACE_SECS};
use crate::runtime::{run_server_process, shutdown_signal, ProcessError};

/// Process flags every node binary takes besides its node config.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeProcessArgs {
    /// Address of the Prometheus `/metrics` endpoint (off when unset).
    #[arg(long, env = "SCOT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// On SIGTERM / Ctrl-C the node turns NOT_SERVING, leaves etcd and refuses new work, then gives
    /// the work it accepted this long (seconds) to finish before it exits. Keep it under the pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, env = "SCOT_DRAIN_GRACE_SECS", default_value_t = DEFAULT_DRAIN_GRACE_SECS)]
    pub drain_grace_secs: u64,
    /// etcd registration (off unless --etcd-endpoints / SCOT_ETCD_ENDPOINTS is set).
    #[command(flatten)]
    pub registration: RegistrationArgs,
    /// mTLS: with a certificate the node serves only clients whose certificate the cluster CA signed.
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeProcessError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("--metrics-listen")]
    MetricsListen(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
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
/// endpoint, then `serve(stop, tls)` (the node's load-then-serve future, with the node's mTLS material
/// when configured), registered in etcd when configured; SIGTERM or Ctrl-C requests the stop, and the node drains (see [`NodeStop`]).
pub fn run_node_process<F>(
    kind: NodeKind,
    process: &NodeProcessArgs,
    model: &ModelArgs,
    listen: SocketAddr,
    serve: impl FnOnce(NodeStop, Option<Tls>) -> F,
) -> Result<(), NodeProcessError>
where
    F: Future<Output = Result<(), NodeError>>,
{
    // Read before the runtime and the model, so a bad certificate flag fails fast.
    let tls = process.tls.load()?;
    let service_name = format!("scot-{}-node", kind.as_str());
    run_server_process(&service_name, async {
        scot_telemetry::spawn_metrics_server(process.metrics_listen)
            .await
            .map_err(NodeProcessError::MetricsListen)?;
        let stop = NodeStop::on(
            shutdown_signal(),
            Duration::from_secs(process.drain_grace_secs),
        );
        let serve = serve(stop.clone(), tls);
        serve_registered(&process.registration, kind, model, listen, &stop, serve)
            .await
            .map_err(NodeProcessError::Registration)?
            .map_err(|source| NodeProcessError::Node {
                kind: kind.as_str(),
                source,
            })
    })
}
