//! scot's draft node: serves the small model. One Draft call prefills the draft prompt once and
//! decodes the requested draft indices together as one batch, streaming progress and each draft.

pub mod draft_job;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;

use scot_node_support::{ModelArgs, NodeModel};
use scot_proto::draft_service_server::DraftServiceServer;
use tonic::transport::Server;

pub use service::DraftNodeService;

#[derive(clap::Args, Debug, Clone)]
pub struct DraftNodeConfig {
    /// Address the DraftService listens on.
    #[arg(long, env = "SCOT_DRAFT_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum DraftNodeError {
    #[error(transparent)]
    Load(#[from] scot_node_support::model_args::LoadError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Loads the model, then serves the DraftService and gRPC health until `shutdown` resolves.
pub async fn serve(
    config: DraftNodeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DraftNodeError> {
    let node = config.model.load_off_runtime().await?;
    serve_loaded(config.listen, node, shutdown).await
}

pub async fn serve_loaded(
    listen: SocketAddr,
    node: NodeModel,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DraftNodeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<DraftServiceServer<DraftNodeService>>()
        .await;
    tracing::info!(%listen, model = %node.model.info().name, "draft node serving");
    Server::builder()
        .layer(scot_telemetry::GrpcServerLayer)
        .add_service(health_service)
        .add_service(
            DraftServiceServer::new(DraftNodeService::new(node))
                .max_encoding_message_size(64 << 20),
        )
        .serve_with_shutdown(listen, shutdown)
        .await?;
    Ok(())
}
