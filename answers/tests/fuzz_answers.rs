//! Answer extraction and equality on hostile text (drafts are model output, and a problem can steer
//! it): property tests that nothing panics and the time stays bounded, plus the deep-nesting and
//! long-list inputs that used to overflow the stack or run quadratically.

#[path = "../../engine/tests/fuzz/cases.rs"]
mod cases;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use scot_answers::{answers_equal, extract_answer, last_boxed, normalize, stated_answer};

/// Text built from the pieces the extractor and the evaluator look for.
fn mathy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            2 => any::<String>(),
            3 => prop::sample::select(vec![
                "\\boxed{", "\\fbox{", "{", "}", "(", ")", "[", "]", "\\frac{1}{2}", "\\sqrt{",
                "\\pi", "^", "!", "-", "+", "*", "/", ",", "=", "x", "\\pm", "\\in", "1", "23",
                "0.5", "1,000", "The final answer is ", "the answer is ", "$", "\\begin{pmatrix}",
                "\\end{pmatrix}", "&", "\\\\", "\\infty", "\\cup", "\\text{", " ", "\n",
            ])
            .prop_map(str::to_string),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(cases::config())]

    /// Extraction and normalisation take any text.
    #[test]
    fn extraction_takes_any_text(text in mathy()) {
        let _ = extract_answer(&text);
        let _ = stated_answer(&text);
        let _ = last_boxed(&text);
        let _ = normalize(&text);
    }

    /// Equality takes any two answers, and an answer equals itself unless it normalises to nothing.
    #[test]
    fn equality_takes_any_answers(a in mathy(), b in mathy()) {
        let _ = answers_equal(&a, &b);
        if !normalize(&a).is_empty() {
            prop_assert!(answers_equal(&a, &a), "{a:?}");
        }
    }

    /// A boxed integer after any text without a box of its own is what extraction returns.
    #[test]
    fn a_final_boxed_number_is_the_answer(prefix in "[^\\\\]{0,200}", n in -100_000i64..100_000) {
        let text = format!("{prefix} so \\boxed{{{n}}}");
        prop_assert_eq!(extract_answer(&text), Some(n.to_string()));
    }
}

/// Inputs a hostile draft could end with: deep nesting, long operator runs, long lists. Each is
/// answered (either way) quickly, on a small stack like a runtime worker's.
#[test]
fn deep_and_long_answers_are_bounded() {
    let deep_parens = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let deep_braces = format!("{}1{}", "{".repeat(100_000), "}".repeat(100_000));
    let minus_run = format!("{}1", "-".repeat(100_000));
    let long_list = (0..20_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let nested_frac = format!("{}1{}", "\\frac{1}{".repeat(20_000), "}".repeat(20_000));
    // The same shapes small enough to be normalised (16 KiB) and compared by value (1000 bytes):
    // the evaluator's own nesting bound is what keeps these off the stack's end.
    let parens_under_caps = format!("{}1{}", "(".repeat(450), ")".repeat(450));
    let minus_under_caps = format!("{}1", "-".repeat(900));
    let frac_under_caps = format!("{}1{}", "\\frac{1}{".repeat(90), "}".repeat(90));
    let braces_under_normalise_cap = format!("{}1{}", "{".repeat(8000), "}".repeat(8000));
    let list_under_normalise_cap = (0..3000)
        .map(|i| (i % 10).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let cases = [
        deep_parens,
        deep_braces,
        minus_run,
        long_list,
        nested_frac,
        parens_under_caps,
        minus_under_caps,
        frac_under_caps,
        braces_under_normalise_cap,
        list_under_normalise_cap,
    ];
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for text in &cases {
                let started = Instant::now();
                let boxed = format!("\\boxed{{{text}}}");
                let _ = extract_answer(&boxed);
                let _ = answers_equal(text, text);
                let _ = answers_equal(text, "1");
                let reversed: String = text.chars().rev().collect();
                let _ = answers_equal(text, &reversed);
                // A bound on a runaway (quadratic or worse) comparison, not a timing assertion.
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{} bytes took {:?}",
                    text.len(),
                    started.elapsed()
                );
            }
        })
        .unwrap();
    handle.join().expect("no stack overflow or panic");
}
