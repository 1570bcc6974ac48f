//! scot-trainer: LoRA training on scot's engine.
//!
//! - [`train_selection`]: `scot train selection`, the paper's selection adapter for a target model
//!   (LoRA on its last block), from `scot collect selection` data ([`scot_selection::SelectionExample`]).
//! - [`train_alignment`]: `scot train alignment`, the draft fitted on the target's chains (the
//!   paper's thinking-behaviour alignment), from `scot collect alignment` data
//!   ([`scot_selection::AlignmentExample`]).
//! - [`lora_run`]: what both share: the flags, the cached residual streams and the run (epochs,
//!   steps, checkpoints, held-out scores).
//! - [`selection_loss`]: the paper's loss (smallest cross-entropy over the correct options) and the
//!   choice it trains; [`next_token_loss`]: next-token cross-entropy for alignment.
//! - [`lora_params`]: the factors, their initialisation and the PEFT adapter folder they are saved as.
//! - [`residual_cache`]: each sequence's residual stream entering the last block, computed once.
//! - [`adamw`]: the optimiser, with its state open to [`checkpoint`], which lets a run resume.
//!
//! The model's lower blocks stay frozen and quantized; gradients flow only through the dense last
//! block (`scot_engine::TopBlock`), so a CPU trains the 1.5B target's selector in minutes once the
//! residual streams are cached (one prefill per example).

pub mod adamw;
pub mod checkpoint;
pub mod error;
pub mod lora_params;
pub mod lora_run;
pub mod next_token_loss;
pub mod residual_cache;
pub mod selection_loss;
pub mod train_alignment;
pub mod train_selection;

pub use error::TrainError;
pub use lora_run::LoraTrainingArgs;
pub use train_alignment::{run_train_alignment, AlignmentSummary, ChainScore, TrainAlignmentArgs};
pub use train_selection::{run_train_selection, SelectionScore, TrainSelectionArgs, TrainSummary};
