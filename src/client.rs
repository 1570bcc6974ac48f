//! A Solve call to a coordinator: streams the phase events to a callback and returns the final result.

use std::time::Duration;

use futures::StreamExt;
use scot_proto::coordinator_service_client::CoordinatorServiceClient;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::solve_event::Event;
use scot_proto::{SolveRequest, SolveResult};
use tonic::transport::Endpoint;
use tonic::Status;

/// Sends `request` to the coordinator at `url`; `timeout` becomes the request's deadline.
pub async fn solve(
    url: &str,
    request: SolveRequest,
    timeout: Option<Duration>,
    mut on_event: impl FnMut(&Event),
) -> Result<SolveResult, Status> {
    let channel = Endpoint::from_shared(url.to_string())
        .map_err(|e| Status::invalid_argument(format!("coordinator address {url}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| Status::unavailable(format!("cannot reach the coordinator at {url}: {e}")))?;
    let mut client =
        CoordinatorServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut call = tonic::Request::new(request);
    if let Some(timeout) = timeout {
        call.set_timeout(timeout);
    }
    let mut stream = client.solve(call).await?.into_inner();
    while let Some(event) = stream.next().await {
        let event = event?;
        if let Some(event) = event.event {
            if let Event::Result(result) = event {
                return Ok(result);
            }
            on_event(&event);
        }
    }
    Err(Status::unavailable(
        "the coordinator ended the stream without a result",
    ))
}
