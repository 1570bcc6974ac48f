//! Drives Solve requests through the coordinator's gRPC API: `requests` in all, `concurrency` in
//! flight at once (closed loop: a finished request makes room for the next), spread over `connections`
//! HTTP/2 connections as independent clients would be. Records each request's wall time and outcome.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use scot_proto::coordinator_service_client::CoordinatorServiceClient;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::solve_event::Event;
use scot_proto::{SolveMode, SolveOptions, SolveRequest};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

use crate::direct_baseline::solve_direct;
use crate::error::Result;
use crate::synthetic_text::filler_text;

#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub requests: usize,
    pub concurrency: usize,
    pub connections: usize,
    /// Drafts per request.
    pub n: u32,
    /// Request ids are `{id_prefix}-{i}`.
    pub id_prefix: String,
    pub problem_tokens: usize,
}

/// One request as the client saw it.
#[derive(Debug, Clone)]
pub struct SolveOutcome {
    pub request_id: String,
    pub start: Instant,
    pub end: Instant,
    /// Err(message) when the call or its stream failed or ended without a result.
    pub result: std::result::Result<(), String>,
    /// `AnswerPath` as i32 (0 when no result).
    pub path: i32,
    /// Drafts in the result's stats.
    pub drafts: usize,
    /// Draft nodes the request's drafts were spread over (DraftingStarted).
    pub draft_nodes: usize,
    /// Target tokens streamed to the client.
    pub streamed_tokens: usize,
}

impl SolveOutcome {
    /// A request starting now, with no result yet.
    pub fn started(request_id: String) -> Self {
        let start = Instant::now();
        Self {
            request_id,
            start,
            end: start,
            result: Err("no result".to_string()),
            path: 0,
            drafts: 0,
            draft_nodes: 0,
            streamed_tokens: 0,
        }
    }
}

/// The problem text of request `i`: about `tokens` words, distinct per request.
pub fn simulated_problem(i: usize, tokens: usize) -> String {
    format!(
        "{} (simulated problem {i})",
        filler_text(i as u64 ^ 0x9E37, tokens.saturating_sub(3))
    )
}

/// Connects `connections` channels to the coordinator.
pub async fn connect(url: &str, connections: usize) -> Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for _ in 0..connections.max(1) {
        channels.push(Endpoint::from_shared(url.to_string())?.connect().await?);
    }
    Ok(channels)
}

pub async fn solve_one(
    channel: Channel,
    request_id: String,
    problem: String,
    n: u32,
) -> SolveOutcome {
    let mut outcome = SolveOutcome::started(request_id.clone());
    let mut client =
        CoordinatorServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let request = SolveRequest {
        request_id,
        problem,
        options: Some(SolveOptions {
            mode: SolveMode::Scot as i32,
            n: Some(n),
            // The simulated target models the paper's read-out (its acceptance is the target's
            // pick); simulated drafts carry no answers to vote on.
            selection_policy: scot_selection::SelectionPolicy::Paper.name().to_string(),
            ..Default::default()
        }),
    };
    match client.solve(request).await {
        Err(status) => outcome.result = Err(format!("{:?}: {}", status.code(), status.message())),
        Ok(response) => {
            let mut stream = response.into_inner();
            while let Some(item) = stream.next().await {
                match item {
                    Err(status) => {
                        outcome.result = Err(format!("{:?}: {}", status.code(), status.message()));
                        break;
                    }
                    Ok(event) => match event.event {
                        Some(Event::DraftingStarted(started)) => {
                            outcome.draft_nodes = started.nodes.len()
                        }
                        Some(Event::Token(_)) => outcome.streamed_tokens += 1,
                        Some(Event::Result(result)) => {
                            if let Some(stats) = result.stats {
                                outcome.path = stats.path;
                                outcome.drafts = stats.drafts.len();
                            }
                            outcome.result = Ok(());
                        }
                        _ => {}
                    },
                }
            }
        }
    }
    outcome.end = Instant::now();
    outcome
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum SolveFront {
    /// The coordinator's gRPC Solve, over these connections.
    Coordinator(Vec<Channel>),
    /// No coordinator: the driver calls the simulated nodes itself (`direct_baseline`).
    Direct {
        drafts: Vec<Channel>,
        targets: Vec<Channel>,
    },
}

/// Runs the plan to completion; outcomes in request order.
pub async fn drive_solves(front: &SolveFront, plan: &LoadPlan) -> Vec<SolveOutcome> {
    if let SolveFront::Coordinator(channels) = front {
        if channels.is_empty() {
            return Vec::new();
        }
    }
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(plan.requests)));
    let mut workers = Vec::new();
    for worker in 0..plan.concurrency.max(1) {
        let front = front.clone();
        let next = next.clone();
        let outcomes = outcomes.clone();
        let plan = plan.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.requests {
                    break;
                }
                let request_id = format!("{}-{i}", plan.id_prefix);
                let problem = simulated_problem(i, plan.problem_tokens);
                let outcome = match &front {
                    SolveFront::Coordinator(channels) => {
                        let channel = channels[worker % channels.len()].clone();
                        solve_one(channel, request_id, problem, plan.n).await
                    }
                    SolveFront::Direct { drafts, targets } => {
                        solve_direct(drafts, targets, i, request_id, problem, plan.n).await
                    }
                };
                outcomes.lock().await.push((i, outcome));
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let mut outcomes = std::mem::take(&mut *outcomes.lock().await);
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, o)| o).collect()
}
