//! One load request as the client saw it: when it started and ended, and what came back.

use std::time::Instant;

/// One request as the client saw it.
#[derive(Debug, Clone)]
pub struct SolveOutcome {
    pub request_id: String,
    pub start: Instant,
    pub end: Instant,
    /// Err(message) when the call or its stream failed or ended without a result.
    pub result: std::result::Result<(), String>,
    /// `AnswerPath` as i32 (0 when no result).
    pub path: i32,
    /// Drafts in the result's stats.
    pub drafts: usize,
    /// Draft nodes the request's drafts were spread over (DraftingStarted).
    pub draft_nodes: usize,
    /// Target tokens streamed to the client (simulated tokens are words).
    pub streamed_tokens: usize,
}

impl SolveOutcome {
    /// A request starting now, with no result yet.
    pub fn started(request_id: String) -> Self {
        let start = Instant::now();
        Self {
            request_id,
            start,
            end: start,
            result: Err("no result".to_string()),
            path: 0,
            drafts: 0,
            draft_nodes: 0,
            streamed_tokens: 0,
        }
    }
}
