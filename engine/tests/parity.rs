//! Parity with candle-transformers' reference decoders (quantized_qwen2 / quantized_llama) on the same
//! GGUF files: last-position logits within a stated bound and identical greedy continuations.
//!
//! Bounds: with the file's own kernels the engine performs the reference's arithmetic in the same
//! order, so logits are bit-identical (measured max |diff| = 0 on both models); the asserted bound is
//! 1e-3. Any reordering of f32 sums (e.g. Q5_0 weights stored as Q8_0, or another prefill chunking)
//! can flip 8-bit activation quantization steps, and these add up to O(0.1-1) logit differences
//! (the reference itself differs by 0.68 between two chunkings of one prompt on smollm2); that mode
//! is held to 1.0 and to identical greedy tokens.

mod common;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use common::*;
use scot_engine::{CancelToken, LoadOptions, Model, SamplingParams, StopCriteria};

const LOGIT_BOUND: f32 = 1e-3;
/// With Q5_0 weights stored as Q8_0 (same values, SIMD summation order) rounding differences can
/// flip 8-bit activation quantization steps, which add up over layers (see tests/session.rs):
/// measured 0.34 on the 0.5B, greedy tokens still identical.
const TRANSCODED_BOUND: f32 = 1.0;
const GREEDY_TOKENS: usize = 32;

trait Reference {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Vec<f32>;
}

struct Qwen2Ref(candle_transformers::models::quantized_qwen2::ModelWeights);
impl Reference for Qwen2Ref {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Vec<f32> {
        let x = Tensor::new(tokens, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        self.0
            .forward(&x, pos)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }
}

struct LlamaRef(candle_transformers::models::quantized_llama::ModelWeights);
impl Reference for LlamaRef {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Vec<f32> {
        let x = Tensor::new(tokens, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        self.0
            .forward(&x, pos)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }
}

/// The reference's last-position logits for `tokens` and its greedy continuation.
fn reference_run(reference: &mut dyn Reference, tokens: &[u32]) -> (Vec<f32>, Vec<u32>) {
    let first = reference.forward(tokens, 0);
    let mut expected = Vec::new();
    let mut logits = first.clone();
    for pos in tokens.len()..tokens.len() + GREEDY_TOKENS {
        let next = argmax(&logits);
        expected.push(next);
        logits = reference.forward(&[next], pos);
    }
    (first, expected)
}

fn prompt_tokens(file: &str) -> Vec<u32> {
    let model = load(file);
    let prompt = chatml(
        "Write a Python function that returns the sum of the squares of a list of integers.",
    );
    let tokens = model.tokenizer().encode(&prompt, false).unwrap();
    assert!(
        tokens.len() > 20,
        "prompt tokenized to {} tokens",
        tokens.len()
    );
    tokens
}

fn check_parity(
    file: &str,
    tokens: &[u32],
    (theirs, expected): &(Vec<f32>, Vec<u32>),
    q5_0_as_q8_0: bool,
    bound: f32,
) {
    let model = Model::load(&LoadOptions {
        q5_0_as_q8_0,
        ..LoadOptions::new(model_path(file))
    })
    .unwrap();
    let mut session = model.session().unwrap();
    session.extend(tokens).unwrap();
    let ours = session.last_logits().unwrap();
    let diff = max_abs_diff(&ours, theirs);
    eprintln!(
        "{file} (q5_0_as_q8_0 {q5_0_as_q8_0}): prompt {} tokens, max |logit diff| = {diff:e}",
        tokens.len()
    );
    assert!(
        diff < bound,
        "{file}: max |logit diff| {diff} exceeds {bound}"
    );

    let stop = StopCriteria {
        max_new_tokens: GREEDY_TOKENS,
        stop_strings: vec![],
        stop_at_eos: false,
    };
    let out = session
        .generate(
            &SamplingParams::greedy(),
            &stop,
            &mut |_| {},
            &CancelToken::new(),
        )
        .unwrap();
    eprintln!("{file}: greedy text {:?}", out.text);
    assert_eq!(
        &out.tokens, expected,
        "{file}: greedy tokens differ from the reference"
    );
}

fn open(file: &str) -> (gguf_file::Content, std::fs::File) {
    let mut f = std::fs::File::open(model_path(file)).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    (content, f)
}

#[test]
fn parity_qwen2_draft_gguf_matches_candle_quantized_qwen2() {
    let _serial = serial();
    let tokens = prompt_tokens(DRAFT);
    let (content, mut f) = open(DRAFT);
    let mut reference = Qwen2Ref(
        candle_transformers::models::quantized_qwen2::ModelWeights::from_gguf(
            content,
            &mut f,
            &Device::Cpu,
        )
        .unwrap(),
    );
    let run = reference_run(&mut reference, &tokens);
    drop(reference);
    // The file's own Q5_0 kernels: bit-identical.
    check_parity(DRAFT, &tokens, &run, false, LOGIT_BOUND);
    // Default load: Q5_0 stored as Q8_0 (same values, other summation order).
    check_parity(DRAFT, &tokens, &run, true, TRANSCODED_BOUND);
}

#[test]
fn parity_llama_smollm2_gguf_matches_candle_quantized_llama() {
    let _serial = serial();
    let tokens = prompt_tokens(SMOL);
    let (content, mut f) = open(SMOL);
    let mut reference = LlamaRef(
        candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
            content,
            &mut f,
            &Device::Cpu,
        )
        .unwrap(),
    );
    let run = reference_run(&mut reference, &tokens);
    check_parity(SMOL, &tokens, &run, true, LOGIT_BOUND);
}
