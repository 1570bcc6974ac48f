//! Shared helpers for the engine's integration tests.
//!
//! For other test authors (e.g. the LoRA test):
//!   `pub fn write_tiny_model(dir: &Path, arch: TinyArch) -> TinyModel`
//! writes a small random Qwen2 or Llama model as a Hugging Face folder (config.json,
//! model.safetensors in f32, tokenizer.json borrowed from the smollm2 GGUF's tokenizer) into `dir`
//! and returns its description (the dir, hyperparameters, and the HF-named weights it wrote), so a
//! test can build a PEFT adapter against `model.layers.N.self_attn.{q,v}_proj.weight` ([out, in]).
#![allow(dead_code)]

pub mod gguf;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

/// Runs model-heavy tests of one test binary one at a time: candle's CPU thread pool spin-waits, so two
/// models decoding at once on a small machine slow each other down far more than 2x.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub const DRAFT: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const TARGET: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
pub const SMOL: &str = "smollm2-135m-instruct-q4_1.gguf";

/// `$SCOT_MODEL_DIR`, else `~/.cache/scot/models`.
pub fn model_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SCOT_MODEL_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/scot/models")
}

/// Path of a cached model; a missing model fails the test (CI fetches them first).
pub fn model_path(file: &str) -> PathBuf {
    let path = model_dir().join(file);
    assert!(
        path.is_file(),
        "model {} is missing: run scripts/fetch-models.sh (or set SCOT_MODEL_DIR)",
        path.display()
    );
    path
}

pub fn load(file: &str) -> scot_engine::Model {
    scot_engine::Model::load(&scot_engine::LoadOptions::new(model_path(file))).expect("model loads")
}

/// A ChatML prompt written out by hand (independent of the chat-template module).
pub fn chatml(user: &str) -> String {
    format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit vectors differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TinyArch {
    Qwen2,
    Llama,
}

#[derive(Debug, Clone)]
pub struct TinyModel {
    pub dir: PathBuf,
    pub arch: TinyArch,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub rope_theta: f64,
    pub rms_eps: f64,
    pub tie_embeddings: bool,
    /// Every tensor written, by HF name, in f32.
    pub weights: HashMap<String, Tensor>,
}

/// Writes a tiny random model folder. The tokenizer is smollm2's (49152 tokens), so `vocab` is 49152.
pub fn write_tiny_model(dir: &Path, arch: TinyArch) -> TinyModel {
    std::fs::create_dir_all(dir).unwrap();
    let (hidden, intermediate, layers, heads, kv_heads) = (64, 128, 2, 4, 2);
    let head_dim = hidden / heads;
    let vocab = 49152;
    let tie_embeddings = arch == TinyArch::Qwen2;
    let dev = Device::Cpu;
    let mut weights = HashMap::new();
    let mut seed = 0u64;
    let mut rand = |shape: &[usize], scale: f64| -> Tensor {
        // Deterministic pseudo-random values (xorshift), so the folder is the same every run.
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                (((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0) as f32 * scale as f32
            })
            .collect();
        Tensor::from_vec(data, shape, &dev).unwrap()
    };
    weights.insert(
        "model.embed_tokens.weight".to_string(),
        rand(&[vocab, hidden], 1.0),
    );
    if !tie_embeddings {
        weights.insert("lm_head.weight".to_string(), rand(&[vocab, hidden], 0.2));
    }
    weights.insert(
        "model.norm.weight".to_string(),
        (rand(&[hidden], 0.1) + 1.0).unwrap(),
    );
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        let mut put = |name: &str, t: Tensor| {
            weights.insert(format!("{p}.{name}"), t);
        };
        put(
            "input_layernorm.weight",
            (rand(&[hidden], 0.1) + 1.0).unwrap(),
        );
        put(
            "post_attention_layernorm.weight",
            (rand(&[hidden], 0.1) + 1.0).unwrap(),
        );
        put(
            "self_attn.q_proj.weight",
            rand(&[heads * head_dim, hidden], 0.2),
        );
        put(
            "self_attn.k_proj.weight",
            rand(&[kv_heads * head_dim, hidden], 0.2),
        );
        put(
            "self_attn.v_proj.weight",
            rand(&[kv_heads * head_dim, hidden], 0.2),
        );
        put(
            "self_attn.o_proj.weight",
            rand(&[hidden, heads * head_dim], 0.2),
        );
        if arch == TinyArch::Qwen2 {
            put("self_attn.q_proj.bias", rand(&[heads * head_dim], 0.1));
            put("self_attn.k_proj.bias", rand(&[kv_heads * head_dim], 0.1));
            put("self_attn.v_proj.bias", rand(&[kv_heads * head_dim], 0.1));
        }
        put("mlp.gate_proj.weight", rand(&[intermediate, hidden], 0.2));
        put("mlp.up_proj.weight", rand(&[intermediate, hidden], 0.2));
        put("mlp.down_proj.weight", rand(&[hidden, intermediate], 0.2));
    }
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).unwrap();
    let rope_theta = 10000.0;
    let rms_eps = 1e-6;
    let config = serde_json::json!({
        "model_type": match arch { TinyArch::Qwen2 => "qwen2", TinyArch::Llama => "llama" },
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": vocab,
        "max_position_embeddings": 512,
        "rms_norm_eps": rms_eps,
        "rope_theta": rope_theta,
        "tie_word_embeddings": tie_embeddings,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
        "hidden_act": "silu",
        "sliding_window": 512,
        "max_window_layers": layers,
        "use_sliding_window": false,
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    write_smollm2_tokenizer_json(&dir.join("tokenizer.json"));
    let _ = DType::F32;
    TinyModel {
        dir: dir.to_path_buf(),
        arch,
        hidden,
        intermediate,
        layers,
        heads,
        kv_heads,
        vocab,
        rope_theta,
        rms_eps,
        tie_embeddings,
        weights,
    }
}

/// Saves smollm2's GGUF-embedded tokenizer as a Hugging Face tokenizer.json.
pub fn write_smollm2_tokenizer_json(out: &Path) {
    use candle_core::quantized::tokenizer::TokenizerFromGguf;
    let path = model_path(SMOL);
    let mut file = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let tok = tokenizers::Tokenizer::from_gguf(&content).unwrap();
    tok.save(out, false).unwrap();
}
