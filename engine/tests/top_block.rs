//! The dense, differentiable last block a LoRA trainer fits (`TopBlock`): its logits equal the
//! engine's (with and without an adapter) where both compute in f32, and its gradients with respect
//! to the LoRA factors equal finite differences (in f64).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use common::gguf::{
    arch, last_logits, modules, write_adapter, write_f32_copy, Gguf, Module, ALPHA, F32, R,
};
use common::{max_abs_diff, model_path, serial, write_tiny_model, TinyArch, SMOL};
use scot_engine::{LoadOptions, LoraTerms, Model};

const PROMPT: &[u32] = &[1, 504, 2365, 6354, 16438, 27003, 690, 260, 33, 41];
const CANDIDATES: &[u32] = &[28, 29, 30, 31, 260, 504];

fn terms(modules: &[Module], dtype: DType) -> LoraTerms {
    let mut terms = BTreeMap::new();
    for m in modules {
        let name = m.hf.rsplit('.').next().unwrap().to_string();
        let a = Tensor::from_vec(m.a.clone(), (R, m.in_dim), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(m.b.clone(), (m.out_dim, R), &Device::Cpu).unwrap();
        terms.insert(
            name,
            (a.to_dtype(dtype).unwrap(), b.to_dtype(dtype).unwrap()),
        );
    }
    LoraTerms {
        scale: ALPHA / R as f64,
        terms,
    }
}

fn engine_logits(path: &Path, adapter: Option<&Path>) -> Vec<f32> {
    let all = last_logits(path, adapter, 1, PROMPT);
    CANDIDATES.iter().map(|&t| all[t as usize]).collect()
}

fn block_logits(path: &Path, lora: &LoraTerms) -> Vec<f32> {
    let model = Model::load(&LoadOptions::new(path)).unwrap();
    let block = model.top_block(CANDIDATES).unwrap();
    let x = model.residual_stream_before_top(PROMPT).unwrap();
    block.last_logits(&x, lora).unwrap().to_vec1().unwrap()
}

/// The last block's modules of a tiny HF model as adapter modules (random factors).
fn tiny_modules(model: &common::TinyModel) -> Vec<Module> {
    let layer = model.layers - 1;
    common::gguf::KINDS
        .iter()
        .enumerate()
        .map(|(i, (hf, _))| {
            let name = format!("model.layers.{layer}.{hf}");
            let (out_dim, in_dim) = model.weights[&format!("{name}.weight")].dims2().unwrap();
            Module {
                hf: name,
                gguf: String::new(),
                out_dim,
                in_dim,
                a: common::gguf::pseudo_random(R * in_dim, 300 + i as u64, 0.2),
                b: common::gguf::pseudo_random(out_dim * R, 400 + i as u64, 0.2),
            }
        })
        .collect()
}

/// A Llama GGUF (interleaved RoPE, permuted q/k rows) stored in f32, adapter at run time in the
/// engine: the block gives the engine's logits.
#[test]
fn top_block_equals_the_engine_on_a_gguf_llama() {
    let _serial = serial();
    let src = model_path(SMOL);
    let tmp = tempfile::tempdir().unwrap();
    let gguf = Gguf::open(&src);
    let last = gguf.uint(&format!("{}.block_count", arch(true))) - 1;
    let adapted = modules(&gguf, &[last]);
    let f32_copy = tmp.path().join("f32.gguf");
    write_f32_copy(&src, &adapted, false, true, F32::All, &f32_copy);
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &adapted);

    let plain = max_abs_diff(
        &engine_logits(&f32_copy, None),
        &block_logits(&f32_copy, &LoraTerms::default()),
    );
    let with_engine = engine_logits(&f32_copy, Some(&adapter));
    let with_block = block_logits(&f32_copy, &terms(&adapted, DType::F32));
    let adapted_diff = max_abs_diff(&with_engine, &with_block);
    let effect = max_abs_diff(&engine_logits(&f32_copy, None), &with_engine);
    eprintln!("llama: plain {plain}, with adapter {adapted_diff}, adapter effect {effect}");
    assert!(plain <= 1e-3, "block vs engine without adapter: {plain}");
    assert!(
        adapted_diff <= 1e-3,
        "block vs engine with adapter: {adapted_diff}"
    );
    assert!(effect > 0.05, "the adapter had no clear effect ({effect})");
}

/// A Qwen2 safetensors model (half-split RoPE, q/k/v biases), the adapter merged at load.
#[test]
fn top_block_equals_the_engine_on_a_qwen2_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = write_tiny_model(&tmp.path().join("base"), TinyArch::Qwen2);
    let adapted = tiny_modules(&model);
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &adapted);
    let plain = max_abs_diff(
        &engine_logits(&model.dir, None),
        &block_logits(&model.dir, &LoraTerms::default()),
    );
    let with_engine = engine_logits(&model.dir, Some(&adapter));
    let with_block = block_logits(&model.dir, &terms(&adapted, DType::F32));
    let adapted_diff = max_abs_diff(&with_engine, &with_block);
    let effect = max_abs_diff(&engine_logits(&model.dir, None), &with_engine);
    eprintln!("qwen2: plain {plain}, with adapter {adapted_diff}, adapter effect {effect}");
    assert!(plain <= 1e-4, "block vs engine without adapter: {plain}");
    assert!(
        adapted_diff <= 1e-4,
        "block vs engine with adapter: {adapted_diff}"
    );
    assert!(effect > 0.01, "the adapter had no clear effect ({effect})");
}

/// Every position at once (the alignment trainer's view): with the whole vocabulary, row i of
/// `logits_from(x, lora, 0)` equals the engine's logits after the first i + 1 prompt tokens, so the
/// causal mask and the positions' RoPE are the engine's.
#[test]
fn every_position_equals_the_engine_on_each_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let model = write_tiny_model(&tmp.path().join("base"), TinyArch::Qwen2);
    let adapted = tiny_modules(&model);
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &adapted);
    let base = Model::load(&LoadOptions::new(&model.dir)).unwrap();
    let block = base.top_block_full_vocabulary().unwrap();
    let x = base.residual_stream_before_top(PROMPT).unwrap();
    let lora = terms(&adapted, DType::F32);
    let all: Vec<Vec<f32>> = block.logits_from(&x, &lora, 0).unwrap().to_vec2().unwrap();
    assert_eq!(all.len(), PROMPT.len());
    let from = 4;
    let tail: Vec<Vec<f32>> = block
        .logits_from(&x, &lora, from)
        .unwrap()
        .to_vec2()
        .unwrap();
    let mut worst = 0f32;
    for (i, row) in all.iter().enumerate() {
        let engine = last_logits(&model.dir, Some(&adapter), 1, &PROMPT[..=i]);
        assert_eq!(row.len(), engine.len(), "one logit per vocabulary entry");
        worst = worst.max(max_abs_diff(&engine, row));
        if i >= from {
            worst = worst.max(max_abs_diff(&tail[i - from], row));
        }
    }
    eprintln!("every position vs engine prefixes: {worst}");
    assert!(worst <= 1e-4, "block rows vs engine prefixes: {worst}");
    let last = block
        .last_logits(&x, &lora)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let last_vs_all = max_abs_diff(&last, &all[PROMPT.len() - 1]);
    assert!(
        last_vs_all <= 1e-5,
        "last_logits vs the last row: {last_vs_all}"
    );
    assert!(block.logits_from(&x, &lora, PROMPT.len()).is_err());
}

/// d loss / d (A, B) by back-propagation equals central finite differences, in f64, for every
/// module kind, on a half-split and an interleaved (permuted) RoPE model.
fn check_gradients(model: &Model, adapted: &[Module]) {
    let block = model
        .top_block(CANDIDATES)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let x = model
        .residual_stream_before_top(PROMPT)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let base = terms(adapted, DType::F64);
    let mut vars = BTreeMap::new();
    for (name, (a, b)) in &base.terms {
        vars.insert(
            name.clone(),
            (Var::from_tensor(a).unwrap(), Var::from_tensor(b).unwrap()),
        );
    }
    let lora_of = |vars: &BTreeMap<String, (Var, Var)>| LoraTerms {
        scale: base.scale,
        terms: vars
            .iter()
            .map(|(n, (a, b))| (n.clone(), (a.as_tensor().clone(), b.as_tensor().clone())))
            .collect(),
    };
    // A selection-like loss (cross-entropy of candidate 2 over the candidates at the last
    // position) plus a next-token-like one over several positions (candidate 1 at each of
    // positions 3..), so the causal attention's gradient is checked too.
    let loss = |lora: &LoraTerms| -> Tensor {
        let logits = block.last_logits(&x, lora).unwrap();
        let logp = candle_nn::ops::log_softmax(&logits, 0).unwrap();
        let selection = logp.get(2).unwrap().neg().unwrap();
        let rows = block.logits_from(&x, lora, 3).unwrap();
        let rows_logp = candle_nn::ops::log_softmax(&rows, 1).unwrap();
        let next = rows_logp
            .narrow(1, 1, 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .neg()
            .unwrap();
        (selection + next).unwrap()
    };
    let grads = loss(&lora_of(&vars)).backward().unwrap();
    let eps = 1e-6;
    let mut checked = 0;
    for (name, (a, b)) in &vars {
        for (which, var) in [("A", a), ("B", b)] {
            let grad = grads.get(var.as_tensor()).expect("gradient");
            let g: Vec<f64> = grad.flatten_all().unwrap().to_vec1().unwrap();
            let values: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let shape = var.as_tensor().shape().clone();
            for &i in &[0, values.len() / 3, values.len() - 1] {
                let probe = |delta: f64| -> f64 {
                    let mut v = values.clone();
                    v[i] += delta;
                    let t = Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap();
                    let mut lora = lora_of(&vars);
                    let entry = lora.terms.get_mut(name).unwrap();
                    if which == "A" {
                        entry.0 = t;
                    } else {
                        entry.1 = t;
                    }
                    loss(&lora).to_scalar::<f64>().unwrap()
                };
                let numeric = (probe(eps) - probe(-eps)) / (2.0 * eps);
                let err = (numeric - g[i]).abs();
                assert!(
                    err <= 1e-6 + 1e-4 * numeric.abs().max(g[i].abs()),
                    "{name} {which}[{i}]: back-propagated {} vs finite difference {numeric}",
                    g[i]
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, adapted.len() * 2 * 3);
}

#[test]
fn gradients_equal_finite_differences_qwen2() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = write_tiny_model(&tmp.path().join("base"), TinyArch::Qwen2);
    let model = Model::load(&LoadOptions::new(&tiny.dir)).unwrap();
    check_gradients(&model, &tiny_modules(&tiny));
}

#[test]
fn gradients_equal_finite_differences_gguf_llama() {
    let _serial = serial();
    let src = model_path(SMOL);
    let gguf = Gguf::open(&src);
    let last = gguf.uint(&format!("{}.block_count", arch(true))) - 1;
    let model = Model::load(&LoadOptions::new(&src)).unwrap();
    check_gradients(&model, &modules(&gguf, &[last]));
}
