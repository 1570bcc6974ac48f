//! Grading of math answers: final-answer extraction, normalisation and equivalence.
//!
//! `is_correct(model_output, gold)` is the one call most users need: it extracts the prediction
//! from the whole model output (last `\boxed{}`, "final answer is", last number) and compares it with
//! the raw gold answer of the data sets in `shared/data`.

mod equal;
mod expression;
mod extract;
mod normalize;

pub use equal::{answers_equal, RELATIVE_TOLERANCE};
pub use extract::{extract_answer, last_boxed, last_number};
pub use normalize::normalize;

/// Whether `model_output` (the full text the model wrote) ends in the `gold` answer.
pub fn is_correct(model_output: &str, gold: &str) -> bool {
    extract_answer(model_output).is_some_and(|prediction| answers_equal(&prediction, gold))
}
