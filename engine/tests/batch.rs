//! Batched drafting: one prefill forked into n = 5 sequences (seeds s..s+4, temperature 0.6) gives
//! exactly the sequences of five single-sequence runs with those seeds.

mod common;

use common::*;
use scot_engine::{BatchEvent, CancelToken, FinishReason, Model, SamplingParams, StopCriteria};

const N: u64 = 5;
const SEED: u64 = 1234;
const MAX_NEW: usize = 40;

fn check_batch_equals_single_runs(model: &Model, question: &str) {
    let prompt = model.tokenizer().encode(&chatml(question), false).unwrap();
    let params: Vec<SamplingParams> = (0..N)
        .map(|i| SamplingParams::with_temperature(0.6, SEED + i))
        .collect();
    let stop = StopCriteria {
        max_new_tokens: MAX_NEW,
        stop_strings: vec!["</think>".into()],
        stop_at_eos: true,
    };

    let mut prefills = 0;
    let mut streamed: Vec<Vec<u32>> = vec![Vec::new(); N as usize];
    let mut finished = vec![0; N as usize];
    let batched = model
        .generate_batch(
            &prompt,
            &params,
            &stop,
            &mut |ev| match ev {
                BatchEvent::Prefilled { prompt_tokens, .. } => {
                    assert_eq!(prompt_tokens, prompt.len());
                    prefills += 1;
                }
                BatchEvent::Token { seq, event } => {
                    assert_eq!(event.index, streamed[seq].len());
                    streamed[seq].push(event.token);
                }
                BatchEvent::Finished { seq, .. } => finished[seq] += 1,
            },
            &CancelToken::new(),
        )
        .unwrap();
    assert_eq!(prefills, 1, "the prompt is prefilled once");
    assert_eq!(finished, vec![1; N as usize], "each sequence finishes once");
    assert_eq!(batched.len(), N as usize);

    for (i, p) in params.iter().enumerate() {
        let mut session = model.session().unwrap();
        session.extend(&prompt).unwrap();
        let single = session
            .generate(p, &stop, &mut |_| {}, &CancelToken::new())
            .unwrap();
        assert_eq!(
            batched[i].tokens, streamed[i],
            "streamed tokens = returned tokens"
        );
        assert_eq!(
            batched[i].tokens, single.tokens,
            "sequence {i} (seed {}) differs from its single run",
            p.seed
        );
        assert_eq!(batched[i].text, single.text);
        assert_eq!(batched[i].finish_reason, single.finish_reason);
    }
    let distinct: std::collections::HashSet<_> = batched.iter().map(|o| o.tokens.clone()).collect();
    assert!(
        distinct.len() > 1,
        "different seeds should give different samples"
    );
    for o in &batched {
        assert!(matches!(
            o.finish_reason,
            FinishReason::Length | FinishReason::Eos | FinishReason::StopString(_)
        ));
    }
}

#[test]
fn batch_of_five_equals_single_runs_smollm2() {
    let _serial = serial();
    let model = load(SMOL);
    check_batch_equals_single_runs(
        &model,
        "Tell me a short story about a robot who learns to paint.",
    );
}

#[test]
fn batch_of_five_equals_single_runs_qwen2_draft() {
    let _serial = serial();
    let model = load(DRAFT);
    check_batch_equals_single_runs(&model, "Write a haiku about the sea, then explain it.");
}

#[test]
fn batch_cancel_finishes_every_sequence_as_cancelled() {
    let _serial = serial();
    let model = load(SMOL);
    let prompt = model
        .tokenizer()
        .encode(&chatml("Count from one to one hundred."), false)
        .unwrap();
    let params: Vec<SamplingParams> = (0..3)
        .map(|i| SamplingParams::with_temperature(0.6, i))
        .collect();
    let cancel = CancelToken::new();
    let stop = StopCriteria {
        max_new_tokens: 200,
        stop_strings: vec![],
        stop_at_eos: false,
    };
    let mut tokens_seen = 0;
    let out = model
        .generate_batch(
            &prompt,
            &params,
            &stop,
            &mut |ev| {
                if let BatchEvent::Token { .. } = ev {
                    tokens_seen += 1;
                    if tokens_seen == 6 {
                        cancel.cancel();
                    }
                }
            },
            &cancel,
        )
        .unwrap();
    assert_eq!(out.len(), 3);
    for o in &out {
        assert_eq!(o.finish_reason, FinishReason::Cancelled);
        assert_eq!(o.tokens.len(), 2, "cancel is seen at the next step");
    }
}

#[test]
fn batch_cancelled_before_decoding_returns_empty_cancelled_outputs() {
    let _serial = serial();
    let model = load(SMOL);
    let cancel = CancelToken::new();
    cancel.cancel();
    let mut finished = 0;
    let out = model
        .generate_batch(
            &[1, 2, 3],
            &[SamplingParams::greedy(), SamplingParams::greedy()],
            &StopCriteria::default(),
            &mut |ev| {
                if let BatchEvent::Finished { .. } = ev {
                    finished += 1
                }
            },
            &cancel,
        )
        .unwrap();
    assert_eq!(finished, 2);
    assert!(out
        .iter()
        .all(|o| o.finish_reason == FinishReason::Cancelled && o.tokens.is_empty()));
}
