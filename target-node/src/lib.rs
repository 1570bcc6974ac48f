//! scot's target node (the `target-node` binary, or `scot target-node`): serves the big model. Select
//! reads the chosen option from one prefill of the selection prompt; Generate writes the answer after
//! an accepted draft, or thinks from scratch and then answers, in one session (with a draft model
//! speculating its tokens when `--speculative-draft` names one).

pub mod generate_job;
pub mod select_job;
pub mod selection;
pub mod selection_prior;
pub mod service;

use std::net::SocketAddr;
use std::path::PathBuf;

use scot_discovery::NodeKind;
use scot_node_support::{
    ModelArgs, NodeModel, NodeProcessArgs, NodeProcessError, NodeStop, SpeculativeArgs,
};
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::target_service_server::TargetServiceServer;
use scot_tls::Tls;

pub use scot_node_support::NodeError as TargetNodeError;
pub use selection_prior::SelectionPriors;
pub use service::TargetNodeService;

#[derive(clap::Args, Debug, Clone)]
pub struct TargetNodeConfig {
    /// Address the TargetService listens on.
    #[arg(long, env = "SCOT_TARGET_LISTEN", default_value = "127.0.0.1:50071")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Selection prior files made by `scot calibrate` for this model (comma-separated; one per
    /// template set and number of drafts). Select divides the prior out for the `debiased` and
    /// `hybrid` policies; a file made for another model or selection prompt is refused at start-up.
    #[arg(long, env = "SCOT_SELECTION_PRIOR", value_delimiter = ',')]
    pub selection_prior: Vec<PathBuf>,
    /// Token-level speculation in the target's own thinking and answers.
    #[command(flatten)]
    pub speculative: SpeculativeArgs,
}

/// Everything a target-node process takes: the node's flags and the process flags every node takes.
/// The `target-node` binary and `scot target-node` both parse exactly this.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetNodeArgs {
    #[command(flatten)]
    pub config: TargetNodeConfig,
    #[command(flatten)]
    pub process: NodeProcessArgs,
}

/// Runs a target-node process until Ctrl-C or SIGTERM (see [`scot_node_support::run_node_process`]).
pub fn run_process(args: TargetNodeArgs) -> Result<(), NodeProcessError> {
    let (model, listen) = (args.config.model.clone(), args.config.listen);
    scot_node_support::run_node_process(
        NodeKind::Target,
        &args.process,
        &model,
        listen,
        |stop, tls| serve(args.config, tls, stop),
    )
}

/// Loads the model, then serves the TargetService and gRPC health until `stop` drains it, or until
/// a tensor-parallel rank fails (then health turns NOT_SERVING first and this returns the failure).
pub async fn serve(
    config: TargetNodeConfig,
    tls: Option<Tls>,
    stop: NodeStop,
) -> Result<(), TargetNodeError> {
    let node = config
        .model
        .load_off_runtime_with(&config.speculative)
        .await?;
    let priors = SelectionPriors::load(&config.selection_prior, &node)
        .map_err(|e| TargetNodeError::Config(Box::new(e)))?;
    serve_loaded(config.listen, tls, node, priors, stop).await
}

pub async fn serve_loaded(
    listen: SocketAddr,
    tls: Option<Tls>,
    node: NodeModel,
    priors: SelectionPriors,
    stop: NodeStop,
) -> Result<(), TargetNodeError> {
    let service = TargetServiceServer::new(TargetNodeService::new(node.clone(), priors))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    scot_node_support::serve_node(NodeKind::Target, listen, tls, &node, service, &stop).await
}
