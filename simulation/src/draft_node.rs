//! `SimulatedDraftNode`: the scot.v1 DraftService with NO model. A Draft call becomes one job on the
//! node's simulated accelerator (one prefill of the draft prompt, the requested drafts decoding as
//! sequences of the running batch); draft lengths are drawn from the workload's log-normal, seeded by
//! the problem and the draft's seed, so they do not depend on which node writes a draft.

use scot_proto::draft_event::Event;
use scot_proto::draft_service_server::DraftService;
use scot_proto::request_checks::check_draft_request;
use scot_proto::{Draft, DraftEvent, DraftProgress, DraftRequest, DraftSummary, FinishReason};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};

use crate::batch_scheduler::{JobSink, SchedulerEvent, SimulatedBatchScheduler, SimulatedJob};
use crate::call_ledger::{CallRecorder, NodeCallKind, SimulatedCallLedger};
use crate::cost_profile::SimulatedCostProfile;
use crate::synthetic_text::{filler_text, hash_str, lognormal_length, mix64, token_count};

/// Progress goes out every this many tokens of a draft (as the real node).
pub const PROGRESS_EVERY: usize = 16;
/// The model name simulated draft nodes report.
pub const SIMULATED_DRAFT_MODEL: &str = "simulated-draft";

pub struct SimulatedDraftNode {
    scheduler: SimulatedBatchScheduler,
    profile: SimulatedCostProfile,
    ledger: SimulatedCallLedger,
}

impl SimulatedDraftNode {
    /// Must be called inside a tokio runtime (it starts the node's scheduler loop).
    pub fn new(
        profile: SimulatedCostProfile,
        time_scale: f64,
        ledger: SimulatedCallLedger,
    ) -> Self {
        Self {
            scheduler: SimulatedBatchScheduler::spawn(profile.draft, time_scale),
            profile,
            ledger,
        }
    }

    pub fn scheduler(&self) -> &SimulatedBatchScheduler {
        &self.scheduler
    }
}

/// Length of draft `index` of a problem: a pure function of the problem, the seed and the index.
pub fn simulated_draft_length(
    profile: &SimulatedCostProfile,
    problem: &str,
    seed: u64,
    index: u32,
) -> usize {
    let key = mix64(hash_str(problem) ^ seed.wrapping_add(u64::from(index)));
    lognormal_length(
        key,
        profile.workload.draft_tokens_mean,
        profile.workload.draft_length_sigma,
    )
}

struct PlannedDraft {
    index: u32,
    key: u64,
    tokens: usize,
    capped: bool,
}

/// Turns scheduler events into DraftEvents on the call's stream.
struct DraftSink {
    tx: mpsc::UnboundedSender<Result<DraftEvent, Status>>,
    drafts: Vec<PlannedDraft>,
    prompt_tokens: usize,
    prefill_ms: f64,
    finished: usize,
    recorder: CallRecorder,
}

impl DraftSink {
    fn send(&self, event: Event) -> bool {
        self.tx.send(Ok(DraftEvent { event: Some(event) })).is_ok()
    }
}

impl JobSink for DraftSink {
    fn deliver(&mut self, event: SchedulerEvent) -> bool {
        let started = self.recorder.started();
        match event {
            SchedulerEvent::Prefilled { .. } => {
                self.prefill_ms = started.elapsed().as_secs_f64() * 1000.0;
                !self.tx.is_closed()
            }
            SchedulerEvent::Token { seq, generated } => match self.drafts.get(seq) {
                Some(draft) => self.send(Event::Progress(DraftProgress {
                    index: draft.index,
                    tokens: generated as u32,
                })),
                None => true,
            },
            SchedulerEvent::Finished { seq, generated } => {
                let Some(draft) = self.drafts.get(seq) else {
                    return true;
                };
                let finish = if draft.capped {
                    FinishReason::Length
                } else {
                    FinishReason::ThinkEnd
                };
                let alive = self.send(Event::Draft(Draft {
                    index: draft.index,
                    text: filler_text(draft.key, generated),
                    token_count: generated as u32,
                    finish_reason: finish as i32,
                    elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
                }));
                self.finished += 1;
                if self.finished == self.drafts.len() {
                    let alive = self.send(Event::Summary(DraftSummary {
                        model: SIMULATED_DRAFT_MODEL.to_string(),
                        prompt_tokens: self.prompt_tokens as u32,
                        prefill_ms: self.prefill_ms,
                        total_ms: started.elapsed().as_secs_f64() * 1000.0,
                    }));
                    self.recorder.finish();
                    return alive;
                }
                alive
            }
        }
    }

    fn is_cancelled(&self) -> bool {
        self.tx.is_closed()
    }
}

#[tonic::async_trait]
impl DraftService for SimulatedDraftNode {
    type DraftStream = UnboundedReceiverStream<Result<DraftEvent, Status>>;

    async fn draft(
        &self,
        request: Request<DraftRequest>,
    ) -> Result<Response<Self::DraftStream>, Status> {
        let request = request.into_inner();
        let recorder = CallRecorder::start(&self.ledger, &request.request_id, NodeCallKind::Draft);
        check_draft_request(&request)?;
        let workload = &self.profile.workload;
        let prompt_tokens = token_count(&request.problem) + workload.draft_template_tokens;
        let cap = request.max_tokens as usize;
        let extra = if request.include_answer {
            workload.answer_tokens
        } else {
            0
        };
        let drafts: Vec<PlannedDraft> = request
            .draft_indices
            .iter()
            .map(|&index| {
                let length =
                    simulated_draft_length(&self.profile, &request.problem, request.seed, index)
                        + extra;
                PlannedDraft {
                    index,
                    key: mix64(hash_str(&request.problem) ^ u64::from(index)),
                    tokens: length.min(cap),
                    capped: length >= cap,
                }
            })
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let job = SimulatedJob {
            prefill_tokens: prompt_tokens,
            sequence_tokens: drafts.iter().map(|d| d.tokens).collect(),
            report_every: PROGRESS_EVERY,
            sink: Box::new(DraftSink {
                tx,
                drafts,
                prompt_tokens,
                prefill_ms: 0.0,
                finished: 0,
                recorder,
            }),
        };
        if !self.scheduler.submit(job) {
            return Err(Status::unavailable("simulated draft node is shutting down"));
        }
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}
