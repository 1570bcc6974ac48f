//! Public request/response types of generation: sampling parameters, stop criteria, outputs, events
//! and cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How one sequence picks its next token.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 (or below) means greedy argmax.
    pub temperature: f32,
    /// Nucleus sampling mass; 1 = off.
    pub top_p: f32,
    /// Keep only the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Seed of this sequence's own RNG (runs with the same seed and inputs are identical).
    pub seed: u64,
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
        }
    }

    /// Plain temperature sampling (no top-p/top-k), as SCoT drafting uses.
    pub fn with_temperature(temperature: f32, seed: u64) -> Self {
        Self {
            temperature,
            top_p: 1.0,
            top_k: 0,
            seed,
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

/// When a sequence stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopCriteria {
    pub max_new_tokens: usize,
    /// Stop when the decoded text contains one of these (matched across token boundaries).
    pub stop_strings: Vec<String>,
    /// Stop at one of the model's EOS tokens (`ModelInfo::eos_token_ids`).
    pub stop_at_eos: bool,
}

impl Default for StopCriteria {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            stop_strings: Vec::new(),
            stop_at_eos: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The text reached this stop string.
    StopString(String),
    Eos,
    /// `max_new_tokens`, or the context limit, was reached.
    Length,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SequenceOutput {
    /// Generated tokens, including those of a matched stop string and a final EOS token.
    pub tokens: Vec<u32>,
    /// Decoded text (special tokens skipped) with the matched stop string and anything after it removed.
    pub text: String,
    pub finish_reason: FinishReason,
    pub elapsed: Duration,
}

/// One generated token as it is produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEvent {
    pub token: u32,
    /// Newly decoded text; empty while a multi-byte character is incomplete. The events' texts
    /// concatenate to the full decoded text, stop string included.
    pub text: String,
    /// 0-based position of the token among the generated ones.
    pub index: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BatchEvent {
    Prefilled {
        prompt_tokens: usize,
        elapsed: Duration,
    },
    Token {
        seq: usize,
        event: TokenEvent,
    },
    Finished {
        seq: usize,
        output: SequenceOutput,
    },
}

/// Cooperative cancellation, checked between decoding steps.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
