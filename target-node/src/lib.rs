//! scot's target node: serves the big model. Select reads the chosen option from one prefill of the
//! selection prompt; Generate writes the answer after an accepted draft, or thinks from scratch and
//! then answers, in one session.

pub mod generate_job;
pub mod select_job;
pub mod selection;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;

use scot_node_support::{ModelArgs, NodeModel};
use scot_proto::target_service_server::TargetServiceServer;
use tonic::transport::Server;

pub use service::TargetNodeService;

#[derive(clap::Args, Debug, Clone)]
pub struct TargetNodeConfig {
    /// Address the TargetService listens on.
    #[arg(long, env = "SCOT_TARGET_LISTEN", default_value = "127.0.0.1:50071")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetNodeError {
    #[error(transparent)]
    Load(#[from] scot_node_support::model_args::LoadError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Loads the model, then serves the TargetService and gRPC health until `shutdown` resolves.
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
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<TargetServiceServer<TargetNodeService>>()
        .await;
    tracing::info!(%listen, model = %node.model.info().name, "target node serving");
    Server::builder()
        .layer(scot_telemetry::GrpcServerLayer)
        .add_service(health_service)
        .add_service(
            TargetServiceServer::new(TargetNodeService::new(node))
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
        .serve_with_shutdown(listen, shutdown)
        .await?;
    Ok(())
}
