//! scot's draft node (the `draft-node` binary, or `scot draft-node`): serves the small model. One Draft
//! call prefills the draft prompt once and decodes the requested draft indices together as one batch,
//! streaming progress and each draft.

pub mod draft_job;
pub mod service;

use std::net::SocketAddr;

use scot_discovery::NodeKind;
use scot_node_support::{ModelArgs, NodeModel, NodeProcessArgs, NodeProcessError, NodeStop};
use scot_proto::draft_service_server::DraftServiceServer;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_tls::Tls;

pub use scot_node_support::NodeError as DraftNodeError;
pub use service::DraftNodeService;

#[derive(clap::Args, Debug, Clone)]
pub struct DraftNodeConfig {
    /// Address the DraftService listens on.
    #[arg(long, env = "SCOT_DRAFT_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Everything a draft-node process takes: the node's flags and the process flags every node takes.
/// The `draft-node` binary and `scot draft-node` both parse exactly this.
#[derive(clap::Args, Debug, Clone)]
pub struct DraftNodeArgs {
    #[command(flatten)]
    pub config: DraftNodeConfig,
    #[command(flatten)]
    pub process: NodeProcessArgs,
}

/// Runs a draft-node process until Ctrl-C or SIGTERM (see [`scot_node_support::run_node_process`]).
pub fn run_process(args: DraftNodeArgs) -> Result<(), NodeProcessError> {
    let (model, listen) = (args.config.model.clone(), args.config.listen);
    scot_node_support::run_node_process(
        NodeKind::Draft,
        &args.process,
        &model,
        listen,
        |stop, tls| serve(args.config, tls, stop),
    )
}

/// Loads the model, then serves the DraftService and gRPC health until `stop` drains it.
pub async fn serve(
    config: DraftNodeConfig,
    tls: Option<Tls>,
    stop: NodeStop,
) -> Result<(), DraftNodeError> {
    let node = config.model.load_off_runtime().await?;
    serve_loaded(config.listen, tls, node, stop).await
}

pub async fn serve_loaded(
    listen: SocketAddr,
    tls: Option<Tls>,
    node: NodeModel,
    stop: NodeStop,
) -> Result<(), DraftNodeError> {
    let service = DraftServiceServer::new(DraftNodeService::new(node.clone()))
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    scot_node_support::serve_node(NodeKind::Draft, listen, tls, &node, service, &stop).await
}
