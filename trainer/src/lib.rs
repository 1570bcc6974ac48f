//! scot-trainer: LoRA training on scot's engine.
//!
//! - [`train_selection`]: `scot train selection`, the paper's selection adapter for a target model
//!   (LoRA on its last block), from `scot collect selection` data ([`scot_selection::SelectionExample`]).
//! - [`selection_loss`]: the paper's loss (smallest cross-entropy over the correct options) and the
//!   choice it trains.
//! - [`lora_params`]: the factors, their initialisation and the PEFT adapter folder they are saved as.
//! - [`residual_cache`]: each prompt's residual stream entering the last block, computed once.
//! - [`adamw`]: the optimiser, with its state open to [`checkpoint`], which lets a run resume.
//!
//! The model's lower blocks stay frozen and quantized; gradients flow only through the dense last
//! block (`scot_engine::TopBlock`), so a CPU trains the 1.5B target's selector in minutes once the
//! residual streams are cached (one prefill per example).

pub mod adamw;
pub mod checkpoint;
pub mod error;
pub mod lora_params;
pub mod residual_cache;
pub mod selection_loss;
pub mod train_selection;

pub use error::TrainError;
pub use train_selection::{run_train_selection, SelectionScore, TrainSelectionArgs, TrainSummary};
