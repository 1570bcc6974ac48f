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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use scot_proto::SolveMode;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        solve: SolveArgs,
    }

    #[test]
    fn seed_and_deadline_stay_unset_unless_given() {
        let unset = Cli::parse_from(["scot"]).solve;
        assert_eq!((unset.options().seed, unset.deadline()), (None, None));
        assert_eq!(unset.options().mode, SolveMode::Scot as i32);
        let set = Cli::parse_from([
            "scot",
            "--mode",
            "draft-only",
            "--seed",
            "3",
            "--n",
            "2",
            "--timeout-secs",
            "9",
        ])
        .solve;
        let options = set.options();
        assert_eq!(options.mode, SolveMode::DraftOnly as i32);
        assert_eq!((options.seed, options.n), (Some(3), Some(2)));
        assert_eq!(set.deadline(), Some(Duration::from_secs(9)));
    }
}
