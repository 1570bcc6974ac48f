//! The per-request knobs on the command line (`scot run`, `scot solve`), mapped to `SolveOptions`.
//! Unset flags leave the coordinator's defaults (the paper's) in place.

use scot_proto::{SolveMode, SolveOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Scot,
    TargetOnly,
    DraftOnly,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SolveArgs {
    /// scot (drafts + selection), target-only or draft-only.
    #[arg(long, value_enum, default_value = "scot")]
    pub mode: ModeArg,
    /// Number of drafts (default 5).
    #[arg(long)]
    pub n: Option<u32>,
    /// Draft sampling temperature (default 0.6).
    #[arg(long)]
    pub draft_temperature: Option<f32>,
    #[arg(long)]
    pub draft_top_p: Option<f32>,
    #[arg(long)]
    pub draft_top_k: Option<u32>,
    /// Draft token cap (default 5000).
    #[arg(long)]
    pub draft_max_tokens: Option<u32>,
    /// Cap of the target's own thinking (default 20480).
    #[arg(long)]
    pub thinking_max_tokens: Option<u32>,
    /// Answer token cap (default 10240).
    #[arg(long)]
    pub answer_max_tokens: Option<u32>,
    /// Sampling seed; draft i uses seed + i.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Take "none" when the best option's probability is under this (off when unset).
    #[arg(long)]
    pub accept_threshold: Option<f32>,
    /// Select once this many drafts are done (off when unset).
    #[arg(long)]
    pub select_after_k: Option<u32>,
    /// Select once the unfinished drafts pass this multiple of the median finished length.
    #[arg(long)]
    pub straggler_ratio: Option<f32>,
    /// Leave drafts cut off by the cap out of selection.
    #[arg(long)]
    pub drop_capped_drafts: bool,
    /// Template set name (default: `default`).
    #[arg(long, default_value = "")]
    pub template: String,
    /// End-of-thinking marker (default `</think>`).
    #[arg(long)]
    pub think_end: Option<String>,
    /// Request deadline in seconds.
    #[arg(long)]
    pub timeout_secs: Option<u64>,
}

impl SolveArgs {
    pub fn options(&self) -> SolveOptions {
        SolveOptions {
            mode: match self.mode {
                ModeArg::Scot => SolveMode::Scot,
                ModeArg::TargetOnly => SolveMode::TargetOnly,
                ModeArg::DraftOnly => SolveMode::DraftOnly,
            } as i32,
            n: self.n,
            draft_temperature: self.draft_temperature,
            draft_max_tokens: self.draft_max_tokens,
            thinking_max_tokens: self.thinking_max_tokens,
            answer_max_tokens: self.answer_max_tokens,
            seed: self.seed,
            accept_threshold: self.accept_threshold,
            select_after_k: self.select_after_k,
            straggler_ratio: self.straggler_ratio,
            drop_capped_drafts: self.drop_capped_drafts,
            template: self.template.clone(),
            draft_top_p: self.draft_top_p,
            draft_top_k: self.draft_top_k,
            think_end: self.think_end.clone(),
        }
    }
}
