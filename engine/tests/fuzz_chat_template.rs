//! Property-based fuzzing (proptest, stable Rust) of chat-template rendering and prompt tokenizing:
//! random template sources always compile-or-fail and render-or-fail within the fuel budget; the
//! models' own templates render any message text verbatim; any untrusted ranges tokenize back to the
//! same text with no special token taken from them. `PROPTEST_CASES` sets the number of cases (64
//! by default; SECURITY.md records a longer run).

mod common;

#[path = "fuzz/cases.rs"]
mod cases;
use cases::config;

use std::sync::OnceLock;

use candle_core::quantized::gguf_file;
use common::{model_path, DRAFT, SMOL};
use proptest::prelude::*;
use scot_engine::{ChatMessage, ChatTemplate, TextTokenizer};

fn gguf(file: &str) -> &'static gguf_file::Content {
    static QWEN: OnceLock<gguf_file::Content> = OnceLock::new();
    static SMOLLM: OnceLock<gguf_file::Content> = OnceLock::new();
    let cell = if file == DRAFT { &QWEN } else { &SMOLLM };
    cell.get_or_init(|| {
        let mut f = std::fs::File::open(model_path(file)).unwrap();
        gguf_file::Content::read(&mut f).unwrap()
    })
}

fn smol_tokenizer() -> &'static TextTokenizer {
    static TOK: OnceLock<TextTokenizer> = OnceLock::new();
    TOK.get_or_init(|| TextTokenizer::from_gguf(gguf(SMOL), &model_path(SMOL)).unwrap())
}

/// Pieces of Jinja, some of them expensive, to be strung together at random.
const FRAGMENTS: &[&str] = &[
    "{% for a in range(100000) %}",
    "{% for b in range(1000) %}",
    "{% endfor %}",
    "{% for m in messages %}{{ m.role }}:{{ m.content }}{% endfor %}",
    "{{ messages[0].content }}",
    "{{ messages[5].content }}",
    "{{ 'ab' * 1000 }}",
    "{{ 'x' * 10000000 }}",
    "{% if add_generation_prompt %}",
    "{% endif %}",
    "{% set s = 'x' %}",
    "{% set s = s ~ s ~ s %}",
    "{{ s }}",
    "{{ bos_token }}{{ eos_token }}",
    "{{ raise_exception('no') }}",
    "{{ messages | tojson }}",
    "{{ messages[0].content.split('a') | join('|') }}",
    "{{ range(100000) | list | length }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "text ",
    "{{ ",
    "}}",
];

fn message() -> impl Strategy<Value = ChatMessage> {
    (
        prop::sample::select(vec!["system", "user", "assistant"]),
        any::<String>(),
    )
        .prop_map(|(role, content)| ChatMessage::new(role, content))
}

/// Text with chat markup in it more often than chance would put it there.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<String>(),
            1 => prop::sample::select(vec![
                "<|im_start|>", "<|im_end|>", "<|endoftext|>", "</think>", "<think>", "\n", " ",
            ]).prop_map(str::to_string),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config())]

    /// A random template compiles or is refused, and renders or fails, without panicking or
    /// running past its fuel.
    #[test]
    fn fuzz_random_templates_terminate(
        parts in prop::collection::vec(prop::sample::select(FRAGMENTS.to_vec()), 1..10),
        messages in prop::collection::vec(message(), 0..4),
        generation in any::<bool>(),
    ) {
        let source = parts.concat();
        if let Ok(template) = ChatTemplate::new(source, Some("<s>".into()), None) {
            let _ = template.render(&messages, generation);
        }
    }

    /// The models' own templates render any conversation, keeping each user message verbatim.
    #[test]
    fn fuzz_model_templates_render_any_text(
        user in any::<String>(),
        assistant in any::<String>(),
        use_qwen in any::<bool>(),
    ) {
        let file = if use_qwen { DRAFT } else { SMOL };
        let template = ChatTemplate::from_gguf(gguf(file), &model_path(file))
            .unwrap()
            .expect("the model has a chat template");
        let messages = [ChatMessage::new("user", user.clone()), ChatMessage::new("assistant", assistant)];
        let out = template.render(&messages, false).unwrap();
        prop_assert!(out.contains(&user));
        let out = template.render(&messages[..1], true).unwrap();
        prop_assert!(out.contains(&user));
    }

    /// Any text with any untrusted ranges decodes back to itself, and its special tokens are at most
    /// the markup outside those ranges.
    #[test]
    fn fuzz_untrusted_ranges_tokenize_as_text(
        parts in prop::collection::vec((text(), any::<bool>()), 0..6),
    ) {
        let tok = smol_tokenizer();
        let mut prompt = String::new();
        let mut untrusted = Vec::new();
        let mut trusted_markup = 0;
        for (part, is_untrusted) in &parts {
            let start = prompt.len();
            prompt.push_str(part);
            if *is_untrusted {
                untrusted.push(start..prompt.len());
            } else {
                trusted_markup += ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
                    .iter()
                    .map(|t| part.matches(t).count())
                    .sum::<usize>();
            }
        }
        let ids = tok.encode_with_untrusted(&prompt, &untrusted).unwrap();
        prop_assert_eq!(tok.decode(&ids, false).unwrap(), prompt);
        let specials = ids.iter().filter(|&&id| tok.is_special(id)).count();
        prop_assert!(specials <= trusted_markup, "{} special tokens, {} in trusted text", specials, trusted_markup);
    }
}
