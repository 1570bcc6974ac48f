//! Maps an OpenAI chat request onto a Solve: the problem is the last user message, and the request's
//! fields become SolveOptions (checked and resolved by the front door, whose refusals name the fields
//! back in this API's words: `refusal_error`):
//!
//! | request field                        | SolveOptions          |
//! |--------------------------------------|-----------------------|
//! | `max_completion_tokens` / `max_tokens` | `answer_max_tokens` (cap of the final answer) |
//! | `temperature`                        | `draft_temperature` (the target decodes greedily) |
//! | `top_p`                              | `draft_top_p`         |
//! | `seed`                               | `seed` (draft i samples with seed + i) |
//! | `n_drafts` or `scot.n`               | `n` (number of drafts) |
//! | `scot.{mode, draft_max_tokens, thinking_max_tokens, draft_top_k, selection_policy, min_votes, accept_threshold, select_permutations, select_after_k, straggler_ratio, drop_capped_drafts, include_draft_texts, template, think_end}` | the same names |

use scot_proto::{SolveMode, SolveOptions};

use super::api_error::ApiError;
use super::api_types::{ChatCompletionRequest, ChatMessage, MessageContent};
use crate::front_door::Refused;
use crate::validation::Field;

/// OpenAI's range of `temperature` (the Solve contract allows hotter drafts).
const OPENAI_MAX_TEMPERATURE: f32 = 2.0;

/// A request ready for the front door.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRequest {
    pub problem: String,
    pub options: SolveOptions,
    pub stream: bool,
    pub include_usage: bool,
}

/// Parses the body (a JSON error is a 400 that quotes serde's message).
pub fn parse_body(body: &[u8]) -> Result<ChatCompletionRequest, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let param = e.to_string().contains("unknown field").then_some("scot");
        ApiError::invalid(format!("invalid JSON body: {e}"), param)
    })
}

pub fn map_request(
    request: &ChatCompletionRequest,
    served_model: &str,
) -> Result<MappedRequest, ApiError> {
    if let Some(model) = &request.model {
        if model != served_model {
            return Err(ApiError::model_not_found(model, served_model));
        }
    }
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "only n = 1 choice is supported; the number of drafts is `n_drafts` (or `scot.n`)",
            Some("n"),
        ));
    }
    if request.stop.as_ref().is_some_and(is_set) {
        return Err(ApiError::invalid(
            "`stop` is not supported: the answer ends at the model's end of sequence or `max_tokens`",
            Some("stop"),
        ));
    }
    if request.logprobs == Some(true) {
        return Err(ApiError::invalid(
            "`logprobs` is not supported",
            Some("logprobs"),
        ));
    }
    if request.tools.as_ref().is_some_and(is_set) {
        return Err(ApiError::invalid("`tools` is not supported", Some("tools")));
    }
    let problem = problem_of(&request.messages)?;
    let options = solve_options(request)?;
    if let Some(t) = options
        .draft_temperature
        .filter(|&t| t > OPENAI_MAX_TEMPERATURE)
    {
        return Err(ApiError::invalid(
            format!(
                "temperature = {t}: must be between 0 and {OPENAI_MAX_TEMPERATURE} (it samples the drafts)"
            ),
            Some("temperature"),
        ));
    }
    Ok(MappedRequest {
        problem,
        options,
        stream: request.stream.unwrap_or(false),
        include_usage: request
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage),
    })
}

fn is_set(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// The last user message's text (text parts joined by newlines).
fn problem_of(messages: &[ChatMessage]) -> Result<String, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "`messages` is empty: send the problem as a user message",
            Some("messages"),
        ));
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .ok_or_else(|| {
            ApiError::invalid(
                "`messages` has no user message: the problem is the last message with role \"user\"",
                Some("messages"),
            )
        })?;
    let text = match &last_user.content {
        None => String::new(),
        Some(MessageContent::Text(text)) => text.clone(),
        Some(MessageContent::Parts(parts)) => {
            let mut texts = Vec::new();
            for part in parts {
                match (part.kind.as_str(), &part.text) {
                    ("text", Some(text)) => texts.push(text.as_str()),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!("content part of type {kind:?} is not supported: send text"),
                            Some("messages"),
                        ))
                    }
                }
            }
            texts.join("\n")
        }
    };
    if text.trim().is_empty() {
        return Err(ApiError::invalid(
            "the last user message is empty: it must hold the problem to solve",
            Some("messages"),
        ));
    }
    Ok(text)
}

fn solve_options(request: &ChatCompletionRequest) -> Result<SolveOptions, ApiError> {
    let scot = request.scot.clone().unwrap_or_default();
    let mode = match scot.mode.as_deref() {
        None => SolveMode::Scot,
        Some(label) => SolveMode::from_label(label).ok_or_else(|| {
            ApiError::invalid(
                format!("scot.mode = {label:?}: use \"scot\", \"target_only\" or \"draft_only\""),
                Some("scot.mode"),
            )
        })?,
    };
    let n = match (request.n_drafts, scot.n) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                format!("n_drafts = {a} and scot.n = {b} disagree: set one of them"),
                Some("n_drafts"),
            ))
        }
        (a, b) => a.or(b),
    };
    let seed = match request.seed {
        Some(seed) if seed < 0 => {
            return Err(ApiError::invalid(
                format!("seed = {seed}: must be a non-negative integer"),
                Some("seed"),
            ))
        }
        seed => seed.map(|s| s as u64),
    };
    Ok(SolveOptions {
        mode: mode as i32,
        n,
        draft_temperature: request.temperature,
        draft_max_tokens: scot.draft_max_tokens,
        thinking_max_tokens: scot.thinking_max_tokens,
        answer_max_tokens: request.max_completion_tokens.or(request.max_tokens),
        seed,
        accept_threshold: scot.accept_threshold,
        select_after_k: scot.select_after_k,
        straggler_ratio: scot.straggler_ratio,
        drop_capped_drafts: scot.drop_capped_drafts.unwrap_or(false),
        template: scot.template.unwrap_or_default(),
        draft_top_p: request.top_p,
        draft_top_k: scot.draft_top_k,
        think_end: scot.think_end,
        selection_policy: scot.selection_policy.unwrap_or_default(),
        min_votes: scot.min_votes,
        select_permutations: scot.select_permutations,
        include_draft_texts: scot.include_draft_texts.unwrap_or(false),
    })
}

/// A front-door refusal in this API's shape: an invalid field is named as the request named it.
pub fn refusal_error(refused: &Refused) -> ApiError {
    match refused {
        Refused::OverCapacity { .. } => ApiError::over_capacity(refused.to_string()),
        Refused::Invalid(invalid) => {
            let (param, name) = match invalid.field {
                Field::Problem => ("messages".to_string(), Field::Problem.name()),
                Field::N => ("n_drafts".to_string(), "n_drafts".to_string()),
                Field::DraftTemperature => ("temperature".to_string(), "temperature".to_string()),
                Field::DraftTopP => ("top_p".to_string(), "top_p".to_string()),
                Field::AnswerMaxTokens => ("max_tokens".to_string(), "max_tokens".to_string()),
                Field::RequestId => ("x-request-id".to_string(), "x-request-id".to_string()),
                option => {
                    let name = format!("scot.{}", option.option_name().unwrap_or_default());
                    (name.clone(), name)
                }
            };
            ApiError::invalid(invalid.message_naming(&name), Some(&param))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SolveDefaults;
    use crate::validation::{validate_request, SolveSettings};
    use scot_proto::SolveRequest;

    /// The mapping, then the front door's checks as the handler sees them.
    fn map(body: &str) -> Result<(MappedRequest, SolveSettings), ApiError> {
        let request = parse_body(body.as_bytes())?;
        let mapped = map_request(&request, "scot")?;
        let solve = SolveRequest {
            request_id: String::new(),
            problem: mapped.problem.clone(),
            options: Some(mapped.options.clone()),
        };
        let settings = validate_request(&solve, &SolveDefaults::default())
            .map_err(|e| refusal_error(&Refused::Invalid(e)))?;
        Ok((mapped, settings))
    }

    fn param_of(body: &str) -> Option<String> {
        let err = map(body).unwrap_err();
        assert_eq!(err.status.as_u16(), 400, "{err:?}");
        err.param
    }

    #[test]
    fn openai_fields_map_onto_solve_options() {
        let mapped = map(r#"{"model": "scot", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": "What is 2+3?"}],
            "max_tokens": 64, "temperature": 0.3, "top_p": 0.9, "seed": 7, "n_drafts": 2,
            "stream": true, "stream_options": {"include_usage": true},
            "scot": {"draft_max_tokens": 96, "thinking_max_tokens": 80, "accept_threshold": 0.5,
                     "mode": "scot", "template": "short"},
            "user": "ignored", "presence_penalty": 0}"#)
        .unwrap();
        let (mapped, s) = mapped;
        assert_eq!(mapped.problem, "What is 2+3?");
        assert!(mapped.stream && mapped.include_usage);
        assert_eq!(s.mode, SolveMode::Scot);
        assert_eq!(
            (
                s.n,
                s.answer_max_tokens,
                s.draft_max_tokens,
                s.thinking_max_tokens
            ),
            (2, 64, 96, 80)
        );
        assert_eq!((s.draft_temperature, s.draft_top_p, s.seed), (0.3, 0.9, 7));
        assert_eq!(s.selection.accept_threshold, Some(0.5));
        assert_eq!(s.template, "short");
    }

    #[test]
    fn defaults_apply_when_fields_are_absent() {
        let (mapped, settings) =
            map(r#"{"messages": [{"role": "user", "content": "hi"}]}"#).unwrap();
        assert!(!mapped.stream);
        assert_eq!(
            mapped.options,
            SolveOptions {
                mode: SolveMode::Scot as i32,
                ..SolveOptions::default()
            }
        );
        assert_eq!(settings.n, 5);
        assert_eq!(settings.answer_max_tokens, 10240);
        assert_eq!(settings.draft_temperature, 0.6);
    }

    #[test]
    fn text_parts_and_modes() {
        let (mapped, settings) = map(r#"{"messages": [{"role": "user", "content": [
                {"type": "text", "text": "Compute"}, {"type": "text", "text": "1+1"}]}],
            "max_completion_tokens": 9, "max_tokens": 100, "scot": {"mode": "target_only", "n": 3}}"#)
        .unwrap();
        assert_eq!(mapped.problem, "Compute\n1+1");
        assert_eq!(settings.answer_max_tokens, 9);
        assert_eq!(settings.mode, SolveMode::TargetOnly);
        assert_eq!(settings.n, 3);
    }

    #[test]
    fn bad_input_names_the_field() {
        let user = r#""messages": [{"role": "user", "content": "hi"}]"#;
        let cases = [
            (r#"{"messages": []}"#.to_string(), "messages"),
            (
                r#"{"messages": [{"role": "system", "content": "x"}]}"#.to_string(),
                "messages",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "  "}]}"#.to_string(),
                "messages",
            ),
            (
                r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#
                    .to_string(),
                "messages",
            ),
            (format!(r#"{{{user}, "n": 2}}"#), "n"),
            (format!(r#"{{{user}, "stop": ["x"]}}"#), "stop"),
            (format!(r#"{{{user}, "logprobs": true}}"#), "logprobs"),
            (
                format!(r#"{{{user}, "tools": [{{"type": "function"}}]}}"#),
                "tools",
            ),
            (format!(r#"{{{user}, "max_tokens": 0}}"#), "max_tokens"),
            (format!(r#"{{{user}, "temperature": 3.5}}"#), "temperature"),
            (format!(r#"{{{user}, "top_p": 0}}"#), "top_p"),
            (format!(r#"{{{user}, "seed": -1}}"#), "seed"),
            (format!(r#"{{{user}, "n_drafts": 0}}"#), "n_drafts"),
            (
                format!(r#"{{{user}, "n_drafts": 2, "scot": {{"n": 3}}}}"#),
                "n_drafts",
            ),
            (
                format!(r#"{{{user}, "scot": {{"mode": "fast"}}}}"#),
                "scot.mode",
            ),
            (format!(r#"{{{user}, "scot": {{"bogus": 1}}}}"#), "scot"),
            (
                format!(r#"{{{user}, "scot": {{"draft_max_tokens": 0}}}}"#),
                "scot.draft_max_tokens",
            ),
            (
                format!(r#"{{{user}, "scot": {{"accept_threshold": 2}}}}"#),
                "scot.accept_threshold",
            ),
            (
                format!(r#"{{{user}, "scot": {{"selection_policy": "best"}}}}"#),
                "scot.selection_policy",
            ),
            (
                format!(r#"{{{user}, "scot": {{"n": 3, "min_votes": 5}}}}"#),
                "scot.min_votes",
            ),
            (
                format!(r#"{{{user}, "scot": {{"select_permutations": 0}}}}"#),
                "scot.select_permutations",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(param_of(&body).as_deref(), Some(field), "{body}");
        }
        let err = map(r#"{"messages": "#).unwrap_err();
        assert!(err.message.starts_with("invalid JSON body"), "{err:?}");
        let err = map(r#"{"messages": 5}"#).unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
    }

    #[test]
    fn an_unknown_model_is_a_404() {
        let err = map(r#"{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}"#)
            .unwrap_err();
        assert_eq!(err.status.as_u16(), 404);
        assert_eq!(err.code, Some("model_not_found"));
    }
}
