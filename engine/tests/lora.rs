//! PEFT LoRA adapters: merging at load changes the logits exactly as merging W + (alpha/r)·B·A by hand,
//! and adapters that do not fit the model are rejected with an error naming the adapter.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use common::gguf::pseudo_random;
use common::{max_abs_diff, write_tiny_model, TinyArch, TinyModel};
use scot_engine::{EngineError, LoadOptions, LoraAdapter, Model};

const PROMPT: &[u32] = &[1, 504, 2365, 6354, 16438, 27003, 690, 260];

struct Factors {
    module: String,
    out_dim: usize,
    in_dim: usize,
    a: Vec<f32>, // [r, in] row-major
    b: Vec<f32>, // [out, r] row-major
}

/// Writes a PEFT adapter folder for `modules` (HF module names without `.weight`).
fn write_adapter(
    dir: &Path,
    model: &TinyModel,
    modules: &[&str],
    r: usize,
    alpha: f64,
    extra_config: serde_json::Value,
) -> Vec<Factors> {
    std::fs::create_dir_all(dir).unwrap();
    let mut tensors = HashMap::new();
    let mut factors = Vec::new();
    for (i, module) in modules.iter().enumerate() {
        let w = &model.weights[&format!("{module}.weight")];
        let (out_dim, in_dim) = w.dims2().unwrap();
        let a = pseudo_random(r * in_dim, 100 + i as u64, 0.5);
        let b = pseudo_random(out_dim * r, 200 + i as u64, 0.5);
        let key = format!("base_model.model.{module}");
        tensors.insert(
            format!("{key}.lora_A.weight"),
            Tensor::from_vec(a.clone(), (r, in_dim), &Device::Cpu).unwrap(),
        );
        tensors.insert(
            format!("{key}.lora_B.weight"),
            Tensor::from_vec(b.clone(), (out_dim, r), &Device::Cpu).unwrap(),
        );
        factors.push(Factors {
            module: module.to_string(),
            out_dim,
            in_dim,
            a,
            b,
        });
    }
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors")).unwrap();
    let mut config = serde_json::json!({
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.1,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "task_type": "CAUSAL_LM",
    });
    if let (Some(base), Some(extra)) = (config.as_object_mut(), extra_config.as_object()) {
        base.extend(extra.clone());
    }
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    factors
}

/// W + scale·B·A with plain loops (independent of the engine's tensor code), written as a new model folder.
fn write_merged_by_hand(model: &TinyModel, factors: &[Factors], scale: f64, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let mut weights = model.weights.clone();
    for f in factors {
        let name = format!("{}.weight", f.module);
        let w: Vec<f32> = weights[&name].flatten_all().unwrap().to_vec1().unwrap();
        let r = f.a.len() / f.in_dim;
        let mut merged = w.clone();
        for o in 0..f.out_dim {
            for i in 0..f.in_dim {
                let mut acc = 0f64;
                for k in 0..r {
                    acc += f64::from(f.b[o * r + k]) * f64::from(f.a[k * f.in_dim + i]);
                }
                merged[o * f.in_dim + i] = (f64::from(w[o * f.in_dim + i]) + scale * acc) as f32;
            }
        }
        weights.insert(
            name,
            Tensor::from_vec(merged, (f.out_dim, f.in_dim), &Device::Cpu).unwrap(),
        );
    }
    candle_core::safetensors::save(&weights, out.join("model.safetensors")).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.dir.join(file), out.join(file)).unwrap();
    }
}

fn logits(opts: &LoadOptions) -> Vec<f32> {
    let model = Model::load(opts).expect("model loads");
    let mut session = model.session().unwrap();
    session.extend(PROMPT).unwrap();
    session.last_logits().unwrap()
}

fn q_and_v_modules(layers: usize) -> Vec<String> {
    (0..layers)
        .flat_map(|l| {
            [
                format!("model.layers.{l}.self_attn.q_proj"),
                format!("model.layers.{l}.self_attn.v_proj"),
            ]
        })
        .collect()
}

fn check_merge_matches_hand_merge(arch: TinyArch, rslora: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let model = write_tiny_model(&tmp.path().join("base"), arch);
    let modules = q_and_v_modules(model.layers);
    let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
    let (r, alpha) = (4, 16.0);
    let adapter_dir = tmp.path().join("adapter");
    let factors = write_adapter(
        &adapter_dir,
        &model,
        &modules,
        r,
        alpha,
        serde_json::json!({ "use_rslora": rslora }),
    );
    let scale = if rslora {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    };
    let merged_dir = tmp.path().join("merged");
    write_merged_by_hand(&model, &factors, scale, &merged_dir);

    let base = logits(&LoadOptions::new(&model.dir));
    let with_lora = logits(&LoadOptions {
        lora: Some(adapter_dir),
        ..LoadOptions::new(&model.dir)
    });
    let by_hand = logits(&LoadOptions::new(&merged_dir));
    let diff = max_abs_diff(&with_lora, &by_hand);
    assert!(
        diff <= 1e-5,
        "{arch:?} rslora={rslora}: LoRA-at-load vs hand merge differ by {diff}"
    );
    // The adapter really changes the model.
    assert!(
        max_abs_diff(&base, &with_lora) > 1e-3,
        "{arch:?}: adapter had no effect"
    );
}

#[test]
fn lora_merge_matches_hand_merge_qwen2() {
    check_merge_matches_hand_merge(TinyArch::Qwen2, false);
}

#[test]
fn lora_merge_matches_hand_merge_llama() {
    check_merge_matches_hand_merge(TinyArch::Llama, false);
}

#[test]
fn rslora_scales_by_alpha_over_sqrt_r() {
    check_merge_matches_hand_merge(TinyArch::Qwen2, true);
}

fn load_err(model: &TinyModel, adapter: &Path) -> String {
    let Err(err) = Model::load(&LoadOptions {
        lora: Some(adapter.to_path_buf()),
        ..LoadOptions::new(&model.dir)
    }) else {
        panic!("adapter {} must be rejected", adapter.display());
    };
    assert!(matches!(err, EngineError::Lora { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&adapter.display().to_string()),
        "error does not name the adapter: {msg}"
    );
    msg
}

#[test]
fn adapters_that_do_not_fit_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let model = write_tiny_model(&tmp.path().join("base"), TinyArch::Qwen2);

    // An adapter made for a model with another hidden size: shapes do not fit.
    let other = write_tiny_model(&tmp.path().join("other"), TinyArch::Qwen2);
    let mut wide = other.clone();
    let q = "model.layers.0.self_attn.q_proj";
    wide.weights.insert(
        format!("{q}.weight"),
        Tensor::zeros(
            (other.hidden * 2, other.hidden + 8),
            candle_core::DType::F32,
            &Device::Cpu,
        )
        .unwrap(),
    );
    let wrong_shape = tmp.path().join("wrong-shape");
    write_adapter(&wrong_shape, &wide, &[q], 4, 8.0, serde_json::json!({}));
    let msg = load_err(&model, &wrong_shape);
    assert!(msg.contains("shape"), "{msg}");

    // A module the model lacks (layer 7 of a 2-layer model).
    let mut deep = model.clone();
    let missing = "model.layers.7.self_attn.q_proj";
    deep.weights.insert(
        format!("{missing}.weight"),
        model.weights[&format!("{q}.weight")].clone(),
    );
    let unknown = tmp.path().join("unknown-module");
    write_adapter(&unknown, &deep, &[missing], 4, 8.0, serde_json::json!({}));
    let msg = load_err(&model, &unknown);
    assert!(msg.contains("model.layers.7.self_attn.q_proj"), "{msg}");

    // lora_A without lora_B.
    let half = tmp.path().join("missing-b");
    write_adapter(&half, &model, &[q], 4, 8.0, serde_json::json!({}));
    let mut tensors =
        candle_core::safetensors::load(half.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    tensors.retain(|k, _| !k.contains("lora_B"));
    candle_core::safetensors::save(&tensors, half.join("adapter_model.safetensors")).unwrap();
    let msg = load_err(&model, &half);
    assert!(msg.contains("no lora_B"), "{msg}");

    // Unsupported options are named.
    let dora = tmp.path().join("dora");
    write_adapter(
        &dora,
        &model,
        &[q],
        4,
        8.0,
        serde_json::json!({ "use_dora": true }),
    );
    assert!(load_err(&model, &dora).contains("DoRA"));

    // No adapter folder at all.
    let msg = load_err(&model, &tmp.path().join("nope"));
    assert!(msg.contains("adapter_config.json"), "{msg}");
}

#[test]
fn failed_merge_leaves_weights_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let model = write_tiny_model(&tmp.path().join("base"), TinyArch::Llama);
    let good = "model.layers.0.self_attn.q_proj";
    let bad = "model.layers.1.self_attn.v_proj";
    let mut skewed = model.clone();
    skewed.weights.insert(
        format!("{bad}.weight"),
        Tensor::zeros((3, 5), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let dir = tmp.path().join("adapter");
    write_adapter(&dir, &skewed, &[good, bad], 2, 4.0, serde_json::json!({}));
    let adapter = LoraAdapter::load(&dir).unwrap();
    let mut weights = model.weights.clone();
    let err = adapter.merge_into(&mut weights).unwrap_err();
    assert!(matches!(err, EngineError::Lora { .. }), "{err}");
    for (name, w) in &model.weights {
        let before: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        let after: Vec<f32> = weights[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(before, after, "{name} changed by a failed merge");
    }
    // Dropping the bad module, the same adapter merges into the good one only.
    let dir2 = tmp.path().join("adapter2");
    write_adapter(&dir2, &model, &[good], 2, 4.0, serde_json::json!({}));
    let adapter = LoraAdapter::load(&dir2).unwrap();
    assert_eq!(adapter.config().scale(), 2.0);
    adapter.merge_into(&mut weights).unwrap();
    let changed: Vec<&String> = model
        .weights
        .iter()
        .filter(|(name, w)| {
            let a: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = weights[*name].flatten_all().unwrap().to_vec1().unwrap();
            a != b
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(changed, vec![&format!("{good}.weight")]);
}
