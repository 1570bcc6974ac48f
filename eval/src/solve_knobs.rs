//! The per-request SCoT knobs on the command line, shared by `scot run`/`scot solve` and
//! `scot eval` so both spell, document and map them the same way. Unset flags leave the
//! coordinator's defaults (the paper's) in place.

use scot_proto::SolveOptions;

#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct SolveKnobs {
    /// Number of drafts (server default 5).
    #[arg(long)]
    pub n: Option<u32>,
    /// Draft sampling temperature (server default 0.6).
    #[arg(long)]
    pub draft_temperature: Option<f32>,
    #[arg(long)]
    pub draft_top_p: Option<f32>,
    #[arg(long)]
    pub draft_top_k: Option<u32>,
    /// Draft token cap (server default 5000).
    #[arg(long)]
    pub draft_max_tokens: Option<u32>,
    /// Cap of the target's own thinking (server default 20480).
    #[arg(long)]
    pub thinking_max_tokens: Option<u32>,
    /// Answer token cap (server default 10240).
    #[arg(long)]
    pub answer_max_tokens: Option<u32>,
    /// End-of-thinking marker (server default `</think>`).
    #[arg(long)]
    pub think_end: Option<String>,
    /// How drafts are judged: paper, debiased, vote or hybrid (server default: hybrid).
    #[arg(long)]
    pub selection_policy: Option<String>,
    /// vote / hybrid: drafts that must agree on an answer (server default: three quarters of n,
    /// at least 2).
    #[arg(long)]
    pub min_votes: Option<u32>,
    /// Take "none" when the target's pick has a probability under this threshold (unset: the
    /// policy's default).
    #[arg(long)]
    pub accept_threshold: Option<f32>,
    /// Cyclic orders of the drafts the target scores and averages (that many prefills).
    #[arg(long)]
    pub select_permutations: Option<u32>,
    /// Select once this many drafts are done (off when unset).
    #[arg(long)]
    pub select_after_k: Option<u32>,
    /// Select once the unfinished drafts pass this multiple of the median finished length.
    #[arg(long)]
    pub straggler_ratio: Option<f32>,
    /// Leave drafts cut off by the cap out of selection.
    #[arg(long)]
    pub drop_capped_drafts: bool,
    /// Template set name (server default `default` when empty).
    #[arg(long, default_value = "")]
    pub template: String,
}

impl SolveKnobs {
    /// The request options these knobs ask for; mode and seed are the caller's.
    pub fn options(&self) -> SolveOptions {
        SolveOptions {
            n: self.n,
            draft_temperature: self.draft_temperature,
            draft_max_tokens: self.draft_max_tokens,
            thinking_max_tokens: self.thinking_max_tokens,
            answer_max_tokens: self.answer_max_tokens,
            accept_threshold: self.accept_threshold,
            select_after_k: self.select_after_k,
            straggler_ratio: self.straggler_ratio,
            drop_capped_drafts: self.drop_capped_drafts,
            template: self.template.clone(),
            draft_top_p: self.draft_top_p,
            draft_top_k: self.draft_top_k,
            think_end: self.think_end.clone(),
            selection_policy: self.selection_policy.clone().unwrap_or_default(),
            min_votes: self.min_votes,
            select_permutations: self.select_permutations,
            ..SolveOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        knobs: SolveKnobs,
    }

    #[test]
    fn flags_map_to_request_options() {
        let cli = Cli::parse_from([
            "x",
            "--n",
            "3",
            "--draft-max-tokens",
            "100",
            "--straggler-ratio",
            "1.5",
            "--drop-capped-drafts",
            "--template",
            "t",
            "--selection-policy",
            "vote",
            "--min-votes",
            "4",
        ]);
        let opts = cli.knobs.options();
        assert_eq!(opts.n, Some(3));
        assert_eq!(opts.draft_max_tokens, Some(100));
        assert_eq!(opts.straggler_ratio, Some(1.5));
        assert!(opts.drop_capped_drafts);
        assert_eq!(opts.template, "t");
        assert_eq!(
            (opts.selection_policy.as_str(), opts.min_votes),
            ("vote", Some(4))
        );
        assert_eq!(opts.seed, None);
        assert_eq!(opts.thinking_max_tokens, None);
    }
}
