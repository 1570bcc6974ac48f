//! Human-readable output of a solve: the reasoning, the answer and the stats.

use std::fmt::Write;

use scot_proto::solve_event::Event;
use scot_proto::{AnswerPath, FinishReason, SolveResult};

/// One line per phase event (drafts started/finished, selection), for stderr while a request runs.
pub fn describe_event(event: &Event) -> Option<String> {
    match event {
        Event::DraftingStarted(started) => Some(format!(
            "drafting {} drafts on {}",
            started.n,
            started.nodes.join(", ")
        )),
        Event::DraftFinished(draft) => Some(format!(
            "draft {} finished: {} tokens ({}) in {:.0} ms on {}, answer {}",
            draft.index,
            draft.token_count,
            finish_name(draft.finish_reason),
            draft.elapsed_ms,
            draft.node,
            answer_or_dash(&draft.answer)
        )),
        Event::Selection(selection) => Some(format!(
            "selection ({}): {} votes for the leading answer{}{}",
            selection.policy,
            selection.votes,
            if selection.option_probs.is_empty() {
                ", target not asked".to_string()
            } else {
                format!(
                    ", target's pick {} (probabilities {}{})",
                    selection.chosen,
                    probs(&selection.option_probs),
                    if selection.debiased_probs.is_empty() {
                        String::new()
                    } else {
                        format!(", debiased {}", probs(&selection.debiased_probs))
                    }
                )
            },
            if selection.none_correct {
                " -> none taken".to_string()
            } else {
                format!(" -> option {} taken", selection.accepted_option)
            }
        )),
        Event::Token(_) | Event::Result(_) => None,
    }
}

pub fn finish_name(reason: i32) -> &'static str {
    match FinishReason::try_from(reason).unwrap_or_default() {
        FinishReason::ThinkEnd => "end of thinking",
        FinishReason::Length => "cap",
        FinishReason::Eos => "eos",
        FinishReason::Cancelled => "cancelled",
        FinishReason::Unspecified => "-",
    }
}

pub fn path_name(path: i32) -> &'static str {
    match AnswerPath::try_from(path).unwrap_or_default() {
        AnswerPath::DraftAccepted => "draft accepted",
        AnswerPath::TargetCorrection => "target correction (thought from scratch)",
        AnswerPath::TargetFallback => "target fallback (no drafts)",
        AnswerPath::TargetOnly => "target only",
        AnswerPath::DraftOnly => "draft only",
        AnswerPath::Unspecified => "-",
    }
}

fn answer_or_dash(answer: &str) -> &str {
    if answer.is_empty() {
        "-"
    } else {
        answer
    }
}

fn probs(values: &[f32]) -> String {
    let parts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}: {:.3}", i + 1, p))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The reasoning, the answer and the stats, as printed by `scot run` / `scot solve`.
pub fn render(result: &SolveResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "=== reasoning ===\n{}\n", result.reasoning.trim());
    let _ = writeln!(out, "=== answer ===\n{}\n", result.answer.trim());
    let _ = writeln!(out, "=== stats (request {}) ===", result.request_id);
    let Some(s) = &result.stats else {
        return out;
    };
    let _ = writeln!(out, "path: {}", path_name(s.path));
    if !s.fallback_reason.is_empty() {
        let _ = writeln!(out, "note: {}", s.fallback_reason);
    }
    let _ = writeln!(
        out,
        "time: total {:.0} ms | drafting {:.0} ms | selection {:.0} ms | target thinking {:.0} ms | answer {:.0} ms",
        s.total_ms, s.draft_ms, s.select_ms, s.target_thinking_ms, s.answer_ms
    );
    for d in &s.drafts {
        let _ = writeln!(
            out,
            "draft {}: {} tokens, {}{}, {:.0} ms, {}, answer {}",
            d.index,
            d.token_count,
            finish_name(d.finish_reason),
            if d.offered { ", offered" } else { "" },
            d.elapsed_ms,
            d.node,
            answer_or_dash(&d.answer)
        );
    }
    if s.chosen > 0 {
        let offered = s.drafts.iter().filter(|d| d.offered).count();
        let _ = writeln!(
            out,
            "selection ({}): {} of {} offered drafts agree on the leading answer; {}{}",
            s.selection_policy,
            s.votes,
            offered,
            if s.target_scored {
                format!(
                    "target probabilities {}{}",
                    probs(&s.option_probs),
                    if s.debiased_probs.is_empty() {
                        String::new()
                    } else {
                        format!(", debiased {}", probs(&s.debiased_probs))
                    }
                )
            } else {
                "target not asked".to_string()
            },
            match s.chosen_draft {
                Some(i) => format!(" -> draft {i} accepted (by {})", s.accept_basis),
                None => " -> none accepted".to_string(),
            }
        );
    }
    let _ = writeln!(
        out,
        "tokens: draft model {} generated | target {} generated ({} thinking, {} answer), {} prompt",
        s.draft_tokens, s.target_tokens, s.target_thinking_tokens, s.answer_tokens, s.target_prompt_tokens
    );
    if s.speculative_proposed_tokens > 0 {
        let _ = writeln!(
            out,
            "token-level speculation in the target: {} of {} proposed tokens kept",
            s.speculative_accepted_tokens, s.speculative_proposed_tokens
        );
    }
    let _ = writeln!(
        out,
        "answer from a draft: {} | models: draft {} / target {}",
        s.answer_from_draft,
        if s.draft_model.is_empty() {
            "-"
        } else {
            &s.draft_model
        },
        if s.target_model.is_empty() {
            "-"
        } else {
            &s.target_model
        }
    );
    out
}
