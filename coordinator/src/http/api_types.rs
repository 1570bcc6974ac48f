//! The OpenAI chat-completions wire format, as far as scot serves it (plus the `scot` extensions).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/chat/completions` body. Fields scot does not use (`user`, `presence_penalty`, ...) are
/// ignored; fields it cannot honour (`n` > 1, `stop`, `logprobs`, `tools`) are refused with a 400.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: Option<String>,
    #[serde(default)]
    pub messages: Vec<ChatMessage>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Cap of the final answer's tokens (the chain of thought has its own caps in `scot`).
    pub max_tokens: Option<u32>,
    /// Newer name of `max_tokens`; wins when both are set.
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature of the drafts (the target decodes greedily, as in the paper).
    pub temperature: Option<f32>,
    /// Nucleus sampling of the drafts.
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    /// Choices per request: only 1.
    pub n: Option<u32>,
    /// Number of drafts (same as `scot.n`).
    pub n_drafts: Option<u32>,
    pub stop: Option<Value>,
    pub logprobs: Option<bool>,
    pub tools: Option<Value>,
    /// scot's own knobs.
    pub scot: Option<ScotOptions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// A message's content: a string, or a list of parts of which scot reads the text ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// The `scot` object of a request: every SolveOptions knob (names as in the gRPC contract).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScotOptions {
    /// "scot" (default), "target_only" or "draft_only".
    pub mode: Option<String>,
    pub n: Option<u32>,
    pub draft_max_tokens: Option<u32>,
    pub thinking_max_tokens: Option<u32>,
    pub draft_top_k: Option<u32>,
    pub accept_threshold: Option<f32>,
    pub select_after_k: Option<u32>,
    pub straggler_ratio: Option<f32>,
    pub drop_capped_drafts: Option<bool>,
    pub template: Option<String>,
    pub think_end: Option<String>,
    /// "paper", "debiased", "vote" or "hybrid".
    pub selection_policy: Option<String>,
    pub min_votes: Option<u32>,
    pub select_permutations: Option<u32>,
    /// Each draft's text in the response's `scot.drafts`.
    pub include_draft_texts: Option<bool>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub completion_tokens_details: CompletionTokensDetails,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    pub scot: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: &'static str,
    pub logprobs: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
    pub reasoning_content: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scot: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub finish_reason: Option<&'static str>,
    pub logprobs: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}
