//! The one place a request's SolveStats are filled: each phase hands its value here (the drafts, the
//! selection, the target's generation), and the notes on what went differently become
//! `fallback_reason`.

use std::time::Duration;

use scot_proto::{AnswerPath, GenerateResult, SelectResponse, SolveStats};
use scot_selection::{AnswerTally, Decision, SelectionPolicy};

use crate::draft_board::{DraftPhase, DraftRecord};
use crate::timing::millis;

#[derive(Debug, Default)]
pub struct StatsRecorder {
    stats: SolveStats,
    notes: Vec<String>,
}

impl StatsRecorder {
    /// Something the client should know about how the answer came about (a lost node, an early
    /// selection, why the target thought); joined into `fallback_reason`.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The draft phase: its time, every draft (`offered` marked), their tokens and the draft model.
    pub fn drafts(&mut self, phase: &DraftPhase, offered: &[usize]) {
        self.stats.draft_ms = millis(phase.elapsed);
        self.stats.drafts = phase
            .drafts
            .iter()
            .enumerate()
            .map(|(position, draft)| {
                let mut info = draft.info.clone();
                info.offered = offered.contains(&position);
                info
            })
            .collect();
        self.stats.draft_tokens = phase
            .drafts
            .iter()
            .map(|d| u64::from(d.info.token_count))
            .sum();
        self.stats.draft_model = phase.model.clone();
        self.stats.drafts_replaced = phase.replaced;
    }

    /// Drafting ended without drafts after `elapsed`.
    pub fn drafting_failed(&mut self, elapsed: Duration) {
        self.stats.draft_ms = millis(elapsed);
    }

    /// The vote count of the offered drafts under `policy`.
    pub fn votes(&mut self, policy: SelectionPolicy, tally: &AnswerTally) {
        self.stats.selection_policy = policy.name().to_string();
        self.stats.votes = tally.top_votes();
    }

    /// The target's selection prefill.
    pub fn target_selection(&mut self, response: &SelectResponse, elapsed: Duration) {
        self.stats.select_ms = millis(elapsed);
        self.stats.target_scored = true;
        self.stats.option_probs = response.option_probs.clone();
        self.stats.option_logprobs = response.option_logprobs.clone();
        self.stats.debiased_probs = response.debiased_probs.clone();
        self.stats.target_prompt_tokens += response.prompt_tokens;
    }

    /// The decision over `offered` options (n + 1 is "none").
    pub fn decision(&mut self, decision: &Decision, offered: usize) {
        self.stats.chosen = match decision {
            Decision::Accept { option, .. } => *option,
            Decision::Reject(_) => offered as u32 + 1,
        };
    }

    /// The draft the answer continues.
    pub fn accepted(&mut self, draft: &DraftRecord, basis: &str) {
        self.stats.chosen_draft = Some(draft.info.index);
        self.stats.accept_basis = basis.to_string();
        self.stats.answer_from_draft = true;
    }

    /// The target's thinking (when it thought) and answer, on `path`.
    pub fn generation(&mut self, path: AnswerPath, result: &GenerateResult) {
        self.stats.path = path as i32;
        self.stats.target_thinking_ms = result.thinking_ms;
        self.stats.answer_ms = result.answer_ms;
        self.stats.target_tokens =
            u64::from(result.thinking_tokens) + u64::from(result.answer_tokens);
        self.stats.target_thinking_tokens = result.thinking_tokens;
        self.stats.answer_tokens = result.answer_tokens;
        self.stats.answer_finish = result.answer_finish;
        self.stats.target_prompt_tokens += result.prompt_tokens;
        self.stats.prompt_tokens = result.prompt_tokens;
        self.stats.target_model = result.model.clone();
        self.stats.speculative_proposed_tokens = result.speculative_proposed_tokens;
        self.stats.speculative_accepted_tokens = result.speculative_accepted_tokens;
    }

    /// Draft-only: the draft is the answer.
    pub fn draft_answer(&mut self, draft: Option<&DraftRecord>) {
        self.stats.path = AnswerPath::DraftOnly as i32;
        self.stats.answer_from_draft = true;
        self.stats.answer_finish = draft.map_or(0, |d| d.info.finish_reason);
    }

    /// Target calls made again on another target node after a failure before any output
    /// (`retries`), and answers moved to another after output was streamed (`migrations`).
    pub fn target_failovers(&mut self, retries: u32, migrations: u32) {
        self.stats.target_retries = retries;
        self.stats.target_migrations = migrations;
    }

    /// What has been recorded so far (the selection event reads it).
    pub fn stats(&self) -> &SolveStats {
        &self.stats
    }

    pub fn finish(mut self, total: Duration) -> SolveStats {
        self.stats.total_ms = millis(total);
        self.stats.fallback_reason = self.notes.join("; ");
        self.stats
    }
}
