//! A request's target node: the lease and the calls made on it (selection, generation). A call that
//! fails UNAVAILABLE before any of its output reached the client (the node died or is going away) takes
//! the node out of routing and is made again on another target, so the client does not notice;
//! after output was streamed the error is the client's (migration is not built yet).

use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use scot_proto::generate_event::Event as GenerateEventKind;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::target_service_client::TargetServiceClient;
use scot_proto::{GenerateRequest, GenerateResult, SelectRequest, SelectResponse, SolveEvent};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::target_pool::{TargetLease, TargetPool};
use crate::timing::{request_with_deadline, Deadline};

/// Target nodes one request may go through after its first: enough to ride out a node or two lost
/// mid-load, bounded so a pool that fails everything answers quickly.
const MAX_TARGET_RETRIES: u32 = 2;

type Emit<'a> = &'a (dyn Fn(SolveEvent) + Send + Sync);

pub struct RequestTarget<'a> {
    pool: &'a TargetPool,
    deadline: Deadline,
    lease: Option<TargetLease>,
    retries: u32,
}

impl<'a> RequestTarget<'a> {
    pub fn new(pool: &'a TargetPool, deadline: Deadline) -> Self {
        Self {
            pool,
            deadline,
            lease: None,
            retries: 0,
        }
    }

    /// Leases a target now if the request has none (UNAVAILABLE / RESOURCE_EXHAUSTED when none can be).
    pub async fn lease(&mut self) -> Result<&TargetLease, Status> {
        let lease = match self.lease.take() {
            Some(lease) => lease,
            None => self.pool.pick(self.deadline).await?,
        };
        Ok(self.lease.insert(lease))
    }

    /// Calls made again on another target after a failure.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The selection prefill over `request`'s drafts.
    pub async fn select(&mut self, request: SelectRequest) -> Result<SelectResponse, Status> {
        loop {
            let deadline = self.deadline;
            let target = self.lease().await?;
            let result = client(target)
                .select(request_with_deadline(request.clone(), deadline))
                .await;
            match result {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => self.failed(status, false)?,
            }
        }
    }

    /// Streams the target's thinking (when it has no accepted draft) and answer to the client as tokens.
    pub async fn generate(
        &mut self,
        request: GenerateRequest,
        emit: Emit<'_>,
    ) -> Result<GenerateResult, Status> {
        loop {
            let deadline = self.deadline;
            let streamed = AtomicBool::new(false);
            let forward = |event: SolveEvent| {
                streamed.store(true, Ordering::Relaxed);
                emit(event);
            };
            let target = self.lease().await?;
            match generate(target, request.clone(), deadline, &forward).await {
                Ok(result) => return Ok(result),
                Err(status) => self.failed(status, streamed.load(Ordering::Relaxed))?,
            }
        }
    }

    /// After a failed call: `Ok` to make it again on another target, else the error for the client
    /// (naming the node). The node is out of routing when it is gone.
    fn failed(&mut self, status: Status, streamed: bool) -> Result<(), Status> {
        let Some(target) = self.lease.take() else {
            return Err(status);
        };
        target.node().call_failed(&status);
        let named = target.node().named(&status);
        if status.code() != Code::Unavailable || streamed || self.retries >= MAX_TARGET_RETRIES {
            return Err(named);
        }
        self.retries += 1;
        tracing::warn!(node = %target.address(), error = %status, retry = self.retries, "target call failed before any output; trying another target");
        Ok(())
    }
}

async fn generate(
    target: &TargetLease,
    request: GenerateRequest,
    deadline: Deadline,
    emit: Emit<'_>,
) -> Result<GenerateResult, Status> {
    let mut stream = client(target)
        .generate(request_with_deadline(request, deadline))
        .await?
        .into_inner();
    while let Some(event) = stream.next().await {
        match event?.event {
            Some(GenerateEventKind::Token(token)) => emit(SolveEvent {
                event: Some(SolveEventKind::Token(token)),
            }),
            Some(GenerateEventKind::Result(result)) => return Ok(result),
            None => {}
        }
    }
    Err(Status::unavailable(
        "the answer stream ended without a result",
    ))
}

fn client(target: &TargetLease) -> TargetServiceClient<Channel> {
    TargetServiceClient::new(target.channel())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}
