//! The request flags of `scot run` and `scot solve`: the mode and the SCoT knobs ([`SolveKnobs`],
//! shared with `scot eval`), then this command's seed and deadline, both unset by default.

use std::time::Duration;

use scot_client::SolveKnobs;
use scot_proto::SolveOptions;

#[derive(clap::Args, Debug, Clone)]
pub struct SolveArgs {
    #[command(flatten)]
    pub knobs: SolveKnobs,
    /// Sampling seed; draft i uses seed + i.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Request deadline in seconds.
    #[arg(long)]
    pub timeout_secs: Option<u64>,
}

impl SolveArgs {
    pub fn options(&self) -> SolveOptions {
        self.knobs.options(self.seed)
    }

    pub fn deadline(&self) -> Option<Duration> {
        self.timeout_secs.map(Duration::from_secs)
    }
}
