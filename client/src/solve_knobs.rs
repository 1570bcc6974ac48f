//! The mode and the per-request SCoT knobs as command-line flags, shared by `scot run`/`scot solve`
//! and `scot eval` so all spell, document and map them the same way. Unset flags leave the
//! coordinator's defaults in place (the paper's, [`scot_proto::paper_defaults`], unless it is
//! configured otherwise); the seed and the deadline are each caller's own.

use std::fmt::Display;

use scot_proto::limits::DEFAULT_THINK_END;
use scot_proto::paper_defaults as paper;
use scot_proto::SolveOptions;

use crate::Mode;

/// A knob's help text naming the coordinator's default value.
fn server_default(what: &str, value: impl Display) -> String {
    format!("{what} (server default {value})")
}

#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct SolveKnobs {
    /// scot (drafts + selection), target-only or draft-only.
    #[arg(long, value_enum, default_value_t = Mode::default())]
    pub mode: Mode,
    #[arg(long, help = server_default("Number of drafts", paper::N))]
    pub n: Option<u32>,
    #[arg(long, help = server_default("Draft sampling temperature", paper::DRAFT_TEMPERATURE))]
    pub draft_temperature: Option<f32>,
    #[arg(long)]
    pub draft_top_p: Option<f32>,
    #[arg(long)]
    pub draft_top_k: Option<u32>,
    #[arg(long, help = server_default("Draft token cap", paper::DRAFT_MAX_TOKENS))]
    pub draft_max_tokens: Option<u32>,
    #[arg(long, help = server_default("Cap of the target's own thinking", paper::THINKING_MAX_TOKENS))]
    pub thinking_max_tokens: Option<u32>,
    #[arg(long, help = server_default("Answer token cap", paper::ANSWER_MAX_TOKENS))]
    pub answer_max_tokens: Option<u32>,
    #[arg(long, help = server_default("End-of-thinking marker", format!("`{DEFAULT_THINK_END}`")))]
    pub think_end: Option<String>,
    /// How drafts are judged: paper, debiased, vote or hybrid (server default: the coordinator's
    /// --default-selection-policy).
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
    /// The request options these flags ask for, with the caller's sampling seed.
    pub fn options(&self, seed: Option<u64>) -> SolveOptions {
        SolveOptions {
            mode: self.mode.proto() as i32,
            seed,
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
    use clap::{CommandFactory, Parser};
    use scot_proto::SolveMode;

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
            "--mode",
            "target-only",
            "--n",
            "3",
            "--draft-temperature",
            "0.9",
            "--draft-top-p",
            "0.95",
            "--draft-top-k",
            "40",
            "--draft-max-tokens",
            "100",
            "--thinking-max-tokens",
            "200",
            "--answer-max-tokens",
            "50",
            "--think-end",
            "</reason>",
            "--selection-policy",
            "vote",
            "--min-votes",
            "4",
            "--accept-threshold",
            "0.3",
            "--select-permutations",
            "2",
            "--select-after-k",
            "2",
            "--straggler-ratio",
            "1.5",
            "--drop-capped-drafts",
            "--template",
            "t",
        ]);
        let opts = cli.knobs.options(Some(7));
        let expected = SolveOptions {
            mode: SolveMode::TargetOnly as i32,
            seed: Some(7),
            n: Some(3),
            draft_temperature: Some(0.9),
            draft_top_p: Some(0.95),
            draft_top_k: Some(40),
            draft_max_tokens: Some(100),
            thinking_max_tokens: Some(200),
            answer_max_tokens: Some(50),
            think_end: Some("</reason>".into()),
            selection_policy: "vote".into(),
            min_votes: Some(4),
            accept_threshold: Some(0.3),
            select_permutations: Some(2),
            select_after_k: Some(2),
            straggler_ratio: Some(1.5),
            drop_capped_drafts: true,
            template: "t".into(),
            ..SolveOptions::default()
        };
        assert_eq!(opts, expected);
    }

    #[test]
    fn unset_flags_leave_the_servers_defaults() {
        let knobs = Cli::parse_from(["x"]).knobs;
        assert_eq!(knobs, SolveKnobs::default());
        let opts = knobs.options(None);
        assert_eq!(
            opts,
            SolveOptions {
                mode: SolveMode::Scot as i32,
                ..SolveOptions::default()
            }
        );
    }

    #[test]
    fn help_names_the_paper_defaults() {
        let help = Cli::command().render_help().to_string();
        for text in [
            format!("Number of drafts (server default {})", paper::N),
            format!("(server default {})", paper::DRAFT_TEMPERATURE),
            format!("(server default {})", paper::THINKING_MAX_TOKENS),
            format!("(server default `{DEFAULT_THINK_END}`)"),
            "[possible values: scot, target-only, draft-only]".to_string(),
        ] {
            assert!(help.contains(&text), "{text:?} missing from\n{help}");
        }
    }
}
