//! Serves a SIMULATED node (Draft or Target service + gRPC health, SERVING) on a fresh loopback port,
//! as the real node binaries do, until the handle is dropped or shut down.

use std::convert::Infallible;
use std::net::SocketAddr;

use scot_proto::draft_service_server::DraftServiceServer;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::target_service_server::TargetServiceServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::draft_node::SimulatedDraftNode;
use crate::target_node::SimulatedTargetNode;

/// A running simulated node; stops when dropped.
pub struct SimulatedNodeServer {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimulatedNodeServer {
    /// `http://127.0.0.1:port`, as the coordinator's flags take it.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimulatedNodeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn bind() -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    Ok((listener, address))
}

pub async fn serve_simulated_draft_node(
    node: SimulatedDraftNode,
) -> std::io::Result<SimulatedNodeServer> {
    let service = DraftServiceServer::new(node).max_encoding_message_size(MAX_MESSAGE_BYTES);
    serve_simulated(service, "draft").await
}

pub async fn serve_simulated_target_node(
    node: SimulatedTargetNode,
) -> std::io::Result<SimulatedNodeServer> {
    let service = TargetServiceServer::new(node)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    serve_simulated(service, "target").await
}

/// Serves one simulated node's service plus gRPC health (SERVING) on a free loopback port.
async fn serve_simulated<S>(service: S, kind: &'static str) -> std::io::Result<SimulatedNodeServer>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (listener, address) = bind().await?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(S::NAME, ServingStatus::Serving)
        .await;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = Server::builder()
            .add_service(health_service)
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, kind, "simulated node stopped");
        }
    });
    Ok(SimulatedNodeServer {
        address,
        stop: Some(stop),
        task: Some(task),
    })
}
