//! The request flags of `scot run` and `scot solve`: mode, seed and deadline here, the SCoT knobs
//! shared with `scot eval` in [`SolveKnobs`].

use scot_eval::{Mode, SolveKnobs};
use scot_proto::SolveOptions;

#[derive(clap::Args, Debug, Clone)]
pub struct SolveArgs {
    /// scot (drafts + selection), target-only or draft-only.
    #[arg(long, value_enum, default_value = "scot")]
    pub mode: Mode,
    /// Sampling seed; draft i uses seed + i.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub knobs: SolveKnobs,
    /// Request deadline in seconds.
    #[arg(long)]
    pub timeout_secs: Option<u64>,
}

impl SolveArgs {
    pub fn options(&self) -> SolveOptions {
        SolveOptions {
            mode: self.mode.proto() as i32,
            seed: self.seed,
            ..self.knobs.options()
        }
    }
}
