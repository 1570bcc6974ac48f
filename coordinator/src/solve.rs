//! One Solve request end to end, read as its phases: drafts -> selection -> the answer after the
//! accepted draft, or the target thinking on its own (correction, fallback, target-only). Each phase
//! returns a value to the next; `StatsRecorder` turns them into the request's stats.

use std::sync::Arc;
use std::time::Instant;

use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::{
    AnswerPath, DraftRequest, GeneratePhase, GenerateRequest, GenerateToken, SelectRequest,
    SelectionResult, SolveEvent, SolveMode, SolveResult, StreamChunking,
};
use scot_selection::{decide, needs_target, AnswerTally, Decision, TargetVerdict};
use tonic::Status;

use crate::draft_board::{DraftPhase, DraftPhaseError};
use crate::draft_pool::DraftPool;
use crate::drafting::{run_drafts, DraftOrder};
use crate::request_target::RequestTarget;
use crate::selection_policy::offered_drafts;
use crate::solve_stats::StatsRecorder;
use crate::straggler::StragglerPolicy;
use crate::target_pool::TargetPool;
use crate::timing::Deadline;
use crate::validation::SolveSettings;

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

/// How the draft phase ended: drafts to work with, or none, and why.
enum Drafted {
    Phase(DraftPhase),
    /// No draft node could write them: the target answers alone.
    Unavailable(String),
    /// The draft pool had no room in time. A SCoT request holds its target already, so the target
    /// answers alone rather than the client getting a 429; a draft-only request is refused.
    Busy(String),
}

pub struct Solver {
    drafts: Arc<DraftPool>,
    targets: Arc<TargetPool>,
    /// How the target groups its streamed tokens (`--stream-chunk-tokens`, `--stream-chunk-ms`).
    chunking: StreamChunking,
}

type Emit<'a> = &'a (dyn Fn(SolveEvent) + Send + Sync);

impl Solver {
    pub fn new(drafts: Arc<DraftPool>, targets: Arc<TargetPool>, chunking: StreamChunking) -> Self {
        Self {
            drafts,
            targets,
            chunking,
        }
    }

    fn generate_request(&self, job: &SolveJob, accepted: Option<String>) -> GenerateRequest {
        generate_request(job, accepted, self.chunking)
    }

    /// The draft pool requests run on (for readiness probes).
    pub fn draft_pool(&self) -> Arc<DraftPool> {
        self.drafts.clone()
    }

    /// The target pool requests run on (for readiness probes).
    pub fn target_pool(&self) -> Arc<TargetPool> {
        self.targets.clone()
    }

    pub async fn solve(&self, job: &SolveJob, emit: Emit<'_>) -> Result<SolveResult, Status> {
        let started = Instant::now();
        let mut stats = StatsRecorder::default();
        let mut target = RequestTarget::new(&self.targets, job.deadline);
        let outcome = match job.settings.mode {
            SolveMode::TargetOnly => {
                target.lease().await?;
                self.target_thinks(job, &mut target, emit, &mut stats, AnswerPath::TargetOnly)
                    .await?
            }
            SolveMode::DraftOnly => self.draft_only(job, &mut target, emit, &mut stats).await?,
            SolveMode::Scot | SolveMode::Unspecified => {
                // Leased before drafting, so a request no target can serve fails before drafts are
                // written.
                target.lease().await?;
                self.speculative(job, &mut target, emit, &mut stats).await?
            }
        };
        stats.target_failovers(target.retries(), target.migrations());
        Ok(SolveResult {
            request_id: job.request_id.clone(),
            reasoning: outcome.reasoning,
            answer: outcome.answer,
            stats: Some(stats.finish(started.elapsed())),
        })
    }

    /// SCoT: drafts, selection, then the answer after the chosen draft or the target's own thinking.
    async fn speculative(
        &self,
        job: &SolveJob,
        target: &mut RequestTarget<'_>,
        emit: Emit<'_>,
        stats: &mut StatsRecorder,
    ) -> Result<Outcome, Status> {
        let s = &job.settings;
        let order = DraftOrder {
            request: draft_request(job, false, s.draft_max_tokens),
            n: s.n,
            policy: StragglerPolicy {
                select_after_k: s.select_after_k,
                straggler_ratio: s.straggler_ratio,
            },
            include_texts: s.include_draft_texts,
        };
        let phase = match self.draft_phase(job, order, emit, stats).await? {
            Drafted::Phase(phase) => phase,
            Drafted::Unavailable(reason) | Drafted::Busy(reason) => {
                return self.fallback(job, target, emit, stats, reason).await
            }
        };
        let offered = offered_drafts(&phase.drafts, s.drop_capped_drafts);
        stats.drafts(&phase, &offered);
        for failure in &phase.failures {
            stats.note(failure.clone());
        }
        if let Some(cutoff) = &phase.cutoff {
            stats.note(cutoff.describe());
        }
        if offered.is_empty() {
            stats.note("no draft was offered to selection: every draft hit the cap");
            return self
                .target_thinks(job, target, emit, stats, AnswerPath::TargetCorrection)
                .await;
        }

        let decision = self
            .selection(job, target, &phase, &offered, emit, stats)
            .await?;
        match decision {
            Decision::Accept { option, basis } => {
                let draft = offered
                    .get(option as usize - 1)
                    .and_then(|&p| phase.drafts.get(p))
                    .ok_or_else(|| Status::internal("selected option has no draft"))?;
                let text = draft.text.clone().unwrap_or_default();
                stats.accepted(draft, basis.name());
                // Stream the accepted draft as the thinking before the answer's tokens.
                emit(SolveEvent {
                    event: Some(SolveEventKind::Token(GenerateToken {
                        text: text.clone(),
                        phase: GeneratePhase::Thinking as i32,
                        token_ids: Vec::new(),
                    })),
                });
                let result = target
                    .generate(self.generate_request(job, Some(text.clone())), emit)
                    .await?;
                stats.generation(AnswerPath::DraftAccepted, &result);
                Ok(Outcome {
                    reasoning: text,
                    answer: result.answer,
                })
            }
            Decision::Reject(reason) => {
                stats.note(reason.to_string());
                self.target_thinks(job, target, emit, stats, AnswerPath::TargetCorrection)
                    .await
            }
        }
    }

    /// The drafts of `order`; a node's refusal of the request, or more drafts than the pool may
    /// hold, is the client's error.
    async fn draft_phase(
        &self,
        job: &SolveJob,
        order: DraftOrder,
        emit: Emit<'_>,
        stats: &mut StatsRecorder,
    ) -> Result<Drafted, Status> {
        let started = Instant::now();
        match run_drafts(&self.drafts, order, job.deadline, emit).await {
            Ok(phase) => Ok(Drafted::Phase(phase)),
            Err(DraftPhaseError::Rejected(status) | DraftPhaseError::TooMany(status)) => {
                Err(status)
            }
            Err(DraftPhaseError::Unavailable(reason)) => {
                stats.drafting_failed(started.elapsed());
                Ok(Drafted::Unavailable(reason))
            }
            Err(DraftPhaseError::Busy(reason)) => {
                stats.drafting_failed(started.elapsed());
                Ok(Drafted::Busy(reason))
            }
        }
    }

    /// The vote among the offered drafts, the target's selection prefill where its verdict can
    /// change the decision, and the decision; announced to the client as the Selection event.
    async fn selection(
        &self,
        job: &SolveJob,
        target: &mut RequestTarget<'_>,
        phase: &DraftPhase,
        offered: &[usize],
        emit: Emit<'_>,
        stats: &mut StatsRecorder,
    ) -> Result<Decision, Status> {
        let s = &job.settings;
        let answers: Vec<Option<String>> = offered
            .iter()
            .map(|&p| {
                phase
                    .drafts
                    .get(p)
                    .and_then(|d| d.answer().map(str::to_string))
            })
            .collect();
        let tally = AnswerTally::count(&answers);
        stats.votes(s.selection.policy, &tally);
        let target_read = if needs_target(&s.selection, &tally) {
            let started = Instant::now();
            let request = SelectRequest {
                request_id: job.request_id.clone(),
                problem: job.problem.clone(),
                drafts: offered
                    .iter()
                    .filter_map(|&p| phase.drafts.get(p).and_then(|d| d.text.clone()))
                    .collect(),
                template: s.template.clone(),
                permutations: s.select_permutations.min(offered.len() as u32),
                render_only: false,
            };
            let response = target.select(request).await?;
            stats.target_selection(&response, started.elapsed());
            if s.selection.policy.uses_prior() && response.debiased_probs.is_empty() {
                stats.note(format!(
                    "the target node has no selection prior for {} drafts (template set {:?}): raw probabilities decided",
                    offered.len(),
                    response.template_set
                ));
            }
            Some(response)
        } else {
            None
        };
        let verdict = target_read.as_ref().map(|r| TargetVerdict {
            probs: &r.option_probs,
            debiased: (!r.debiased_probs.is_empty()).then_some(&r.debiased_probs[..]),
        });
        let decision = decide(&s.selection, &tally, verdict.as_ref());
        stats.decision(&decision, offered.len());
        let recorded = stats.stats();
        emit(SolveEvent {
            event: Some(SolveEventKind::Selection(SelectionResult {
                chosen: target_read.as_ref().map_or(0, |r| r.chosen),
                none_correct: !matches!(decision, Decision::Accept { .. }),
                option_probs: recorded.option_probs.clone(),
                elapsed_ms: recorded.select_ms,
                debiased_probs: recorded.debiased_probs.clone(),
                votes: recorded.votes,
                policy: recorded.selection_policy.clone(),
                accepted_option: match decision {
                    Decision::Accept { option, .. } => option,
                    Decision::Reject(_) => 0,
                },
            })),
        });
        Ok(decision)
    }

    /// No draft could be written (no draft node, or no room in time): the target answers alone,
    /// saying why.
    async fn fallback(
        &self,
        job: &SolveJob,
        target: &mut RequestTarget<'_>,
        emit: Emit<'_>,
        stats: &mut StatsRecorder,
        reason: String,
    ) -> Result<Outcome, Status> {
        tracing::warn!(request_id = %job.request_id, %reason, "target answers alone");
        stats.note(reason);
        self.target_thinks(job, target, emit, stats, AnswerPath::TargetFallback)
            .await
    }

    /// The target thinks from scratch, then answers: correction ("all wrong"), fallback (no drafts)
    /// or target-only.
    async fn target_thinks(
        &self,
        job: &SolveJob,
        target: &mut RequestTarget<'_>,
        emit: Emit<'_>,
        stats: &mut StatsRecorder,
        path: AnswerPath,
    ) -> Result<Outcome, Status> {
        let result = target
            .generate(self.generate_request(job, None), emit)
            .await?;
        stats.generation(path, &result);
        Ok(Outcome {
            reasoning: result.thinking,
            answer: result.answer,
        })
    }

    /// The draft model alone: one draft that keeps going past the end of thinking into the answer. A
    /// target is leased only when no draft node can write it.
    async fn draft_only(
        &self,
        job: &SolveJob,
        target: &mut RequestTarget<'_>,
        emit: Emit<'_>,
        stats: &mut StatsRecorder,
    ) -> Result<Outcome, Status> {
        let s = &job.settings;
        let order = DraftOrder {
            request: draft_request(
                job,
                true,
                s.draft_max_tokens.saturating_add(s.answer_max_tokens),
            ),
            n: 1,
            policy: StragglerPolicy::default(),
            include_texts: s.include_draft_texts,
        };
        let phase = match self.draft_phase(job, order, emit, stats).await? {
            Drafted::Phase(phase) => phase,
            Drafted::Unavailable(reason) => {
                return self.fallback(job, target, emit, stats, reason).await
            }
            // Holding no target, a draft-only request is not moved onto one for want of room.
            Drafted::Busy(reason) => {
                return Err(Status::resource_exhausted(format!("{reason}; retry later")))
            }
        };
        stats.drafts(&phase, &[]);
        let draft = phase.drafts.iter().find(|d| d.is_finished());
        stats.draft_answer(draft);
        let text = draft.and_then(|d| d.text.clone()).unwrap_or_default();
        let (reasoning, answer) = split_thinking(&text, &s.think_end);
        Ok(Outcome { reasoning, answer })
    }
}

fn draft_request(job: &SolveJob, include_answer: bool, max_tokens: u32) -> DraftRequest {
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
        render_only: false,
    }
}

/// The target's answer, after `accepted` (the chosen draft) or after thinking of its own, streamed
/// in `chunking`'s messages.
fn generate_request(
    job: &SolveJob,
    accepted: Option<String>,
    chunking: StreamChunking,
) -> GenerateRequest {
    let s = &job.settings;
    GenerateRequest {
        request_id: job.request_id.clone(),
        problem: job.problem.clone(),
        accepted_draft: accepted,
        max_thinking_tokens: s.thinking_max_tokens,
        max_answer_tokens: s.answer_max_tokens,
        temperature: 0.0,
        seed: s.seed,
        template: s.template.clone(),
        think_end: s.think_end.clone(),
        resume: None,
        chunking: Some(chunking),
    }
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
