//! The board of one request's drafts while they are written: each draft's state (running on a node
//! slot, done, lost), each slot's lease, and one record per draft that the rest of the request reads
//! (what the client sees, and the full text once finished).

use std::sync::Arc;
use std::time::Duration;

use scot_proto::draft_event::Event as DraftEventKind;
use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::{DraftEvent, DraftInfo, FinishReason, SolveEvent};
use scot_selection::draft_answer;
use tonic::{Code, Status};

use crate::node_pool::{NodeLease, PoolNode};
use crate::straggler::{Cutoff, StragglerPolicy};

/// One draft of the request.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftRecord {
    /// What the client sees (the text in it only when the request asked for texts).
    pub info: DraftInfo,
    /// The full text, once the draft finished; `None` for a draft cut off while running.
    pub text: Option<String>,
}

impl DraftRecord {
    pub fn finish(&self) -> FinishReason {
        FinishReason::try_from(self.info.finish_reason).unwrap_or_default()
    }

    /// The answer it votes with (`scot_selection::draft_answer`), when one was found.
    pub fn answer(&self) -> Option<&str> {
        Some(self.info.answer.as_str()).filter(|a| !a.is_empty())
    }

    pub fn is_finished(&self) -> bool {
        self.text.is_some()
    }
}

/// What the draft phase hands on.
#[derive(Debug, Default)]
pub struct DraftPhase {
    /// Every draft that came back or was cut off while running, sorted by index.
    pub drafts: Vec<DraftRecord>,
    pub model: String,
    pub cutoff: Option<Cutoff>,
    /// Nodes that failed during the phase and what happened.
    pub failures: Vec<String>,
    /// From placing the drafts to the last one read.
    pub elapsed: Duration,
    /// Drafts lost with their node mid-stream and placed again on another.
    pub replaced: u32,
}

#[derive(Debug)]
pub enum DraftPhaseError {
    /// No draft could be written: the target answers alone, with this reason.
    Unavailable(String),
    /// A node refused the request itself (bad template, problem too long): the client's error.
    Rejected(Status),
    /// The pool had no room for the drafts in time: why. A SCoT request already holds its target,
    /// so the target answers alone; a draft-only one is refused (RESOURCE_EXHAUSTED).
    Busy(String),
    /// n is more than the pool may hold at all now (RESOURCE_EXHAUSTED): the client's error.
    TooMany(Status),
}

#[derive(Debug, Clone)]
enum DraftState {
    Running { tokens: u32, slot: usize },
    Done,
    Lost,
}

/// A node writing some of the drafts, and its lease (dropped, and its room given to the next request,
/// as soon as the slot is lost).
struct Slot {
    node: Arc<PoolNode>,
    lease: Option<NodeLease>,
}

pub struct DraftBoard {
    slots: Vec<Slot>,
    states: Vec<DraftState>,
    finished: Vec<DraftRecord>,
    model: String,
    failures: Vec<String>,
    include_texts: bool,
    /// Drafts lost mid-stream since the last `take_lost`.
    lost: Vec<u32>,
    replaced: u32,
}

impl DraftBoard {
    /// A board for `n` drafts; `failures` are the nodes already given up on while placing.
    pub fn new(n: u32, include_texts: bool, failures: Vec<String>) -> Self {
        Self {
            slots: Vec::new(),
            states: vec![DraftState::Lost; n as usize],
            finished: Vec::new(),
            model: String::new(),
            failures,
            include_texts,
            lost: Vec::new(),
            replaced: 0,
        }
    }

    /// The drafts lost with their node since the last call (to place again).
    pub fn take_lost(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.lost)
    }

    /// Nodes given up on while placing drafts again.
    pub fn add_failures(&mut self, failures: Vec<String>) {
        self.failures.extend(failures);
    }

    /// Drafts placed again after their node was lost.
    pub fn count_replaced(&mut self, drafts: usize) {
        self.replaced += drafts as u32;
    }

    /// A node slot whose call was answered: its drafts are running. Returns the slot's number.
    pub fn running(&mut self, node: Arc<PoolNode>, lease: NodeLease, indices: &[u32]) -> usize {
        let slot = self.slots.len();
        self.slots.push(Slot {
            node,
            lease: Some(lease),
        });
        for &i in indices {
            if let Some(state) = self.states.get_mut(i as usize) {
                *state = DraftState::Running { tokens: 0, slot };
            }
        }
        slot
    }

    /// A node whose call failed before any draft ran: a rejection of the request is the client's
    /// error; anything else is noted and the node's drafts stay lost.
    pub fn call_failed(&mut self, node: &PoolNode, status: Status) -> Result<(), DraftPhaseError> {
        if is_rejection(&status) {
            return Err(DraftPhaseError::Rejected(node.named(&status)));
        }
        tracing::warn!(node = %node.address, error = %status, "draft call failed");
        self.note_failure(node, &status);
        Ok(())
    }

    /// One item of a slot's stream (`None`: the stream ended).
    pub fn on_item(
        &mut self,
        slot: usize,
        item: Option<Result<DraftEvent, Status>>,
        emit: &(dyn Fn(SolveEvent) + Send + Sync),
    ) -> Result<(), DraftPhaseError> {
        match item {
            Some(Ok(DraftEvent { event: Some(event) })) => self.on_event(slot, event, emit),
            Some(Ok(DraftEvent { event: None })) => {}
            Some(Err(status)) => {
                // A slot already lost (its lease gone) has been noted once.
                let open = self.slots.get(slot).filter(|s| s.lease.is_some());
                if let Some(node) = open.map(|s| s.node.clone()) {
                    if is_rejection(&status) {
                        return Err(DraftPhaseError::Rejected(node.named(&status)));
                    }
                    tracing::warn!(node = %node.address, error = %status, "draft stream failed");
                    self.note_failure(&node, &status);
                }
                self.lose_slot(slot);
            }
            None => self.lose_slot(slot),
        }
        Ok(())
    }

    fn on_event(
        &mut self,
        slot: usize,
        event: DraftEventKind,
        emit: &(dyn Fn(SolveEvent) + Send + Sync),
    ) {
        match event {
            DraftEventKind::Progress(progress) => {
                if let Some(DraftState::Running { tokens, .. }) =
                    self.states.get_mut(progress.index as usize)
                {
                    *tokens = progress.tokens;
                }
            }
            DraftEventKind::Draft(draft) => {
                let node = self.node_id(slot);
                let Some(state) = self.states.get_mut(draft.index as usize) else {
                    tracing::warn!(node = %node, index = draft.index, "draft node sent an index it was not asked for");
                    return;
                };
                if !matches!(state, DraftState::Running { .. }) {
                    return;
                }
                *state = DraftState::Done;
                if let Some(Some(lease)) = self.slots.get_mut(slot).map(|s| s.lease.as_mut()) {
                    lease.finish_one();
                }
                let finish = FinishReason::try_from(draft.finish_reason).unwrap_or_default();
                let ended_on_its_own = finish.ended_on_its_own();
                let info = DraftInfo {
                    index: draft.index,
                    token_count: draft.token_count,
                    finish_reason: finish as i32,
                    elapsed_ms: draft.elapsed_ms,
                    offered: false,
                    node,
                    answer: draft_answer(&draft.text, ended_on_its_own).unwrap_or_default(),
                    text: if self.include_texts {
                        draft.text.clone()
                    } else {
                        String::new()
                    },
                };
                emit(SolveEvent {
                    event: Some(SolveEventKind::DraftFinished(info.clone())),
                });
                self.finished.push(DraftRecord {
                    info,
                    text: Some(draft.text),
                });
            }
            DraftEventKind::Summary(summary) => {
                if self.model.is_empty() {
                    self.model = summary.model;
                }
            }
            // Only render-only calls get a prompt back; the coordinator never makes one.
            DraftEventKind::Prompt(_) => {
                tracing::warn!(node = %self.node_id(slot), "draft node sent a rendered prompt to a drafting call");
            }
        }
    }

    /// Whether to stop waiting for the drafts still running (`policy`'s straggler rules).
    pub fn cutoff(&self, policy: &StragglerPolicy) -> Option<Cutoff> {
        let finished: Vec<u32> = self.finished.iter().map(|d| d.info.token_count).collect();
        let unfinished: Vec<u32> = self
            .states
            .iter()
            .filter_map(|s| match s {
                DraftState::Running { tokens, .. } => Some(*tokens),
                _ => None,
            })
            .collect();
        policy.cutoff(&finished, &unfinished)
    }

    /// The phase's result after `elapsed`: the drafts still running are recorded as cancelled.
    pub fn finish(
        mut self,
        cutoff: Option<Cutoff>,
        elapsed: Duration,
    ) -> Result<DraftPhase, DraftPhaseError> {
        if self.finished.is_empty() {
            return Err(DraftPhaseError::Unavailable(format!(
                "no draft came back: {}",
                if self.failures.is_empty() {
                    "the draft nodes ended their streams early".to_string()
                } else {
                    self.failures.join("; ")
                }
            )));
        }
        let mut drafts = std::mem::take(&mut self.finished);
        for (index, state) in self.states.iter().enumerate() {
            if let DraftState::Running { tokens, slot } = state {
                drafts.push(DraftRecord {
                    info: DraftInfo {
                        index: index as u32,
                        token_count: *tokens,
                        finish_reason: FinishReason::Cancelled as i32,
                        node: self.node_id(*slot),
                        ..Default::default()
                    },
                    text: None,
                });
            }
        }
        drafts.sort_by_key(|d| d.info.index);
        Ok(DraftPhase {
            drafts,
            model: self.model,
            cutoff,
            failures: self.failures,
            elapsed,
            replaced: self.replaced,
        })
    }

    /// The id of the node on `slot` (what clients see of it).
    fn node_id(&self, slot: usize) -> String {
        self.slots
            .get(slot)
            .map(|s| s.node.id.clone())
            .unwrap_or_default()
    }

    /// The drafts still running on a slot whose stream ended are lost, and its lease goes.
    fn lose_slot(&mut self, slot: usize) {
        for (index, state) in self.states.iter_mut().enumerate() {
            if matches!(state, DraftState::Running { slot: s, .. } if *s == slot) {
                *state = DraftState::Lost;
                self.lost.push(index as u32);
            }
        }
        if let Some(s) = self.slots.get_mut(slot) {
            s.lease.take();
        }
    }

    fn note_failure(&mut self, node: &PoolNode, status: &Status) {
        node.call_failed(status);
        self.failures
            .push(format!("{}: {}", node.id, status.message()));
    }
}

/// Errors that are the request's fault, not the node's: they go back to the client.
pub fn is_rejection(status: &Status) -> bool {
    matches!(status.code(), Code::InvalidArgument | Code::OutOfRange)
}
