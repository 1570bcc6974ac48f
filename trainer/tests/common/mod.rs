//! What the trainer's tests share: the small real model, a run's flags, an adapter's tensors.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use scot_trainer::LoraTrainingArgs;

pub const SMOL: &str = "smollm2-135m-instruct-q4_1.gguf";

pub fn model_path() -> PathBuf {
    let dir = std::env::var("SCOT_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/scot/models")
        });
    let path = dir.join(SMOL);
    assert!(
        path.is_file(),
        "model {} is missing: run scripts/fetch-models.sh",
        path.display()
    );
    path
}

/// A short run on `data` into `out` (residuals cached beside it).
pub fn lora_args(data: &Path, out: &Path, epochs: usize) -> LoraTrainingArgs {
    LoraTrainingArgs {
        model: model_path(),
        data: vec![data.to_path_buf()],
        eval_data: Vec::new(),
        out: out.to_path_buf(),
        cache_dir: Some(out.parent().unwrap().join("residuals")),
        epochs,
        lr: 5e-3,
        r: 4,
        alpha: 8.0,
        modules: vec!["q_proj".into(), "v_proj".into(), "o_proj".into()],
        seed: 7,
        checkpoint_every: 4,
    }
}

/// The saved adapter's tensors, by name.
pub fn tensors(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let mut all: Vec<(String, Vec<f32>)> = candle_core::safetensors::load(
        dir.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap()
    .into_iter()
    .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
    .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// The saved adapter's factors of `modules` as the block's LoRA terms.
pub fn saved_terms(
    out: &Path,
    block: &scot_engine::TopBlock,
    modules: &[&str],
) -> scot_engine::LoraTerms {
    let adapter = scot_engine::LoraAdapter::load(out).unwrap();
    let mut terms = scot_engine::LoraTerms {
        scale: adapter.config().scale(),
        terms: Default::default(),
    };
    let saved = candle_core::safetensors::load(
        out.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for module in modules {
        let name = block.module_name(module).unwrap();
        let a = saved[&format!("base_model.model.{name}.lora_A.weight")].clone();
        let b = saved[&format!("base_model.model.{name}.lora_B.weight")].clone();
        terms.terms.insert(module.to_string(), (a, b));
    }
    terms
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
