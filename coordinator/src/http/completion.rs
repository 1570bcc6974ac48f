//! A finished Solve as an OpenAI chat completion: the answer as `content`, the chain of thought as
//! `reasoning_content`, `usage`, and the SCoT stats in the `scot` object.

use scot_proto::{AnswerPath, FinishReason, SolveResult, SolveStats};
use serde_json::{json, Value};

use super::api_types::{AssistantMessage, ChatCompletion, Choice, CompletionTokensDetails, Usage};

/// What one HTTP request is about, for building its responses.
#[derive(Debug, Clone)]
pub struct CompletionMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

pub fn chat_completion(meta: &CompletionMeta, result: &SolveResult) -> ChatCompletion {
    let stats = result.stats.clone().unwrap_or_default();
    ChatCompletion {
        id: meta.id.clone(),
        object: "chat.completion",
        created: meta.created,
        model: meta.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: result.answer.clone(),
                reasoning_content: result.reasoning.clone(),
            },
            finish_reason: finish_reason(&stats),
            logprobs: None,
        }],
        usage: usage(&stats),
        scot: scot_stats(&result.request_id, &stats),
    }
}

/// "length" when the answer stopped at its cap, else "stop".
pub fn finish_reason(stats: &SolveStats) -> &'static str {
    if stats.answer_finish == FinishReason::Length as i32 {
        "length"
    } else {
        "stop"
    }
}

/// Tokens of the chain of thought the answer rests on: the accepted draft, the target's own thinking,
/// or the draft-only draft.
fn reasoning_tokens(stats: &SolveStats) -> u64 {
    match AnswerPath::try_from(stats.path) {
        Ok(AnswerPath::DraftAccepted) => stats
            .chosen_draft
            .and_then(|index| stats.drafts.iter().find(|d| d.index == index))
            .map_or(0, |d| u64::from(d.token_count)),
        Ok(AnswerPath::DraftOnly) => stats.draft_tokens,
        _ => u64::from(stats.target_thinking_tokens),
    }
}

/// prompt_tokens: the target's answer prompt without the accepted draft in it (i.e. the templated
/// problem); completion_tokens: reasoning + answer. Draft-only answers count the draft as both.
pub fn usage(stats: &SolveStats) -> Usage {
    let reasoning = reasoning_tokens(stats);
    let (prompt, answer) = match AnswerPath::try_from(stats.path) {
        Ok(AnswerPath::DraftAccepted) => (
            u64::from(stats.prompt_tokens).saturating_sub(reasoning),
            u64::from(stats.answer_tokens),
        ),
        Ok(AnswerPath::DraftOnly) => (u64::from(stats.prompt_tokens), 0),
        _ => (
            u64::from(stats.prompt_tokens),
            u64::from(stats.answer_tokens),
        ),
    };
    Usage {
        prompt_tokens: prompt,
        completion_tokens: reasoning + answer,
        total_tokens: prompt + reasoning + answer,
        completion_tokens_details: CompletionTokensDetails {
            reasoning_tokens: reasoning,
        },
    }
}

/// The `scot` object: which path answered, the selection, per-phase times and token counts.
pub fn scot_stats(request_id: &str, stats: &SolveStats) -> Value {
    let drafts: Vec<Value> = stats
        .drafts
        .iter()
        .map(|d| {
            let mut draft = json!({
                "index": d.index,
                "tokens": d.token_count,
                "finish_reason": FinishReason::label_of(d.finish_reason),
                "elapsed_ms": d.elapsed_ms,
                "offered": d.offered,
                "node": d.node,
                "answer": (!d.answer.is_empty()).then_some(&d.answer),
            });
            if !d.text.is_empty() {
                draft["text"] = json!(d.text);
            }
            draft
        })
        .collect();
    json!({
        "request_id": request_id,
        "path": AnswerPath::label_of(stats.path),
        "answer_from_draft": stats.answer_from_draft,
        "chosen": (stats.chosen > 0).then_some(stats.chosen),
        "chosen_draft": stats.chosen_draft,
        "option_probs": stats.option_probs,
        "selection": {
            "policy": (!stats.selection_policy.is_empty()).then_some(&stats.selection_policy),
            "votes": stats.votes,
            "target_scored": stats.target_scored,
            "debiased_probs": stats.debiased_probs,
            "accept_basis": (!stats.accept_basis.is_empty()).then_some(&stats.accept_basis),
        },
        "fallback_reason": stats.fallback_reason,
        "recovery": {
            "target_retries": stats.target_retries,
            "target_migrations": stats.target_migrations,
            "drafts_replaced": stats.drafts_replaced,
        },
        "timings_ms": {
            "total": stats.total_ms,
            "draft": stats.draft_ms,
            "select": stats.select_ms,
            "correction": stats.target_thinking_ms,
            "answer": stats.answer_ms,
        },
        "drafts": drafts,
        "n_drafts": stats.drafts.len(),
        "draft_tokens": stats.draft_tokens,
        "target_tokens": stats.target_tokens,
        "target_prompt_tokens": stats.target_prompt_tokens,
        "target_thinking_tokens": stats.target_thinking_tokens,
        "answer_tokens": stats.answer_tokens,
        "speculative_proposed_tokens": stats.speculative_proposed_tokens,
        "speculative_accepted_tokens": stats.speculative_accepted_tokens,
        "draft_model": stats.draft_model,
        "target_model": stats.target_model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scot_proto::DraftInfo;

    pub(crate) fn accepted_stats() -> SolveStats {
        SolveStats {
            total_ms: 900.0,
            draft_ms: 500.0,
            select_ms: 100.0,
            answer_ms: 300.0,
            drafts: vec![
                DraftInfo {
                    index: 0,
                    token_count: 40,
                    finish_reason: FinishReason::ThinkEnd as i32,
                    elapsed_ms: 450.0,
                    offered: true,
                    node: "a:1".into(),
                    ..Default::default()
                },
                DraftInfo {
                    index: 1,
                    token_count: 64,
                    finish_reason: FinishReason::Length as i32,
                    elapsed_ms: 500.0,
                    offered: true,
                    node: "a:1".into(),
                    ..Default::default()
                },
            ],
            chosen: 1,
            chosen_draft: Some(0),
            option_probs: vec![0.7, 0.2, 0.1],
            draft_tokens: 104,
            target_tokens: 12,
            answer_from_draft: true,
            path: AnswerPath::DraftAccepted as i32,
            prompt_tokens: 70,
            answer_tokens: 12,
            target_prompt_tokens: 250,
            draft_model: "small".into(),
            target_model: "big".into(),
            ..Default::default()
        }
    }

    #[test]
    fn accepted_draft_completion() {
        let result = SolveResult {
            request_id: "r1".into(),
            reasoning: "2+3 is 5.".into(),
            answer: "5".into(),
            stats: Some(accepted_stats()),
        };
        let meta = CompletionMeta {
            id: "chatcmpl-r1".into(),
            created: 1,
            model: "scot".into(),
        };
        let body = serde_json::to_value(chat_completion(&meta, &result)).unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["content"], "5");
        assert_eq!(
            body["choices"][0]["message"]["reasoning_content"],
            "2+3 is 5."
        );
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["prompt_tokens"], 30);
        assert_eq!(body["usage"]["completion_tokens"], 52);
        assert_eq!(body["usage"]["total_tokens"], 82);
        assert_eq!(
            body["usage"]["completion_tokens_details"]["reasoning_tokens"],
            40
        );
        let scot = &body["scot"];
        assert_eq!(scot["path"], "draft_accepted");
        assert_eq!(scot["chosen"], 1);
        assert_eq!(scot["chosen_draft"], 0);
        assert_eq!(scot["n_drafts"], 2);
        assert_eq!(scot["drafts"][1]["finish_reason"], "length");
        assert_eq!(scot["timings_ms"]["select"], 100.0);
        assert_eq!(scot["option_probs"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn correction_usage_and_length_finish() {
        let stats = SolveStats {
            path: AnswerPath::TargetCorrection as i32,
            chosen: 3,
            prompt_tokens: 20,
            target_thinking_tokens: 50,
            answer_tokens: 64,
            answer_finish: FinishReason::Length as i32,
            ..Default::default()
        };
        let u = usage(&stats);
        assert_eq!((u.prompt_tokens, u.completion_tokens), (20, 114));
        assert_eq!(u.completion_tokens_details.reasoning_tokens, 50);
        assert_eq!(finish_reason(&stats), "length");
        let stopped = SolveStats {
            answer_finish: FinishReason::Eos as i32,
            ..stats.clone()
        };
        assert_eq!(finish_reason(&stopped), "stop");
        assert_eq!(scot_stats("r", &stats)["path"], "target_correction");
        assert!(scot_stats("r", &SolveStats::default())["chosen"].is_null());
    }
}
