//! The calls a request makes on its target node (selection, generation), with the node's errors named
//! and an UNAVAILABLE node taken out of routing.

use futures::StreamExt;
use scot_proto::generate_event::Event as GenerateEventKind;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::target_service_client::TargetServiceClient;
use scot_proto::{GenerateRequest, GenerateResult, SelectRequest, SelectResponse, SolveEvent};
use tonic::transport::Channel;
use tonic::Status;

use crate::target_pool::TargetLease;
use crate::timing::{request_with_deadline, Deadline};

/// The selection prefill over `request`'s drafts.
pub async fn select(
    target: &TargetLease,
    request: SelectRequest,
    deadline: Deadline,
) -> Result<SelectResponse, Status> {
    Ok(client(target)
        .select(request_with_deadline(request, deadline))
        .await
        .map_err(|status| failed(target, status))?
        .into_inner())
}

/// Streams the target's thinking (when it has no accepted draft) and answer to the client as tokens.
pub async fn generate(
    target: &TargetLease,
    request: GenerateRequest,
    deadline: Deadline,
    emit: &(dyn Fn(SolveEvent) + Send + Sync),
) -> Result<GenerateResult, Status> {
    let mut stream = client(target)
        .generate(request_with_deadline(request, deadline))
        .await
        .map_err(|status| failed(target, status))?
        .into_inner();
    while let Some(event) = stream.next().await {
        let event = event.map_err(|status| failed(target, status))?;
        match event.event {
            Some(GenerateEventKind::Token(token)) => emit(SolveEvent {
                event: Some(SolveEventKind::Token(token)),
            }),
            Some(GenerateEventKind::Result(result)) => return Ok(result),
            None => {}
        }
    }
    Err(Status::unavailable(format!(
        "target node {} ended its answer stream without a result",
        target.address()
    )))
}

fn client(target: &TargetLease) -> TargetServiceClient<Channel> {
    TargetServiceClient::new(target.channel())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The target's error, naming the node (and taking it out of routing when it is gone).
fn failed(target: &TargetLease, status: Status) -> Status {
    target.node().call_failed(&status);
    target.node().named(&status)
}
