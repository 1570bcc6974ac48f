//! scot-answers: the final answer of a piece of math text, and whether two answers are the same.
//!
//! One home for the grader's rules, used by `scot eval` (grading against the gold answer) and by the
//! coordinator (each draft's answer, and which drafts agree):
//! - [`extract_answer`]: the last `\boxed{}`, else "final answer is" / "the answer is", else the last
//!   number; [`stated_answer`] is the same without the last-number fallback.
//! - [`answers_equal`]: equivalence after [`normalize`] (numbers within [`RELATIVE_TOLERANCE`],
//!   fractions, simple expressions evaluated at fixed points).
//! - [`is_correct`]: both in one call.

mod equal;
mod expression;
mod extract;
mod normalize;

pub use equal::{answers_equal, RELATIVE_TOLERANCE};
pub use extract::{extract_answer, last_boxed, last_number, stated_answer};
pub use normalize::normalize;

/// Whether `model_output` (the full text the model wrote) ends in the `gold` answer.
pub fn is_correct(model_output: &str, gold: &str) -> bool {
    extract_answer(model_output).is_some_and(|prediction| answers_equal(&prediction, gold))
}
