//! The draft phase of one request: place the n drafts on the draft pool (spread or packed), merge their
//! streams, apply the straggler policy, and report each draft as it finishes. Dropping the merged
//! streams (early selection, client gone, deadline) cancels the drafts still running on the nodes.

use std::sync::Arc;

use futures::stream::{self, BoxStream, SelectAll, StreamExt};
use scot_proto::draft_event::Event as DraftEventKind;
use scot_proto::draft_service_client::DraftServiceClient;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::{DraftEvent, DraftInfo, DraftRequest, DraftingStarted, FinishReason, SolveEvent};
use tonic::{Code, Status};

use crate::draft_pool::DraftPool;
use crate::node_pool::{AcquireError, NodeLease, PoolNode};
use crate::selection_policy::CollectedDraft;
use crate::straggler::{Cutoff, StragglerPolicy};
use crate::timing::{request_with_deadline, Deadline};
use scot_selection::draft_answer;

/// What the caller gets from the draft phase.
#[derive(Debug, Default)]
pub struct DraftPhase {
    /// Finished drafts (sorted by index).
    pub drafts: Vec<CollectedDraft>,
    /// Every draft of the request, finished or not (sorted by index).
    pub infos: Vec<DraftInfo>,
    pub model: String,
    pub cutoff: Option<Cutoff>,
    /// Nodes that failed during the phase and what happened.
    pub failures: Vec<String>,
}

#[derive(Debug)]
pub enum DraftPhaseError {
    /// No draft could be written: the target answers alone, with this reason.
    Unavailable(String),
    /// A node refused the request itself (bad template, problem too long): the client's error.
    Rejected(Status),
    /// The pool had no room for the drafts in time (RESOURCE_EXHAUSTED): the client's error too.
    Busy(Status),
}

/// What a draft node is asked for, minus the indices.
#[derive(Debug, Clone)]
pub struct DraftOrder {
    pub request: DraftRequest,
    pub n: u32,
    pub policy: StragglerPolicy,
    /// Each DraftInfo carries the draft's text.
    pub include_texts: bool,
}

#[derive(Debug, Clone)]
enum DraftState {
    Running { tokens: u32, slot: usize },
    Done,
    Lost,
}

type SlotEvent = (usize, Option<Result<DraftEvent, Status>>);

/// A node and the draft indices it writes for the request.
type NodePlan = (Arc<PoolNode>, Vec<u32>);

/// How many times one request's drafts are placed when every node of a placement turns out gone.
const MAX_PLACEMENTS: usize = 4;

/// Places the drafts on the pool: each node with its indices, and the leases (one per node; a slot's
/// lease goes, and its room to the next request, as soon as the slot is lost).
async fn place(
    pool: &DraftPool,
    order: &DraftOrder,
    deadline: Deadline,
) -> Result<(Vec<NodePlan>, Vec<Option<NodeLease>>), DraftPhaseError> {
    let assignments = match pool.reserve(order.n, deadline).await {
        Ok(assignments) => assignments,
        Err(AcquireError::NoNodes(reason)) => {
            return Err(DraftPhaseError::Unavailable(format!(
                "no draft node reachable: {reason}"
            )))
        }
        Err(AcquireError::Timeout { waited }) => {
            return Err(DraftPhaseError::Busy(Status::resource_exhausted(format!(
                "every draft node is at its in-flight limit ({} drafts per node slot, --draft-node-capacity); waited {} ms for room for {} drafts (--queue-timeout-ms); retry later",
                pool.settings().capacity_per_slot,
                waited.as_millis(),
                order.n
            ))))
        }
        Err(AcquireError::TooLarge { capacity }) => {
            return Err(DraftPhaseError::Busy(Status::resource_exhausted(format!(
                "n = {} drafts exceed what the draft pool may have in flight ({capacity} drafts over its nodes in routing, --draft-node-capacity per node slot); ask for fewer drafts",
                order.n
            ))))
        }
    };
    Ok(assignments
        .into_iter()
        .map(|a| ((a.node().clone(), a.indices), Some(a.lease)))
        .unzip())
}

/// Errors that are the request's fault, not the node's: they go back to the client.
pub fn is_rejection(status: &Status) -> bool {
    matches!(status.code(), Code::InvalidArgument | Code::OutOfRange)
}

pub async fn run_drafts(
    pool: &DraftPool,
    order: DraftOrder,
    deadline: Deadline,
    emit: &(dyn Fn(SolveEvent) + Send + Sync),
) -> Result<DraftPhase, DraftPhaseError> {
    let mut phase = DraftPhase::default();
    let mut attempt = 0;
    let (plan, mut leases, responses) = loop {
        attempt += 1;
        let (plan, leases) = place(pool, &order, deadline).await?;
        let calls = plan.iter().map(|(node, indices)| {
            let mut client = DraftServiceClient::new(node.channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            let mut request = order.request.clone();
            request.draft_indices = indices.clone();
            let request = request_with_deadline(request, deadline);
            async move { client.draft(request).await }
        });
        let responses = futures::future::join_all(calls).await;
        // Every node of the placement is gone (UNAVAILABLE): they are out of routing now, so place the
        // drafts again on the others (none left: the target answers alone, naming them).
        let all_gone = responses
            .iter()
            .all(|r| matches!(r, Err(status) if status.code() == Code::Unavailable));
        if all_gone && attempt < MAX_PLACEMENTS {
            for ((node, _), response) in plan.iter().zip(&responses) {
                if let Err(status) = response {
                    tracing::warn!(node = %node.address, error = %status, "draft call failed; placing the drafts again");
                    mark_down_if_unavailable(node, status);
                    phase
                        .failures
                        .push(format!("{}: {}", node.address, status.message()));
                }
            }
            continue;
        }
        break (plan, leases, responses);
    };
    emit(SolveEvent {
        event: Some(scot_proto::solve_event::Event::DraftingStarted(
            DraftingStarted {
                n: order.n,
                nodes: plan.iter().map(|(node, _)| node.address.clone()).collect(),
            },
        )),
    });

    let mut states: Vec<DraftState> = vec![DraftState::Lost; order.n as usize];
    let mut streams: SelectAll<BoxStream<'static, SlotEvent>> = SelectAll::new();
    for (slot, ((node, indices), response)) in plan.iter().zip(responses).enumerate() {
        match response {
            Ok(response) => {
                for &i in indices {
                    if let Some(state) = states.get_mut(i as usize) {
                        *state = DraftState::Running { tokens: 0, slot };
                    }
                }
                let events = response
                    .into_inner()
                    .map(move |item| (slot, Some(item)))
                    .chain(stream::once(async move { (slot, None) }));
                streams.push(events.boxed());
            }
            Err(status) if is_rejection(&status) => {
                return Err(DraftPhaseError::Rejected(node_status(
                    &node.address,
                    status,
                )))
            }
            Err(status) => {
                tracing::warn!(node = %node.address, error = %status, "draft call failed");
                mark_down_if_unavailable(node, &status);
                phase
                    .failures
                    .push(format!("{}: {}", node.address, status.message()));
                if let Some(lease) = leases.get_mut(slot) {
                    lease.take();
                }
            }
        }
    }

    while let Some((slot, item)) = streams.next().await {
        let address = plan
            .get(slot)
            .map(|(node, _)| node.address.clone())
            .unwrap_or_default();
        match item {
            Some(Ok(DraftEvent { event: Some(event) })) => match event {
                DraftEventKind::Progress(progress) => {
                    if let Some(DraftState::Running { tokens, .. }) =
                        states.get_mut(progress.index as usize)
                    {
                        *tokens = progress.tokens;
                    }
                }
                DraftEventKind::Draft(draft) => {
                    let Some(state) = states.get_mut(draft.index as usize) else {
                        tracing::warn!(node = %address, index = draft.index, "draft node sent an index it was not asked for");
                        continue;
                    };
                    if !matches!(state, DraftState::Running { .. }) {
                        continue;
                    }
                    *state = DraftState::Done;
                    if let Some(Some(lease)) = leases.get_mut(slot) {
                        lease.finish_one();
                    }
                    let finish = FinishReason::try_from(draft.finish_reason).unwrap_or_default();
                    let ended_on_its_own =
                        matches!(finish, FinishReason::ThinkEnd | FinishReason::Eos);
                    let answer = draft_answer(&draft.text, ended_on_its_own);
                    let info = DraftInfo {
                        index: draft.index,
                        token_count: draft.token_count,
                        finish_reason: finish as i32,
                        elapsed_ms: draft.elapsed_ms,
                        offered: false,
                        node: address.clone(),
                        answer: answer.clone().unwrap_or_default(),
                        text: if order.include_texts {
                            draft.text.clone()
                        } else {
                            String::new()
                        },
                    };
                    emit(SolveEvent {
                        event: Some(scot_proto::solve_event::Event::DraftFinished(info.clone())),
                    });
                    phase.infos.push(info);
                    phase.drafts.push(CollectedDraft {
                        index: draft.index,
                        text: draft.text,
                        token_count: draft.token_count,
                        finish,
                        elapsed_ms: draft.elapsed_ms,
                        node: address.clone(),
                        answer,
                    });
                }
                DraftEventKind::Summary(summary) => {
                    if phase.model.is_empty() {
                        phase.model = summary.model;
                    }
                }
            },
            Some(Ok(DraftEvent { event: None })) => {}
            Some(Err(status)) => {
                if is_rejection(&status) {
                    return Err(DraftPhaseError::Rejected(node_status(&address, status)));
                }
                tracing::warn!(node = %address, error = %status, "draft stream failed");
                if let Some((node, _)) = plan.get(slot) {
                    mark_down_if_unavailable(node, &status);
                }
                phase
                    .failures
                    .push(format!("{address}: {}", status.message()));
                lose_slot(&mut states, slot);
                if let Some(lease) = leases.get_mut(slot) {
                    lease.take();
                }
            }
            None => {
                lose_slot(&mut states, slot);
                if let Some(lease) = leases.get_mut(slot) {
                    lease.take();
                }
            }
        }
        let finished: Vec<u32> = phase.drafts.iter().map(|d| d.token_count).collect();
        let unfinished: Vec<u32> = states
            .iter()
            .filter_map(|s| match s {
                DraftState::Running { tokens, .. } => Some(*tokens),
                _ => None,
            })
            .collect();
        if unfinished.is_empty() {
            // Every draft is done; keep reading only to get the summaries.
            continue;
        }
        if let Some(cutoff) = order.policy.cutoff(&finished, &unfinished) {
            tracing::info!(reason = %cutoff.describe(), "selecting early");
            phase.cutoff = Some(cutoff);
            break;
        }
    }
    drop(streams); // cancels whatever is still running on the nodes

    for (index, state) in states.iter().enumerate() {
        if let DraftState::Running { tokens, slot } = state {
            phase.infos.push(DraftInfo {
                index: index as u32,
                token_count: *tokens,
                finish_reason: FinishReason::Cancelled as i32,
                elapsed_ms: 0.0,
                offered: false,
                node: plan
                    .get(*slot)
                    .map(|(node, _)| node.address.clone())
                    .unwrap_or_default(),
                ..Default::default()
            });
        }
    }
    phase.infos.sort_by_key(|info| info.index);
    phase.drafts.sort_by_key(|d| d.index);
    if phase.drafts.is_empty() {
        return Err(DraftPhaseError::Unavailable(format!(
            "no draft came back: {}",
            if phase.failures.is_empty() {
                "the draft nodes ended their streams early".to_string()
            } else {
                phase.failures.join("; ")
            }
        )));
    }
    Ok(phase)
}

/// Marks the drafts still running on a slot whose stream ended as lost.
fn lose_slot(states: &mut [DraftState], slot: usize) {
    for state in states.iter_mut() {
        if matches!(state, DraftState::Running { slot: s, .. } if *s == slot) {
            *state = DraftState::Lost;
        }
    }
}

/// UNAVAILABLE from a node (connection refused, shutting down): out of routing until it is healthy.
fn mark_down_if_unavailable(node: &PoolNode, status: &Status) {
    if status.code() == Code::Unavailable {
        node.mark_down(status.message());
    }
}

fn node_status(address: &str, status: Status) -> Status {
    Status::new(
        status.code(),
        format!("draft node {address}: {}", status.message()),
    )
}
