//! PEFT LoRA adapters on GGUF models, applied at run time beside the quantized weights
//! (y = W x + s B A x): the logits match the adapter merged by hand into the dequantized weights
//! within the error dequantization itself makes, batched decoding stays equal to single runs, and an
//! adapter for another model is refused before anything is attached.
//!
//! Stated bounds: on a copy whose adapted weights are f32 (dequantized), run-time LoRA and the hand
//! merge agree within 1e-3 in every logit (f32 summation order only). On the quantized file itself,
//! the run-time logits may differ from the hand merge by at most twice what the quantized and f32
//! files differ by without the adapter (the quantized kernels round activations), plus 1e-3.

mod common;

use std::path::{Path, PathBuf};

use common::gguf::{arch, last_logits, modules, write_adapter, write_f32_copy, Gguf, F32};
use common::{max_abs_diff, model_path, serial, DRAFT, SMOL};
use scot_engine::{CancelToken, EngineError, LoadOptions, Model, SamplingParams, StopCriteria};

const PROMPT: &[u32] = &[1, 504, 2365, 6354, 16438, 27003, 690, 260];

fn logits(path: &Path, lora: Option<&Path>) -> Vec<f32> {
    last_logits(path, lora, 1, PROMPT)
}

/// The adapter on every module kind of the first and last layer, with its f32 copies.
struct Case {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    adapter: PathBuf,
    /// Copy with `which` tensors in f32, no adapter.
    dequantized: PathBuf,
    /// The same with the adapter merged by hand.
    merged: PathBuf,
}

fn case(file: &str, llama: bool, which: F32) -> Case {
    let src = model_path(file);
    let tmp = tempfile::tempdir().unwrap();
    let gguf = Gguf::open(&src);
    let last = gguf.uint(&format!("{}.block_count", arch(llama))) - 1;
    let modules = modules(&gguf, &[0, last]);
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &modules);
    let dequantized = tmp.path().join("dequantized.gguf");
    let merged = tmp.path().join("merged.gguf");
    write_f32_copy(&src, &modules, false, llama, which, &dequantized);
    write_f32_copy(&src, &modules, true, llama, which, &merged);
    Case {
        _tmp: tmp,
        src,
        adapter,
        dequantized,
        merged,
    }
}

/// On dequantized (f32) weights, run-time LoRA is the hand merge up to f32 summation order.
/// SmolLM2 is a Llama GGUF: q/k rows were permuted by the converter, and so must B's be.
#[test]
fn run_time_lora_on_dequantized_weights_equals_the_hand_merge() {
    let _serial = serial();
    let c = case(SMOL, true, F32::All);
    let run_time = logits(&c.dequantized, Some(&c.adapter));
    let merged = logits(&c.merged, None);
    let base = logits(&c.dequantized, None);
    let diff = max_abs_diff(&run_time, &merged);
    let effect = max_abs_diff(&base, &run_time);
    eprintln!("f32 weights: run-time vs hand merge {diff}, adapter effect {effect}");
    assert!(
        diff <= 1e-3,
        "run-time LoRA differs from the hand merge by {diff}"
    );
    assert!(effect > 0.1, "the adapter had no clear effect ({effect})");
}

/// On the quantized file itself the run-time term adds no error beyond the quantized kernels' own
/// (they round activations, so tiny differences can flip a rounding in a later layer).
fn check_quantized_within_kernel_rounding(file: &str, llama: bool) {
    let _serial = serial();
    let c = case(file, llama, F32::Adapted);
    let base = logits(&c.src, None);
    let base_f32 = logits(&c.dequantized, None);
    let run_time = logits(&c.src, Some(&c.adapter));
    let merged = logits(&c.merged, None);
    let rounding = max_abs_diff(&base, &base_f32);
    let diff = max_abs_diff(&run_time, &merged);
    let effect = max_abs_diff(&base, &run_time);
    eprintln!("{file}: run-time vs hand merge {diff}, rounding {rounding}, effect {effect}");
    assert!(
        diff <= 2.0 * rounding + 1e-3,
        "{file}: run-time LoRA differs from the hand merge by {diff} (rounding alone: {rounding})"
    );
    assert!(
        effect > 0.1,
        "{file}: the adapter had no clear effect ({effect})"
    );
}

#[test]
fn run_time_lora_on_quantized_weights_llama() {
    check_quantized_within_kernel_rounding(SMOL, true);
}

#[test]
fn run_time_lora_on_quantized_weights_qwen2() {
    check_quantized_within_kernel_rounding(DRAFT, false);
}

/// With the adapter, sequences decoding in one batch are token for token the single runs.
#[test]
fn batched_decoding_with_an_adapter_equals_single_runs() {
    let _serial = serial();
    let src = model_path(SMOL);
    let tmp = tempfile::tempdir().unwrap();
    let gguf = Gguf::open(&src);
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &modules(&gguf, &[0, 5]));
    let model = Model::load(&LoadOptions {
        lora: Some(adapter),
        ..LoadOptions::new(&src)
    })
    .unwrap();
    let stop = StopCriteria {
        max_new_tokens: 24,
        stop_strings: Vec::new(),
        stop_at_eos: false,
    };
    let cancel = CancelToken::new();
    let sampling: Vec<SamplingParams> = (0..4)
        .map(|i| SamplingParams::with_temperature(0.8, 40 + i))
        .collect();
    let batch = model
        .generate_batch(PROMPT, &sampling, &stop, &mut |_| {}, &cancel)
        .unwrap();
    for (params, out) in sampling.iter().zip(&batch) {
        let mut session = model.session().unwrap();
        session.extend(PROMPT).unwrap();
        let alone = session
            .generate(params, &stop, &mut |_| {}, &cancel)
            .unwrap();
        assert_eq!(out.tokens, alone.tokens, "seed {}", params.seed);
    }
}

/// An adapter for another model (other hidden size) is refused, naming the adapter and the shape.
#[test]
fn an_adapter_for_another_gguf_model_is_refused() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let smol = Gguf::open(&model_path(SMOL));
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &modules(&smol, &[0]));
    let Err(err) = Model::load(&LoadOptions {
        lora: Some(adapter.clone()),
        ..LoadOptions::new(model_path(DRAFT))
    }) else {
        panic!("an adapter made for SmolLM2 must not load into the Qwen2 0.5B");
    };
    assert!(matches!(err, EngineError::Lora { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&adapter.display().to_string()), "{msg}");
    assert!(msg.contains("shape"), "{msg}");

    // A layer the model does not have.
    let deep = tmp.path().join("deep");
    let mut far = modules(&smol, &[0]);
    for m in &mut far {
        m.hf = m.hf.replace("layers.0.", "layers.99.");
    }
    write_adapter(&deep, &far);
    let Err(err) = Model::load(&LoadOptions {
        lora: Some(deep),
        ..LoadOptions::new(model_path(SMOL))
    }) else {
        panic!("an adapter for layer 99 must be refused");
    };
    assert!(err.to_string().contains("model.layers.99."), "{err}");
}
