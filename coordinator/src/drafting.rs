//! The draft phase of one request: place the n drafts on the draft pool (spread or packed), merge their
//! streams onto the draft board, apply the straggler policy, and report each draft as it finishes.
//! Dropping the merged streams (early selection, client gone, deadline) cancels the drafts still
//! running on the nodes.

use std::time::Instant;

use futures::stream::{self, BoxStream, SelectAll, StreamExt};
use scot_proto::draft_service_client::DraftServiceClient;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::{DraftEvent, DraftRequest, DraftingStarted, SolveEvent};
use tonic::codec::Streaming;
use tonic::{Code, Response, Status};

use crate::draft_board::{DraftBoard, DraftPhase, DraftPhaseError};
use crate::draft_pool::{DraftAssignment, DraftPool};
use crate::node_pool::AcquireError;
use crate::straggler::StragglerPolicy;
use crate::timing::{request_with_deadline, Deadline};

/// What a draft node is asked for, minus the indices.
#[derive(Debug, Clone)]
pub struct DraftOrder {
    pub request: DraftRequest,
    pub n: u32,
    pub policy: StragglerPolicy,
    /// Each DraftInfo carries the draft's text.
    pub include_texts: bool,
}

type SlotEvent = (usize, Option<Result<DraftEvent, Status>>);

type DraftCall = Result<Response<Streaming<DraftEvent>>, Status>;

/// How many times one request's drafts are placed when every node of a placement turns out gone.
const MAX_PLACEMENTS: usize = 4;

pub async fn run_drafts(
    pool: &DraftPool,
    order: DraftOrder,
    deadline: Deadline,
    emit: &(dyn Fn(SolveEvent) + Send + Sync),
) -> Result<DraftPhase, DraftPhaseError> {
    let started = Instant::now();
    let mut failures = Vec::new();
    let all: Vec<u32> = (0..order.n).collect();
    let calls = place_and_call(pool, &order, &all, deadline, deadline, &mut failures).await?;
    emit(SolveEvent {
        event: Some(scot_proto::solve_event::Event::DraftingStarted(
            DraftingStarted {
                n: order.n,
                nodes: calls.iter().map(|(a, _)| a.node().id.clone()).collect(),
            },
        )),
    });

    let mut board = DraftBoard::new(order.n, order.include_texts, failures);
    let mut streams: SelectAll<BoxStream<'static, SlotEvent>> = SelectAll::new();
    start_streams(&mut board, &mut streams, calls)?;
    let mut placements = 1;
    let mut cutoff = None;
    while let Some((slot, item)) = streams.next().await {
        board.on_item(slot, item, emit)?;
        let lost = board.take_lost();
        if !lost.is_empty() && placements < MAX_PLACEMENTS {
            placements += 1;
            replace(pool, &order, &lost, deadline, &mut board, &mut streams).await?;
        }
        cutoff = board.cutoff(&order.policy);
        if let Some(cutoff) = &cutoff {
            tracing::info!(reason = %cutoff.describe(), "selecting early");
            break;
        }
    }
    drop(streams); // cancels whatever is still running on the nodes
    board.finish(cutoff, started.elapsed())
}

/// The answered calls' drafts are running on the board, their streams merged; a refused call is the
/// client's error, a failed one a lost node.
fn start_streams(
    board: &mut DraftBoard,
    streams: &mut SelectAll<BoxStream<'static, SlotEvent>>,
    calls: Vec<(DraftAssignment, DraftCall)>,
) -> Result<(), DraftPhaseError> {
    for (assignment, call) in calls {
        let node = assignment.node().clone();
        match call {
            Ok(response) => {
                let slot = board.running(node, assignment.lease, &assignment.indices);
                let events = response
                    .into_inner()
                    .map(move |item| (slot, Some(item)))
                    .chain(stream::once(async move { (slot, None) }));
                streams.push(events.boxed());
            }
            Err(status) => board.call_failed(&node, status)?,
        }
    }
    Ok(())
}

/// Drafts lost with their node mid-stream are placed again on the nodes left, with the same indices
/// (so the same seeds), where there is room now; without room or nodes, selection goes on with the
/// drafts that finish.
async fn replace(
    pool: &DraftPool,
    order: &DraftOrder,
    lost: &[u32],
    deadline: Deadline,
    board: &mut DraftBoard,
    streams: &mut SelectAll<BoxStream<'static, SlotEvent>>,
) -> Result<(), DraftPhaseError> {
    let mut failures = Vec::new();
    // No wait for room: the drafts still running should not stall behind a full pool. The calls
    // themselves get the request's deadline.
    let now = Some(Instant::now());
    let placed = place_and_call(pool, order, lost, now, deadline, &mut failures).await;
    board.add_failures(failures);
    match placed {
        Ok(calls) => {
            tracing::info!(drafts = ?lost, "drafts lost with their node: placing them again");
            board.count_replaced(lost.len());
            start_streams(board, streams, calls)
        }
        Err(DraftPhaseError::Rejected(status)) => Err(DraftPhaseError::Rejected(status)),
        Err(DraftPhaseError::Unavailable(reason) | DraftPhaseError::Busy(reason)) => {
            tracing::warn!(drafts = ?lost, %reason, "lost drafts not placed again");
            Ok(())
        }
        Err(DraftPhaseError::TooMany(status)) => {
            tracing::warn!(drafts = ?lost, error = %status.message(), "lost drafts not placed again");
            Ok(())
        }
    }
}

/// Places the draft `indices` (waiting for room until `room_by`) and calls each node with its share
/// (the calls carry `deadline`); when every node of a placement turns out gone (UNAVAILABLE) they are
/// out of routing now, so the drafts are placed again on the others (none left: no draft node
/// reachable, naming them).
async fn place_and_call(
    pool: &DraftPool,
    order: &DraftOrder,
    indices: &[u32],
    room_by: Deadline,
    deadline: Deadline,
    failures: &mut Vec<String>,
) -> Result<Vec<(DraftAssignment, DraftCall)>, DraftPhaseError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let assignments = place(pool, indices, room_by).await?;
        let calls = assignments.iter().map(|assignment| {
            let mut client = DraftServiceClient::new(assignment.node().channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            let mut request = order.request.clone();
            request.draft_indices = assignment.indices.clone();
            let request = request_with_deadline(request, deadline);
            async move { client.draft(request).await }
        });
        let responses = futures::future::join_all(calls).await;
        let all_gone = responses
            .iter()
            .all(|r| matches!(r, Err(status) if status.code() == Code::Unavailable));
        if all_gone && attempt < MAX_PLACEMENTS {
            for (assignment, response) in assignments.iter().zip(&responses) {
                if let Err(status) = response {
                    let node = assignment.node();
                    tracing::warn!(node = %node.address, error = %status, "draft call failed; placing the drafts again");
                    node.call_failed(status);
                    failures.push(format!("{}: {}", node.id, status.message()));
                }
            }
            continue;
        }
        return Ok(assignments.into_iter().zip(responses).collect());
    }
}

/// Reserves room for the drafts on the pool: each node with its indices and its lease.
async fn place(
    pool: &DraftPool,
    indices: &[u32],
    deadline: Deadline,
) -> Result<Vec<DraftAssignment>, DraftPhaseError> {
    pool.reserve(indices, deadline).await.map_err(|error| match error {
        AcquireError::NoNodes(reason) => {
            DraftPhaseError::Unavailable(format!("no draft node reachable: {reason}"))
        }
        AcquireError::Timeout { waited } => DraftPhaseError::Busy(format!(
            "every draft node is at its in-flight limit ({} drafts per node slot, --draft-node-capacity); waited {} ms for room for {} drafts (--queue-timeout-ms)",
            pool.settings().capacity_per_slot,
            waited.as_millis(),
            indices.len()
        )),
        AcquireError::TooLarge { capacity } => DraftPhaseError::TooMany(Status::resource_exhausted(format!(
            "n = {} drafts exceed what the draft pool may have in flight ({capacity} drafts over its nodes in routing, --draft-node-capacity per node slot); ask for fewer drafts",
            indices.len()
        ))),
    })
}
