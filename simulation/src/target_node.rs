//! `SimulatedTargetNode`: the scot.v1 TargetService with NO model. Select is a prefill-only job (the
//! selection prompt: problem, template, every draft) whose answer accepts a draft for a fixed share of
//! request ids (`synthetic_text::accepts`); Generate prefills problem (+ accepted draft) and decodes the
//! thinking (correction path only) and the answer as one sequence of the node's running batch,
//! streaming one GenerateToken per token as the real node does.

use std::time::Instant;

use scot_proto::generate_event::Event;
use scot_proto::request_checks::{check_generate_request, check_select_request};
use scot_proto::target_service_server::TargetService;
use scot_proto::{
    FinishReason, GenerateEvent, GeneratePhase, GenerateRequest, GenerateResult, GenerateToken,
    SelectRequest, SelectResponse,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};

use crate::batch_scheduler::{JobSink, SchedulerEvent, SimulatedBatchScheduler, SimulatedJob};
use crate::call_ledger::{CallRecorder, NodeCallKind, SimulatedCallLedger};
use crate::cost_profile::SimulatedCostProfile;
use crate::synthetic_text::{accepts, filler_text, hash_str, lognormal_length, token_count};

/// The model name simulated target nodes report.
pub const SIMULATED_TARGET_MODEL: &str = "simulated-target";
/// Fixed template tokens of the generate prompt.
const GENERATE_TEMPLATE_TOKENS: usize = 20;
/// Log-normal sigma of the target's own thinking length.
const THINKING_SIGMA: f64 = 0.3;

pub struct SimulatedTargetNode {
    scheduler: SimulatedBatchScheduler,
    profile: SimulatedCostProfile,
    ledger: SimulatedCallLedger,
}

impl SimulatedTargetNode {
    /// Must be called inside a tokio runtime (it starts the node's scheduler loop).
    pub fn new(
        profile: SimulatedCostProfile,
        time_scale: f64,
        ledger: SimulatedCallLedger,
    ) -> Self {
        Self {
            scheduler: SimulatedBatchScheduler::spawn(profile.target, time_scale),
            profile,
            ledger,
        }
    }

    pub fn scheduler(&self) -> &SimulatedBatchScheduler {
        &self.scheduler
    }
}

/// The option a simulated selection picks among `offered` drafts: a draft (1..=offered) for accepted
/// request ids, `offered + 1` ("all wrong") for the others.
pub fn simulated_choice(request_id: &str, offered: usize, acceptance: f64) -> u32 {
    if offered > 0 && accepts(request_id, acceptance) {
        1 + (hash_str(request_id) % offered as u64) as u32
    } else {
        offered as u32 + 1
    }
}

/// Selection: answers when the prefill is done.
struct SelectSink {
    reply: Option<oneshot::Sender<usize>>,
}

impl JobSink for SelectSink {
    fn deliver(&mut self, event: SchedulerEvent) -> bool {
        if let (SchedulerEvent::Prefilled { prompt_tokens }, Some(reply)) =
            (event, self.reply.take())
        {
            return reply.send(prompt_tokens).is_ok();
        }
        true
    }

    fn is_cancelled(&self) -> bool {
        self.reply.as_ref().is_none_or(|reply| reply.is_closed())
    }
}

/// Generate: streams thinking then answer tokens, then the result.
struct GenerateSink {
    tx: mpsc::UnboundedSender<Result<GenerateEvent, Status>>,
    key: u64,
    prompt_tokens: usize,
    thinking_tokens: usize,
    thinking_capped: bool,
    answer_tokens: usize,
    thinking_done: Option<Instant>,
    /// Tokens streamed so far.
    sent: usize,
    recorder: CallRecorder,
}

const WORD: &str = "step ";

impl GenerateSink {
    fn send(&self, event: Event) -> bool {
        self.tx
            .send(Ok(GenerateEvent { event: Some(event) }))
            .is_ok()
    }

    /// Streams the tokens generated since the last message, as the real node does under the
    /// request's chunking: one message per phase they fall in.
    fn token(&mut self, generated: usize) -> bool {
        let thinking_end = self.thinking_tokens;
        let (from, to) = (self.sent, generated);
        self.sent = generated;
        if from < thinking_end && to >= thinking_end {
            self.thinking_done = Some(Instant::now());
        }
        let thinking = to.min(thinking_end).saturating_sub(from);
        let answer = to - from - thinking;
        [
            (GeneratePhase::Thinking, thinking),
            (GeneratePhase::Answer, answer),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .all(|(phase, n)| {
            self.send(Event::Token(GenerateToken {
                text: WORD.repeat(n),
                phase: phase as i32,
                // No model, no token ids: a coordinator does not migrate a simulated answer.
                token_ids: Vec::new(),
            }))
        })
    }

    fn result(&mut self) -> bool {
        let started = self.recorder.started();
        let thinking_end = self.thinking_done.unwrap_or(started);
        let now = Instant::now();
        let thinking_finish = if self.thinking_tokens == 0 {
            FinishReason::Unspecified
        } else if self.thinking_capped {
            FinishReason::Length
        } else {
            FinishReason::ThinkEnd
        };
        let alive = self.send(Event::Result(GenerateResult {
            thinking: filler_text(self.key, self.thinking_tokens),
            answer: format!(
                "{} \\boxed{{42}}",
                filler_text(self.key ^ 1, self.answer_tokens.saturating_sub(1))
            ),
            prompt_tokens: self.prompt_tokens as u32,
            thinking_tokens: self.thinking_tokens as u32,
            answer_tokens: self.answer_tokens as u32,
            thinking_ms: (thinking_end - started).as_secs_f64() * 1000.0,
            answer_ms: (now - thinking_end).as_secs_f64() * 1000.0,
            thinking_finish: thinking_finish as i32,
            answer_finish: FinishReason::Eos as i32,
            model: SIMULATED_TARGET_MODEL.to_string(),
            ..Default::default()
        }));
        self.recorder.finish();
        alive
    }
}

impl JobSink for GenerateSink {
    fn deliver(&mut self, event: SchedulerEvent) -> bool {
        match event {
            SchedulerEvent::Prefilled { .. } => !self.tx.is_closed(),
            SchedulerEvent::Token { generated, .. } => self.token(generated),
            SchedulerEvent::Finished { generated, .. } => self.token(generated) && self.result(),
        }
    }

    fn is_cancelled(&self) -> bool {
        self.tx.is_closed()
    }
}

#[tonic::async_trait]
impl TargetService for SimulatedTargetNode {
    async fn select(
        &self,
        request: Request<SelectRequest>,
    ) -> Result<Response<SelectResponse>, Status> {
        let request = request.into_inner();
        let mut recorder =
            CallRecorder::start(&self.ledger, &request.request_id, NodeCallKind::Select);
        check_select_request(&request)?;
        let prompt_tokens = token_count(&request.problem)
            + self.profile.workload.select_template_tokens
            + request.drafts.iter().map(|d| token_count(d)).sum::<usize>();
        let (reply, answered) = oneshot::channel();
        let job = SimulatedJob {
            prefill_tokens: prompt_tokens,
            sequence_tokens: Vec::new(),
            report_every: 1,
            sink: Box::new(SelectSink { reply: Some(reply) }),
        };
        if !self.scheduler.submit(job) {
            return Err(Status::unavailable(
                "simulated target node is shutting down",
            ));
        }
        let prompt_tokens = answered
            .await
            .map_err(|_| Status::unavailable("simulated target node stopped"))?;
        let offered = request.drafts.len();
        let chosen = simulated_choice(
            &request.request_id,
            offered,
            self.profile.workload.acceptance,
        );
        // The chosen option takes most of the mass; the rest is spread evenly.
        let rest = 0.3 / offered as f32;
        let option_probs: Vec<f32> = (1..=offered as u32 + 1)
            .map(|option| if option == chosen { 0.7 } else { rest })
            .collect();
        let option_logprobs = option_probs.iter().map(|p| p.ln()).collect();
        recorder.finish();
        Ok(Response::new(SelectResponse {
            chosen,
            none_correct: chosen as usize > offered,
            option_probs,
            option_logprobs,
            prompt_tokens: prompt_tokens as u32,
            elapsed_ms: recorder.started().elapsed().as_secs_f64() * 1000.0,
            ..Default::default()
        }))
    }

    type GenerateStream = UnboundedReceiverStream<Result<GenerateEvent, Status>>;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let request = request.into_inner();
        let recorder =
            CallRecorder::start(&self.ledger, &request.request_id, NodeCallKind::Generate);
        check_generate_request(&request)?;
        let workload = &self.profile.workload;
        let key = hash_str(&request.problem);
        let mut prompt_tokens = token_count(&request.problem) + GENERATE_TEMPLATE_TOKENS;
        let (thinking_tokens, thinking_capped) = match &request.accepted_draft {
            Some(draft) => {
                prompt_tokens += token_count(draft);
                (0, false)
            }
            None => {
                let wanted = lognormal_length(key, workload.thinking_tokens_mean, THINKING_SIGMA);
                let cap = request.max_thinking_tokens as usize;
                (wanted.min(cap), wanted >= cap)
            }
        };
        let answer_tokens = workload
            .answer_tokens
            .clamp(1, request.max_answer_tokens as usize);
        let (tx, rx) = mpsc::unbounded_channel();
        let job = SimulatedJob {
            prefill_tokens: prompt_tokens,
            sequence_tokens: vec![thinking_tokens + answer_tokens],
            // The count bound of the request's chunking (the age bound has no meaning on the
            // virtual clock); unset: every token, as a real node.
            report_every: request
                .chunking
                .map_or(1, |c| (c.max_tokens as usize).max(1)),
            sink: Box::new(GenerateSink {
                tx,
                key,
                prompt_tokens,
                thinking_tokens,
                thinking_capped,
                answer_tokens,
                thinking_done: None,
                sent: 0,
                recorder,
            }),
        };
        if !self.scheduler.submit(job) {
            return Err(Status::unavailable(
                "simulated target node is shutting down",
            ));
        }
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_follows_acceptance() {
        assert!(simulated_choice("r", 5, 1.0) <= 5);
        assert_eq!(simulated_choice("r", 5, 0.0), 6);
        assert_eq!(simulated_choice("r", 0, 1.0), 1);
    }
}
