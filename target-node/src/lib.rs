//! scot's target node: serves the big model. Select reads the chosen option from one prefill of the
//! selection prompt; Generate writes the answer after an accepted draft, or thinks from scratch and
//! then answers, in one session.

pub mod generate_job;
pub mod select_job;
pub mod selection;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;

use scot_discovery::NodeKind;
use scot_node_support::{ModelArgs, NodeModel, MAX_MESSAGE_BYTES};
use scot_proto::target_service_server::TargetServiceServer;

pub use scot_node_support::NodeError as TargetNodeError;
pub use service::TargetNodeService;

#[derive(clap::Args, Debug, Clone)]
pub struct TargetNodeConfig {
    /// Address the TargetService listens on.
    #[arg(long, env = "SCOT_TARGET_LISTEN", default_value = "127.0.0.1:50071")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Loads the model, then serves the TargetService and gRPC health until `shutdown` resolves, or until
/// a tensor-parallel rank fails (then health turns NOT_SERVING first and this returns the failure).
pub async fn serve(
    config: TargetNodeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TargetNodeError> {
    let node = config.model.load_off_runtime().await?;
    serve_loaded(config.listen, node, shutdown).await
}

pub async fn serve_loaded(
    listen: SocketAddr,
    node: NodeModel,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TargetNodeError> {
    let service = TargetServiceServer::new(TargetNodeService::new(node.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    scot_node_support::serve_node(NodeKind::Target, listen, &node, service, shutdown).await
}
