//! A request's target node: the lease and the calls made on it (selection, generation). When a target
//! fails — it died, stalled past its keepalive, is draining (UNAVAILABLE; it leaves routing) or its
//! line is full (RESOURCE_EXHAUSTED) — the call is made again on another target: before any of its
//! output reached the client, from scratch, so the client does not notice; after, as a migration: the
//! next target prefills the tokens already streamed and goes on, so the client's stream has nothing
//! repeated and nothing missing.

use std::sync::{Mutex, PoisonError};

use futures::StreamExt;
use scot_proto::generate_event::Event as GenerateEventKind;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::target_service_client::TargetServiceClient;
use scot_proto::{
    GeneratePhase, GenerateRequest, GenerateResult, GenerateResume, GenerateToken, SelectRequest,
    SelectResponse, SolveEvent,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::target_pool::{TargetLease, TargetPool};
use crate::timing::{request_with_deadline, Deadline};

/// Target nodes one request may go through after its first (retries and migrations together): enough
/// to ride out a node or two lost mid-load, bounded so a pool that fails everything answers quickly.
const MAX_TARGET_RETRIES: u32 = 2;

type Emit<'a> = &'a (dyn Fn(SolveEvent) + Send + Sync);
type EmitToken<'a> = &'a (dyn Fn(GenerateToken) + Send + Sync);

pub struct RequestTarget<'a> {
    pool: &'a TargetPool,
    deadline: Deadline,
    lease: Option<TargetLease>,
    retries: u32,
    migrations: u32,
}

impl<'a> RequestTarget<'a> {
    pub fn new(pool: &'a TargetPool, deadline: Deadline) -> Self {
        Self {
            pool,
            deadline,
            lease: None,
            retries: 0,
            migrations: 0,
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

    /// Calls made again on another target after a failure before any output.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Answers moved to another target after output had been streamed.
    pub fn migrations(&self) -> u32 {
        self.migrations
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
        mut request: GenerateRequest,
        emit: Emit<'_>,
    ) -> Result<GenerateResult, Status> {
        // What reached the client so far, over every target this answer went through.
        let streamed = Mutex::new(Streamed::default());
        let forward = |mut token: GenerateToken| {
            record(
                &mut streamed.lock().unwrap_or_else(PoisonError::into_inner),
                &token,
            );
            // The ids are for a migration, not for the client.
            token.token_ids.clear();
            emit(SolveEvent {
                event: Some(SolveEventKind::Token(token)),
            });
        };
        loop {
            let deadline = self.deadline;
            let target = self.lease().await?;
            match generate(target, request.clone(), deadline, &forward).await {
                Ok(result) => return Ok(result),
                Err(status) => {
                    let streamed = streamed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    if streamed.began && !streamed.resumable {
                        // Repeating the call would repeat text the client has.
                        return Err(self.give_up(status));
                    }
                    self.failed(status, streamed.began)?;
                    if streamed.began {
                        request.resume = Some(streamed.resume);
                    }
                }
            }
        }
    }

    /// After a failed call: `Ok` to make it again on another target (`migrate`: continuing the output
    /// already streamed), else the error for the client (naming the node). The node is out of routing
    /// when it is gone.
    fn failed(&mut self, status: Status, migrate: bool) -> Result<(), Status> {
        if !another_target_may_help(status.code())
            || self.retries + self.migrations >= MAX_TARGET_RETRIES
        {
            return Err(self.give_up(status));
        }
        let Some(target) = self.lease.take() else {
            return Err(status);
        };
        target.node().call_failed(&status);
        if migrate {
            self.migrations += 1;
            tracing::warn!(node = %target.address(), error = %status, "target failed mid-answer; migrating the answer to another target");
        } else {
            self.retries += 1;
            tracing::warn!(node = %target.address(), error = %status, retry = self.retries, "target call failed before any output; trying another target");
        }
        Ok(())
    }
}

impl RequestTarget<'_> {
    /// The client's error for a failed call (naming the node), the node out of routing when gone.
    fn give_up(&mut self, status: Status) -> Status {
        match self.lease.take() {
            Some(target) => {
                target.node().call_failed(&status);
                target.node().named(&status)
            }
            None => status,
        }
    }
}

/// Failures of the node rather than of the request: the node went away (UNAVAILABLE, or a broken
/// connection's UNKNOWN / INTERNAL / ABORTED) or its line is full (RESOURCE_EXHAUSTED).
fn another_target_may_help(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::Unknown
            | Code::Internal
            | Code::Aborted
    )
}

/// What of an answer reached the client, and whether a migration can continue it exactly.
#[derive(Debug, Clone)]
struct Streamed {
    resume: GenerateResume,
    /// Some text reached the client.
    began: bool,
    /// Every streamed text came with its token ids (the answer's start, which the target adds
    /// itself, needs none); a target that sends none cannot be continued without repeating text.
    resumable: bool,
}

impl Default for Streamed {
    fn default() -> Self {
        Self {
            resume: GenerateResume::default(),
            began: false,
            resumable: true,
        }
    }
}

/// Adds a streamed token to what a migration resumes from.
fn record(streamed: &mut Streamed, token: &GenerateToken) {
    streamed.began = true;
    let resume = &mut streamed.resume;
    let answer = token.phase == GeneratePhase::Answer as i32;
    let answer_start = answer && !resume.answer_started;
    if token.token_ids.is_empty() && !token.text.is_empty() && !answer_start {
        streamed.resumable = false;
    }
    if answer {
        resume.answer_started = true;
        resume.answer_tokens.extend(&token.token_ids);
    } else {
        resume.thinking_tokens.extend(&token.token_ids);
    }
}

async fn generate(
    target: &TargetLease,
    request: GenerateRequest,
    deadline: Deadline,
    emit: EmitToken<'_>,
) -> Result<GenerateResult, Status> {
    let mut stream = client(target)
        .generate(request_with_deadline(request, deadline))
        .await?
        .into_inner();
    while let Some(event) = stream.next().await {
        match event?.event {
            Some(GenerateEventKind::Token(token)) => emit(token),
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
