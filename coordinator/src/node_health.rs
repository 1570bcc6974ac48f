//! One gRPC health check (`grpc.health.v1`) of a node and one load report (`NodeLoadService`), and what
//! the pools remember of the last ones.

use std::time::Duration;

use scot_proto::node_load_service_client::NodeLoadServiceClient;
use scot_proto::{LoadReport, LoadRequest};
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A node's routing state from its health checks and call failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Never checked yet: checked before its first use.
    Unknown,
    Up,
    /// A health check failed: out of routing until one says SERVING again.
    Down(String),
    /// A call found the node gone (UNAVAILABLE, a broken connection): out of routing until a
    /// (background) health check says SERVING.
    CallFailed(String),
}

/// Asks the node's health service about `service`; Ok when it says SERVING. A node without a health
/// service (UNIMPLEMENTED) counts as up: only its call failures can take it out.
pub async fn check_health(
    channel: Channel,
    service: &str,
    timeout: Duration,
) -> Result<(), String> {
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => Err(format!("health check timed out after {timeout:?}")),
        Ok(Err(status)) if status.code() == Code::Unimplemented => Ok(()),
        Ok(Err(status)) => Err(format!(
            "health check failed: {}",
            scot_proto::status_chain(&status)
        )),
        Ok(Ok(response)) => {
            let status = response.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                Ok(())
            } else {
                let name = ServingStatus::try_from(status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("UNKNOWN");
                Err(format!("health status {name}"))
            }
        }
    }
}

/// The node's load report; None when it has no load service (UNIMPLEMENTED: an older or foreign node)
/// or did not answer in time.
pub async fn fetch_load(channel: Channel, timeout: Duration) -> Option<LoadReport> {
    let mut client = NodeLoadServiceClient::new(channel);
    match tokio::time::timeout(timeout, client.load(LoadRequest {})).await {
        Ok(Ok(response)) => Some(response.into_inner()),
        _ => None,
    }
}
