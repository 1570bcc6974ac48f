//! Sends problems through a running coordinator (CoordinatorService.Solve) and turns each final
//! SolveResult into a graded [`ResultLine`].

use std::time::{Duration, Instant};

use scot_client::{status_text, Mode, SolveClient};
use scot_proto::{AnswerPath, FinishReason, SolveOptions, SolveRequest};

use crate::dataset::Problem;
use crate::results::{DraftRecord, ResultLine};
use scot_answers::{answers_equal, extract_answer};

/// What every request of a run shares.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    pub dataset: String,
    /// Also in `options`; the result lines and request ids name it.
    pub mode: Mode,
    pub options: SolveOptions,
    pub deadline: Duration,
}

impl RequestTemplate {
    fn options(&self) -> SolveOptions {
        SolveOptions {
            // Result lines keep the drafts' texts so `scot report --replay` can re-decide offline.
            include_draft_texts: true,
            ..self.options.clone()
        }
    }
}

/// Solves one problem; a failure is recorded in the line's `error`, never returned.
pub async fn solve_one(
    client: &SolveClient,
    template: &RequestTemplate,
    problem: &Problem,
) -> ResultLine {
    let mut line = ResultLine {
        id: problem.id.clone(),
        dataset: template.dataset.clone(),
        problem: problem.problem.clone(),
        mode: template.mode.name().to_string(),
        gold: problem.answer.clone(),
        seed: template.options.seed.unwrap_or(0),
        ..Default::default()
    };
    let request = SolveRequest {
        request_id: format!(
            "eval-{}-{}-{}",
            template.dataset,
            template.mode.name(),
            problem.id
        ),
        problem: problem.problem.clone(),
        options: Some(template.options()),
    };
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        template.deadline,
        client.solve(request, Some(template.deadline), |_| {}),
    )
    .await;
    line.client_ms = started.elapsed().as_secs_f64() * 1e3;
    match outcome {
        Ok(Ok(result)) => {
            line.answer_text = result.answer;
            if let Some(stats) = result.stats {
                fill_stats(&mut line, stats);
            }
            grade(&mut line);
        }
        Ok(Err(status)) => line.error = Some(status_message(&status, template.deadline)),
        Err(_) => line.error = Some(format!("deadline of {:?} exceeded", template.deadline)),
    }
    line
}

/// The status as text; tonic reports its own grpc-timeout as `Cancelled: Timeout expired`.
fn status_message(status: &tonic::Status, deadline: Duration) -> String {
    let text = status_text(status);
    let timed_out = status.code() == tonic::Code::DeadlineExceeded
        || status.message().contains("Timeout expired");
    if timed_out {
        format!("deadline of {deadline:?} exceeded ({text})")
    } else {
        text
    }
}

fn fill_stats(line: &mut ResultLine, s: scot_proto::SolveStats) {
    line.total_ms = s.total_ms;
    line.draft_ms = s.draft_ms;
    line.select_ms = s.select_ms;
    line.answer_ms = s.answer_ms;
    line.target_thinking_ms = s.target_thinking_ms;
    line.draft_tokens = s.draft_tokens;
    line.target_tokens = s.target_tokens;
    line.prompt_tokens = s.prompt_tokens;
    line.target_prompt_tokens = s.target_prompt_tokens;
    line.target_thinking_tokens = s.target_thinking_tokens;
    line.answer_tokens = s.answer_tokens;
    line.chosen = s.chosen;
    line.option_probs = s.option_probs;
    line.option_logprobs = s.option_logprobs;
    line.debiased_probs = s.debiased_probs;
    line.selection_policy = s.selection_policy;
    line.votes = s.votes;
    line.accept_basis = s.accept_basis;
    line.target_scored = s.target_scored;
    line.chosen_draft = s.chosen_draft;
    line.path = AnswerPath::label_of(s.path).to_string();
    line.fallback_reason = s.fallback_reason;
    line.draft_model = s.draft_model;
    line.target_model = s.target_model;
    line.drafts = s
        .drafts
        .into_iter()
        .map(|d| DraftRecord {
            index: d.index,
            tokens: d.token_count,
            finish: FinishReason::label_of(d.finish_reason).to_string(),
            elapsed_ms: d.elapsed_ms,
            offered: d.offered,
            node: d.node,
            answer: (!d.answer.is_empty()).then_some(d.answer),
            text: d.text,
        })
        .collect();
}

/// Grades the answer text; when it holds no extractable answer the line stays wrong.
pub(crate) fn grade(line: &mut ResultLine) {
    line.prediction = extract_answer(&line.answer_text);
    line.correct = line
        .prediction
        .as_deref()
        .is_some_and(|p| answers_equal(p, &line.gold));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_the_answer_text() {
        let mut line = ResultLine {
            gold: "18".into(),
            answer_text: "She earns 9 * 2 = \\boxed{18} dollars.".into(),
            ..Default::default()
        };
        grade(&mut line);
        assert!(line.correct);
        assert_eq!(line.prediction.as_deref(), Some("18"));
        line.answer_text = "I am not sure.".into();
        grade(&mut line);
        assert!(!line.correct && line.prediction.is_none());
    }
}
