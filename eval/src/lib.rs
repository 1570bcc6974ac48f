//! scot-eval: the evaluation harness behind `scot eval`, `scot report`, `scot calibrate` and
//! `scot collect`.
//!
//! Mounting in the `scot` binary (src/main.rs):
//! - `scot eval`: flatten [`EvalArgs`] (a `clap::Args`) into the subcommand and call
//!   `scot_eval::run_eval(args).await` → [`EvalSummary`] (serde-serialisable, print it as JSON).
//! - `scot report`: [`ReportArgs`] and `scot_eval::run_report(args)` (sync) → [`ReportSummary`].
//!
//! Modules:
//! - grading is `scot_answers` (`is_correct`, `extract_answer`, `answers_equal`), shared with the
//!   coordinator's vote.
//! - [`dataset`]: JSONL data sets (`id`, `problem`, `answer`).
//! - [`runner`]: one problem through the coordinator (the client is `scot_client`) and its grading.
//! - [`results`]: the append-only, resumable result file.
//! - [`report`]: `scot report`'s markdown and plots from result files; [`mode_stats`] its per-mode
//!   tables, [`plots`] its PNGs, [`stats`] the mean and percentiles.
//! - [`replay`]: `scot report --replay`, stored problems re-decided under selection policies.
//! - [`calibrate`]: `scot calibrate`, the target's selection prior from cyclic orders of drafts.
//! - [`collect_selection`]: `scot collect selection`, selection training data (drafts, labels, the
//!   prompt as the target node renders it); [`collect_alignment`]: `scot collect alignment`, the
//!   target's chains for the draft to learn; [`training_file`] the resumable file both append to;
//!   [`node_calls`] the direct node calls they and `scot calibrate` use.
//! - [`cost_model`]: predicted SCoT speed-up from per-token costs (see docs/cost-model.md).
//! - [`cost_check`]: that prediction against a measured run (`scot report --costs`).

pub mod calibrate;
pub mod cli;
pub mod collect_alignment;
pub mod collect_selection;
pub mod cost_check;
pub mod cost_model;
pub mod dataset;
pub mod error;
pub mod mode_stats;
pub mod node_calls;
pub mod plots;
pub mod replay;
pub mod report;
pub mod results;
pub mod runner;
pub mod stats;
pub mod training_file;

pub use calibrate::{run_calibrate, CalibrateArgs, CalibrateSummary};
pub use cli::{run_eval, run_report, EvalArgs, EvalSummary, ReportArgs};
pub use collect_alignment::{run_collect_alignment, CollectAlignmentArgs, CollectAlignmentSummary};
pub use collect_selection::{run_collect_selection, CollectSelectionArgs, CollectSummary};
pub use error::EvalError;
pub use report::ReportSummary;
