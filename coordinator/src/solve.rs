//! One Solve request end to end: drafts -> selection -> answer (or the correction / fallback paths),
//! emitting phase events and collecting the request's stats.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use scot_proto::generate_event::Event as GenerateEventKind;
use scot_proto::limits::MAX_MESSAGE_BYTES;
use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::target_service_client::TargetServiceClient;
use scot_proto::{
    AnswerPath, DraftRequest, FinishReason, GenerateRequest, GenerateResult, SelectRequest,
    SelectionResult, SolveEvent, SolveResult, SolveStats,
};
use tonic::transport::Channel;
use tonic::Status;

use crate::draft_pool::DraftPool;
use crate::drafting::{run_drafts, DraftOrder, DraftPhase, DraftPhaseError};
use crate::selection_policy::offered_drafts;
use crate::straggler::StragglerPolicy;
use crate::target_pool::{TargetLease, TargetPool};
use crate::timing::{millis, request_with_deadline, Deadline};
use crate::validation::{Mode, SolveSettings};
use scot_selection::{decide, needs_target, AnswerTally, Decision, TargetVerdict};

pub struct SolveJob {
    pub request_id: String,
    pub problem: String,
    pub settings: SolveSettings,
    pub deadline: Deadline,
}

/// Reasoning and answer text of a finished request.
struct Outcome {
    reasoning: String,
    answer: String,
}

pub struct Solver {
    pool: Arc<DraftPool>,
    targets: Arc<TargetPool>,
}

type Emit<'a> = &'a (dyn Fn(SolveEvent) + Send + Sync);

impl Solver {
    pub fn new(pool: Arc<DraftPool>, targets: Arc<TargetPool>) -> Self {
        Self { pool, targets }
    }

    /// The draft pool requests run on (for readiness probes).
    pub fn draft_pool(&self) -> Arc<DraftPool> {
        self.pool.clone()
    }

    /// The target pool requests run on (for readiness probes).
    pub fn target_pool(&self) -> Arc<TargetPool> {
        self.targets.clone()
    }

    pub async fn solve(&self, job: &SolveJob, emit: Emit<'_>) -> Result<SolveResult, Status> {
        let started = Instant::now();
        let mut stats = SolveStats::default();
        // One target per request: selection and answer must see the same model.
        let target = &self.targets.pick(job.deadline).await?;
        let outcome = match job.settings.mode {
            Mode::TargetOnly => {
                self.target_alone(job, target, emit, &mut stats, AnswerPath::TargetOnly)
                    .await?
            }
            Mode::DraftOnly => self.draft_only(job, target, emit, &mut stats).await?,
            Mode::Scot => self.speculative(job, target, emit, &mut stats).await?,
        };
        stats.total_ms = millis(started.elapsed());
        Ok(SolveResult {
            request_id: job.request_id.clone(),
            reasoning: outcome.reasoning,
            answer: outcome.answer,
            stats: Some(stats),
        })
    }

    /// SCoT: drafts, selection, then the answer after the chosen draft or the target's own thinking.
    async fn speculative(
        &self,
        job: &SolveJob,
        target: &TargetLease,
        emit: Emit<'_>,
        stats: &mut SolveStats,
    ) -> Result<Outcome, Status> {
        let s = &job.settings;
        let draft_started = Instant::now();
        let order = DraftOrder {
            request: self.draft_request(job, false, s.draft_max_tokens),
            n: s.n,
            policy: StragglerPolicy {
                select_after_k: s.select_after_k,
                straggler_ratio: s.straggler_ratio,
            },
            include_texts: s.include_draft_texts,
        };
        let phase = match run_drafts(&self.pool, order, job.deadline, emit).await {
            Ok(phase) => phase,
            Err(DraftPhaseError::Rejected(status) | DraftPhaseError::Busy(status)) => {
                return Err(status)
            }
            Err(DraftPhaseError::Unavailable(reason)) => {
                tracing::warn!(request_id = %job.request_id, %reason, "target answers alone");
                stats.draft_ms = millis(draft_started.elapsed());
                stats.fallback_reason = reason;
                return self
                    .target_alone(job, target, emit, stats, AnswerPath::TargetFallback)
                    .await;
            }
        };
        stats.draft_ms = millis(draft_started.elapsed());
        record_drafts(stats, &phase);
        let mut notes: Vec<String> = phase.failures.clone();
        if let Some(cutoff) = &phase.cutoff {
            notes.push(cutoff.describe());
        }

        let offered = offered_drafts(&phase.drafts, s.drop_capped_drafts);
        for &position in &offered {
            if let Some(draft) = phase.drafts.get(position) {
                if let Some(info) = stats.drafts.iter_mut().find(|i| i.index == draft.index) {
                    info.offered = true;
                }
            }
        }
        if offered.is_empty() {
            notes.push("no draft was offered to selection: every draft hit the cap".to_string());
            stats.fallback_reason = notes.join("; ");
            return self.correction(job, target, emit, stats).await;
        }

        stats.selection_policy = s.selection.policy.name().to_string();
        let answers: Vec<Option<String>> = offered
            .iter()
            .map(|&p| phase.drafts.get(p).and_then(|d| d.answer.clone()))
            .collect();
        let tally = AnswerTally::count(&answers);
        stats.votes = tally.top_votes();
        let select_started = Instant::now();
        let selection = if needs_target(&s.selection, &tally) {
            let texts: Vec<String> = offered
                .iter()
                .filter_map(|&p| phase.drafts.get(p).map(|d| d.text.clone()))
                .collect();
            let response = target_client(target)
                .select(request_with_deadline(
                    SelectRequest {
                        request_id: job.request_id.clone(),
                        problem: job.problem.clone(),
                        drafts: texts,
                        template: s.template.clone(),
                        permutations: s.select_permutations.min(offered.len() as u32),
                    },
                    job.deadline,
                ))
                .await
                .map_err(|status| target_status(target, status))?
                .into_inner();
            stats.select_ms = millis(select_started.elapsed());
            stats.target_scored = true;
            stats.option_probs = response.option_probs.clone();
            stats.option_logprobs = response.option_logprobs.clone();
            stats.debiased_probs = response.debiased_probs.clone();
            stats.target_prompt_tokens += response.prompt_tokens;
            if s.selection.policy.uses_prior() && response.debiased_probs.is_empty() {
                notes.push(format!(
                    "the target node has no selection prior for {} drafts (template set {:?}): raw probabilities decided",
                    offered.len(),
                    response.template_set
                ));
            }
            Some(response)
        } else {
            None
        };
        let verdict = selection.as_ref().map(|r| TargetVerdict {
            probs: &r.option_probs,
            debiased: (!r.debiased_probs.is_empty()).then_some(&r.debiased_probs[..]),
        });
        let decision = decide(&s.selection, &tally, verdict.as_ref());
        let none_option = offered.len() as u32 + 1;
        stats.chosen = match decision {
            Decision::Accept { option, .. } => option,
            Decision::Reject(_) => none_option,
        };
        emit(SolveEvent {
            event: Some(SolveEventKind::Selection(SelectionResult {
                chosen: selection.as_ref().map_or(0, |r| r.chosen),
                none_correct: !matches!(decision, Decision::Accept { .. }),
                option_probs: stats.option_probs.clone(),
                elapsed_ms: stats.select_ms,
                debiased_probs: stats.debiased_probs.clone(),
                votes: stats.votes,
                policy: stats.selection_policy.clone(),
                accepted_option: match decision {
                    Decision::Accept { option, .. } => option,
                    Decision::Reject(_) => 0,
                },
            })),
        });

        match decision {
            Decision::Accept { option, basis } => {
                let draft = offered
                    .get(option as usize - 1)
                    .and_then(|&p| phase.drafts.get(p))
                    .ok_or_else(|| Status::internal("selected option has no draft"))?;
                stats.chosen_draft = Some(draft.index);
                stats.accept_basis = basis.name().to_string();
                stats.answer_from_draft = true;
                stats.path = AnswerPath::DraftAccepted as i32;
                stats.fallback_reason = notes.join("; ");
                // Stream the accepted draft as the thinking before the answer's tokens.
                emit(SolveEvent {
                    event: Some(SolveEventKind::Token(scot_proto::GenerateToken {
                        text: draft.text.clone(),
                        phase: scot_proto::GeneratePhase::Thinking as i32,
                    })),
                });
                let result = self
                    .generate(job, target, Some(draft.text.clone()), emit)
                    .await?;
                record_generation(stats, &result);
                Ok(Outcome {
                    reasoning: draft.text.clone(),
                    answer: result.answer,
                })
            }
            Decision::Reject(reason) => {
                notes.push(reason.to_string());
                stats.fallback_reason = notes.join("; ");
                self.correction(job, target, emit, stats).await
            }
        }
    }

    /// "All wrong": the target thinks from scratch, then answers.
    async fn correction(
        &self,
        job: &SolveJob,
        target: &TargetLease,
        emit: Emit<'_>,
        stats: &mut SolveStats,
    ) -> Result<Outcome, Status> {
        stats.path = AnswerPath::TargetCorrection as i32;
        let result = self.generate(job, target, None, emit).await?;
        record_generation(stats, &result);
        Ok(Outcome {
            reasoning: result.thinking,
            answer: result.answer,
        })
    }

    async fn target_alone(
        &self,
        job: &SolveJob,
        target: &TargetLease,
        emit: Emit<'_>,
        stats: &mut SolveStats,
        path: AnswerPath,
    ) -> Result<Outcome, Status> {
        stats.path = path as i32;
        let result = self.generate(job, target, None, emit).await?;
        record_generation(stats, &result);
        Ok(Outcome {
            reasoning: result.thinking,
            answer: result.answer,
        })
    }

    /// The draft model alone: one draft that keeps going past the end of thinking into the answer.
    async fn draft_only(
        &self,
        job: &SolveJob,
        target: &TargetLease,
        emit: Emit<'_>,
        stats: &mut SolveStats,
    ) -> Result<Outcome, Status> {
        let s = &job.settings;
        let started = Instant::now();
        let order = DraftOrder {
            request: self.draft_request(
                job,
                true,
                s.draft_max_tokens.saturating_add(s.answer_max_tokens),
            ),
            n: 1,
            policy: StragglerPolicy::default(),
            include_texts: s.include_draft_texts,
        };
        let phase = match run_drafts(&self.pool, order, job.deadline, emit).await {
            Ok(phase) => phase,
            Err(DraftPhaseError::Rejected(status) | DraftPhaseError::Busy(status)) => {
                return Err(status)
            }
            Err(DraftPhaseError::Unavailable(reason)) => {
                stats.fallback_reason = reason;
                return self
                    .target_alone(job, target, emit, stats, AnswerPath::TargetFallback)
                    .await;
            }
        };
        stats.draft_ms = millis(started.elapsed());
        record_drafts(stats, &phase);
        stats.path = AnswerPath::DraftOnly as i32;
        stats.answer_from_draft = true;
        let draft = phase.drafts.first();
        stats.answer_finish = draft.map_or(FinishReason::Unspecified, |d| d.finish) as i32;
        let text = draft.map(|d| d.text.clone()).unwrap_or_default();
        let (reasoning, answer) = split_thinking(&text, &s.think_end);
        Ok(Outcome { reasoning, answer })
    }

    fn draft_request(&self, job: &SolveJob, include_answer: bool, max_tokens: u32) -> DraftRequest {
        let s = &job.settings;
        DraftRequest {
            request_id: job.request_id.clone(),
            problem: job.problem.clone(),
            draft_indices: Vec::new(),
            temperature: s.draft_temperature,
            top_p: s.draft_top_p,
            top_k: s.draft_top_k,
            max_tokens,
            seed: s.seed,
            template: s.template.clone(),
            think_end: s.think_end.clone(),
            include_answer,
        }
    }

    /// Streams the target's thinking (when `accepted` is None) and answer to the client.
    async fn generate(
        &self,
        job: &SolveJob,
        target: &TargetLease,
        accepted: Option<String>,
        emit: Emit<'_>,
    ) -> Result<GenerateResult, Status> {
        let s = &job.settings;
        let request = GenerateRequest {
            request_id: job.request_id.clone(),
            problem: job.problem.clone(),
            accepted_draft: accepted,
            max_thinking_tokens: s.thinking_max_tokens,
            max_answer_tokens: s.answer_max_tokens,
            temperature: 0.0,
            seed: s.seed,
            template: s.template.clone(),
            think_end: s.think_end.clone(),
        };
        let mut stream = target_client(target)
            .generate(request_with_deadline(request, job.deadline))
            .await
            .map_err(|status| target_status(target, status))?
            .into_inner();
        while let Some(event) = stream.next().await {
            let event = event.map_err(|status| target_status(target, status))?;
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
}

fn target_client(target: &TargetLease) -> TargetServiceClient<Channel> {
    TargetServiceClient::new(target.channel())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The target's error, naming the node; UNAVAILABLE also takes the node out of routing until its
/// health check says SERVING again.
fn target_status(target: &TargetLease, status: Status) -> Status {
    if status.code() == tonic::Code::Unavailable {
        target.node().mark_down(status.message());
    }
    Status::new(
        status.code(),
        format!("target node {}: {}", target.address(), status.message()),
    )
}

fn record_drafts(stats: &mut SolveStats, phase: &DraftPhase) {
    stats.drafts = phase.infos.clone();
    stats.draft_tokens = phase.infos.iter().map(|i| u64::from(i.token_count)).sum();
    stats.draft_model = phase.model.clone();
}

fn record_generation(stats: &mut SolveStats, result: &GenerateResult) {
    stats.target_thinking_ms = result.thinking_ms;
    stats.answer_ms = result.answer_ms;
    stats.target_tokens = u64::from(result.thinking_tokens) + u64::from(result.answer_tokens);
    stats.target_thinking_tokens = result.thinking_tokens;
    stats.answer_tokens = result.answer_tokens;
    stats.answer_finish = result.answer_finish;
    stats.target_prompt_tokens += result.prompt_tokens;
    stats.prompt_tokens = result.prompt_tokens;
    stats.target_model = result.model.clone();
}

/// Splits a draft-only text at the end-of-thinking marker: (thinking, answer). Without the marker the
/// whole text is the answer.
fn split_thinking(text: &str, marker: &str) -> (String, String) {
    match text.find(marker) {
        Some(at) => (
            text[..at].trim_end().to_string(),
            text[at + marker.len()..].trim().to_string(),
        ),
        None => (String::new(), text.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_only_text_splits_at_the_marker() {
        assert_eq!(
            split_thinking(
                "2+2 is 4.\n</think>\n\nThe answer is \\boxed{4}.",
                "</think>"
            ),
            (
                "2+2 is 4.".to_string(),
                "The answer is \\boxed{4}.".to_string()
            )
        );
        assert_eq!(
            split_thinking("\\boxed{4}", "</think>"),
            (String::new(), "\\boxed{4}".to_string())
        );
    }
}
