//! Drives Solve requests through the coordinator's gRPC API: `requests` in all, `concurrency` in
//! flight at once (closed loop: a finished request makes room for the next), spread over `connections`
//! HTTP/2 connections as independent clients would be. Records each request's wall time and outcome.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use scot_client::{status_text, SolveClient};
use scot_proto::solve_event::Event;
use scot_proto::{SolveMode, SolveOptions, SolveRequest};
use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::direct_baseline::solve_direct;
use crate::error::Result;
use crate::solve_outcome::SolveOutcome;
use crate::synthetic_text::{filler_text, token_count};

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

/// The problem text of request `i`: about `tokens` words, distinct per request.
pub fn simulated_problem(i: usize, tokens: usize) -> String {
    format!(
        "{} (simulated problem {i})",
        filler_text(i as u64 ^ 0x9E37, tokens.saturating_sub(3))
    )
}

/// Opens `connections` connections to the coordinator, one client each.
pub async fn connect(url: &str, connections: usize) -> Result<Vec<SolveClient>> {
    let mut clients = Vec::new();
    for _ in 0..connections.max(1) {
        clients.push(SolveClient::connect(url, None).await?);
    }
    Ok(clients)
}

pub async fn solve_one(
    client: &SolveClient,
    request_id: String,
    problem: String,
    n: u32,
) -> SolveOutcome {
    let mut outcome = SolveOutcome::started(request_id.clone());
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
    let (mut draft_nodes, mut streamed_tokens) = (0, 0);
    let result = client
        .solve(request, None, |event| match event {
            Event::DraftingStarted(started) => draft_nodes = started.nodes.len(),
            // Counted in words: tokens the client had not read yet arrive merged.
            Event::Token(token) => streamed_tokens += token_count(&token.text),
            _ => {}
        })
        .await;
    outcome.end = Instant::now();
    outcome.draft_nodes = draft_nodes;
    outcome.streamed_tokens = streamed_tokens;
    outcome.result = match result {
        Ok(result) => {
            if let Some(stats) = result.stats {
                outcome.path = stats.path;
                outcome.drafts = stats.drafts.len();
            }
            Ok(())
        }
        Err(status) => Err(status_text(&status)),
    };
    outcome
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum SolveFront {
    /// The coordinator's gRPC Solve, over these connections.
    Coordinator(Vec<SolveClient>),
    /// No coordinator: the driver calls the simulated nodes itself (`direct_baseline`).
    Direct {
        drafts: Vec<Channel>,
        targets: Vec<Channel>,
    },
}

/// Runs the plan to completion; outcomes in request order.
pub async fn drive_solves(front: &SolveFront, plan: &LoadPlan) -> Vec<SolveOutcome> {
    if let SolveFront::Coordinator(clients) = front {
        if clients.is_empty() {
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
                    SolveFront::Coordinator(clients) => {
                        let client = &clients[worker % clients.len()];
                        solve_one(client, request_id, problem, plan.n).await
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
