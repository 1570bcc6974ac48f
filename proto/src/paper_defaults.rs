//! The paper's settings of the per-request knobs (`SolveOptions`): what an unset knob means unless a
//! coordinator is configured otherwise.

/// Drafts per request.
pub const N: u32 = 5;
pub const DRAFT_TEMPERATURE: f32 = 0.6;
/// 1 = off.
pub const DRAFT_TOP_P: f32 = 1.0;
/// 0 = off.
pub const DRAFT_TOP_K: u32 = 0;
pub const DRAFT_MAX_TOKENS: u32 = 5000;
/// Cap of the target's own thinking (correction, fallback, target-only).
pub const THINKING_MAX_TOKENS: u32 = 20480;
pub const ANSWER_MAX_TOKENS: u32 = 10240;
pub const SEED: u64 = 0;
/// One selection prefill, in the order given.
pub const SELECT_PERMUTATIONS: u32 = 1;
