//! scot-eval: grading of math answers and the evaluation harness behind `scot eval`.
//!
//! - [`grading`]: `is_correct(model_output, gold)`, `extract_answer`, `normalize`, `answers_equal`.

pub mod grading;
