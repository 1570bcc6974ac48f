//! Token-level speculative decoding on real models: greedy output identical to plain decoding (the
//! default pair, and SmolLM drafting for itself), the cache left as plain decoding leaves it, stop
//! strings and context limits inside a round, a draft that runs out of context, tensor parallelism,
//! and drafts refused for another tokenizer.

mod common;

use std::sync::Arc;

use common::*;
use scot_engine::{
    CancelToken, EngineError, FinishReason, LoadOptions, Model, SamplingParams, SequenceOutput,
    Session, Speculator, StopCriteria,
};

fn stop(max_new_tokens: usize, stop_strings: &[&str]) -> StopCriteria {
    StopCriteria {
        max_new_tokens,
        stop_strings: stop_strings.iter().map(|s| s.to_string()).collect(),
        stop_at_eos: true,
    }
}

fn generate(
    session: &mut Session<'_>,
    sampling: &SamplingParams,
    stop: &StopCriteria,
) -> SequenceOutput {
    let mut streamed = Vec::new();
    let out = session
        .generate(
            sampling,
            stop,
            &mut |e| streamed.push(e.token),
            &CancelToken::new(),
        )
        .expect("generates");
    assert_eq!(
        streamed, out.tokens,
        "every token is streamed once, in order"
    );
    out
}

/// Plain and speculative runs of the same prompt, then the same continuation text and a second
/// generation: tokens, text, finish reason, cache length and final logits must all agree.
fn assert_same_as_plain(
    target: &Model,
    speculator: &Speculator,
    prompt: &[u32],
    first: &StopCriteria,
    then: &[u32],
) -> scot_engine::SpeculationStats {
    let greedy = SamplingParams::greedy();
    let second = stop(24, &[]);
    let mut plain = target.session().unwrap();
    plain.extend(prompt).unwrap();
    let plain_first = generate(&mut plain, &greedy, first);
    plain.extend(then).unwrap();
    let plain_second = generate(&mut plain, &greedy, &second);

    let mut spec = target.speculative_session(speculator).unwrap();
    spec.extend(prompt).unwrap();
    let spec_first = generate(&mut spec, &greedy, first);
    assert_eq!(
        spec_first.tokens,
        plain_first.tokens,
        "k={}",
        speculator.tokens()
    );
    assert_eq!(spec_first.text, plain_first.text);
    assert_eq!(spec_first.finish_reason, plain_first.finish_reason);
    spec.extend(then).unwrap();
    let spec_second = generate(&mut spec, &greedy, &second);
    assert_eq!(
        spec_second.tokens, plain_second.tokens,
        "continuing after a speculative run reads the same cache"
    );
    assert_eq!(spec.len(), plain.len());
    assert_eq!(
        spec.last_logits().unwrap(),
        plain.last_logits().unwrap(),
        "bit-identical logits"
    );
    spec.speculation().expect("the drafter is still there")
}

#[test]
fn greedy_speculation_with_the_default_pair_is_plain_greedy_decoding() {
    let _serial = serial();
    let target = load(TARGET);
    let draft = Arc::new(load(DRAFT));
    let tok = target.tokenizer();
    let prompt = tok
        .encode(
            &chatml("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May? Think step by step."),
            false,
        )
        .unwrap();
    let then = tok.encode("\nSo the final answer is", false).unwrap();
    for k in [1, 4, 7] {
        let speculator = Speculator::new(&target, draft.clone(), k).unwrap();
        let stats = assert_same_as_plain(&target, &speculator, &prompt, &stop(80, &[]), &then);
        eprintln!("k={k}: {stats:?}");
        assert!(stats.rounds > 0 && stats.accepted <= stats.proposed);
        assert!(
            stats.accepted > 0,
            "the 0.5B agrees with the 1.5B on some tokens: {stats:?}"
        );
        assert!(stats.accepted < stats.proposed, "and not on all: {stats:?}");
    }
    // A stop string that ends the run inside a round.
    let speculator = Speculator::new(&target, draft.clone(), 6).unwrap();
    assert_same_as_plain(&target, &speculator, &prompt, &stop(200, &["May"]), &then);
}

#[test]
fn a_model_drafting_for_itself_keeps_nearly_every_greedy_proposal() {
    let _serial = serial();
    let target = load(SMOL);
    let draft = Arc::new(load(SMOL));
    let prompt = target
        .tokenizer()
        .encode(
            &chatml("List three colours and say why you like them."),
            false,
        )
        .unwrap();
    let then = target.tokenizer().encode("\nIn short:", false).unwrap();
    let speculator = Speculator::new(&target, draft, 5).unwrap();
    let stats = assert_same_as_plain(&target, &speculator, &prompt, &stop(60, &[]), &then);
    // Not every one: the draft reads the prompt and each round's first tokens as one prefill,
    // whose logits differ from a single step's in the last bits, which can flip a near tie.
    let alpha = stats.acceptance_rate().unwrap();
    assert!(alpha >= 0.9, "{stats:?}");
    assert!(stats.proposed >= 50, "{stats:?}");
}

#[test]
fn context_limits_end_speculation_exactly_where_plain_decoding_ends() {
    let _serial = serial();
    let prompt_text = chatml("Count from one to one hundred in words.");
    let smol = model_path(SMOL);
    let capped = |context: usize| {
        Model::load(&LoadOptions {
            max_context: Some(context),
            ..LoadOptions::new(&smol)
        })
        .unwrap()
    };
    let target = capped(64);
    let prompt = target.tokenizer().encode(&prompt_text, false).unwrap();
    assert!(prompt.len() < 40, "prompt {} tokens", prompt.len());
    // The target's context ends mid-round; then a draft whose context ends before the target's.
    for draft_context in [64, prompt.len() + 7] {
        let speculator = Speculator::new(&target, Arc::new(capped(draft_context)), 4).unwrap();
        let greedy = SamplingParams::greedy();
        let to_the_end = StopCriteria {
            max_new_tokens: 1000,
            stop_strings: vec![],
            stop_at_eos: false,
        };
        let mut plain = target.session().unwrap();
        plain.extend(&prompt).unwrap();
        let expected = generate(&mut plain, &greedy, &to_the_end);
        let mut spec = target.speculative_session(&speculator).unwrap();
        spec.extend(&prompt).unwrap();
        let got = generate(&mut spec, &greedy, &to_the_end);
        assert_eq!(got.tokens, expected.tokens, "draft context {draft_context}");
        assert_eq!(got.finish_reason, FinishReason::Length);
        assert_eq!((spec.len(), plain.len()), (64, 64));
        let stats = spec
            .speculation()
            .expect("still reported after the draft is dropped");
        assert!(stats.rounds > 0, "{stats:?}");
    }
}

#[test]
fn tensor_parallel_targets_verify_like_single_steps() {
    let _serial = serial();
    let smol = model_path(SMOL);
    let target = Model::load(&LoadOptions {
        tensor_parallel: 3,
        ..LoadOptions::new(&smol)
    })
    .unwrap();
    let draft = Arc::new(load(SMOL));
    let prompt = target
        .tokenizer()
        .encode(&chatml("Why is the sky blue?"), false)
        .unwrap();
    let then = target.tokenizer().encode("\nOne sentence:", false).unwrap();
    let speculator = Speculator::new(&target, draft, 3).unwrap();
    assert_same_as_plain(&target, &speculator, &prompt, &stop(40, &[]), &then);
}

#[test]
fn sampled_speculation_is_reproducible_and_counts_its_rounds() {
    let _serial = serial();
    let target = load(SMOL);
    let draft = Arc::new(load(SMOL));
    let speculator = Speculator::new(&target, draft, 4).unwrap();
    let prompt = target
        .tokenizer()
        .encode(&chatml("Write a short poem about rain."), false)
        .unwrap();
    let sampling = SamplingParams::with_temperature(0.8, 11);
    let run = || {
        let mut s = target.speculative_session(&speculator).unwrap();
        s.extend(&prompt).unwrap();
        let out = generate(&mut s, &sampling, &stop(48, &[]));
        (out, s.speculation().unwrap(), s.len())
    };
    let (a, stats, len) = run();
    let (b, _, _) = run();
    assert_eq!(a.tokens, b.tokens, "same seed, same output");
    assert_eq!(len, prompt.len() + a.tokens.len());
    assert!(stats.rounds > 0 && stats.accepted <= stats.proposed);
    // The same model on both sides: p = q up to rounding, so nearly every proposal is kept.
    let alpha = stats.acceptance_rate().unwrap();
    assert!(alpha >= 0.9, "self-drafting keeps >= 90%: {stats:?}");
}

#[test]
fn a_draft_with_another_tokenizer_or_a_bad_k_is_refused() {
    let _serial = serial();
    let target = load(SMOL);
    let qwen = Arc::new(load(DRAFT));
    let err = Speculator::new(&target, qwen, 4).unwrap_err();
    assert!(matches!(err, EngineError::InvalidRequest(_)));
    assert!(err.to_string().contains("tokenizers differ"), "{err}");
    let smol = Arc::new(load(SMOL));
    for k in [0, scot_engine::MAX_SPECULATIVE_TOKENS + 1] {
        let err = Speculator::new(&target, smol.clone(), k).unwrap_err();
        assert!(err.to_string().contains("speculative tokens"), "{err}");
    }
}
