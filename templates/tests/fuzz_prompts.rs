//! Property-based fuzzing (proptest, stable Rust) of prompt rendering: for any problem and drafts the
//! prompts render, and their untrusted ranges are exactly the problem and the drafts (trimmed, with
//! the two reserved marker characters dropped), so the tokenizer can never read them as markup.
//! `PROPTEST_CASES` sets the number of cases (64 by default; SECURITY.md records a longer run).

#[path = "../../engine/tests/fuzz/cases.rs"]
mod cases;
use cases::config;

use proptest::prelude::*;
use scot_templates::{PlainChat, Prompts, TemplateSet, ThinkMarkers};

/// Text with markup and the reserved marks in it more often than chance would put them there.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<String>(),
            1 => prop::sample::select(vec![
                "<|im_start|>", "<|im_end|>", "</think>", "\u{FDD0}", "\u{FDD1}", "{{ x }}", "{% if %}",
                "  ", "\n",
            ]).prop_map(str::to_string),
        ],
        0..10,
    )
    .prop_map(|parts| parts.concat())
}

/// What an untrusted range holds for `input`: trimmed, marks dropped (empty: no range).
fn expected(input: &str) -> Option<String> {
    let core: String = input
        .trim()
        .chars()
        .filter(|&c| c != '\u{FDD0}' && c != '\u{FDD1}')
        .collect();
    (!input.trim().is_empty() && !core.is_empty()).then_some(core)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_prompts_keep_untrusted_ranges_exact(
        problem in text(),
        drafts in prop::collection::vec(text(), 1..5),
        native in any::<bool>(),
    ) {
        let set = TemplateSet::builtin();
        let prompts = Prompts::new(&set, &PlainChat, native, ThinkMarkers::default());
        let problem_part: Vec<String> = expected(&problem).into_iter().collect();

        let draft = prompts.draft_prompt(&problem).unwrap();
        prop_assert_eq!(draft.untrusted_parts().collect::<Vec<_>>(), problem_part.clone());

        let select = prompts.select_prompt(&problem, &drafts).unwrap();
        let mut parts = problem_part.clone();
        parts.extend(drafts.iter().filter_map(|d| expected(d)));
        prop_assert_eq!(select.untrusted_parts().collect::<Vec<_>>(), parts);

        let answer = prompts.answer_after_draft(&problem, &drafts[0]).unwrap();
        let mut parts = problem_part;
        parts.extend(expected(drafts[0].trim_end()));
        prop_assert_eq!(answer.untrusted_parts().collect::<Vec<_>>(), parts);

        // Ranges are sorted, disjoint and on character boundaries.
        let mut end = 0;
        for r in select.untrusted() {
            prop_assert!(r.start >= end && r.end > r.start);
            prop_assert!(select.text().is_char_boundary(r.start) && select.text().is_char_boundary(r.end));
            end = r.end;
        }
    }
}
