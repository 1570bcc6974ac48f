//! GGUF helpers for LoRA tests: random PEFT adapters for a GGUF model's modules and copies of a GGUF
//! file with tensors dequantized to f32 (optionally with an adapter merged by hand).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use scot_engine::{LoadOptions, Model};

/// Rank and alpha of the adapters written here.
pub const R: usize = 8;
pub const ALPHA: f64 = 16.0;

/// The GGUF metadata prefix of an architecture.
pub fn arch(llama: bool) -> &'static str {
    if llama {
        "llama"
    } else {
        "qwen2"
    }
}

/// Deterministic values in [-scale, scale).
pub fn pseudo_random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * scale
        })
        .collect()
}

/// An adapted module: HF name (without `.weight`), its GGUF tensor, dims and factors.
pub struct Module {
    pub hf: String,
    pub gguf: String,
    pub out_dim: usize,
    pub in_dim: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

pub struct Gguf {
    pub content: gguf_file::Content,
    file: File,
}

impl Gguf {
    pub fn open(path: &Path) -> Self {
        let mut file = File::open(path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        Self { content, file }
    }

    pub fn tensor(&mut self, name: &str) -> QTensor {
        self.content
            .tensor(&mut self.file, name, &Device::Cpu)
            .unwrap()
    }

    pub fn uint(&self, key: &str) -> usize {
        self.content.metadata[key].to_u32().unwrap() as usize
    }
}

pub const KINDS: [(&str, &str); 7] = [
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

/// Every module kind in the first and last layer, factors small enough to keep the model sane.
pub fn modules(gguf: &Gguf, layers: &[usize]) -> Vec<Module> {
    let mut out = Vec::new();
    for &layer in layers {
        for (i, (hf, short)) in KINDS.iter().enumerate() {
            let name = format!("blk.{layer}.{short}.weight");
            let dims = gguf.content.tensor_infos[&name].shape.dims().to_vec();
            // candle reports GGUF shapes as [out, in].
            let (out_dim, in_dim) = (dims[0], dims[1]);
            let seed = (layer * 10 + i) as u64;
            out.push(Module {
                hf: format!("model.layers.{layer}.{hf}"),
                gguf: name,
                out_dim,
                in_dim,
                a: pseudo_random(R * in_dim, 1000 + seed, 0.05),
                b: pseudo_random(out_dim * R, 2000 + seed, 0.05),
            });
        }
    }
    out
}

pub fn write_adapter(dir: &Path, modules: &[Module]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut tensors = HashMap::new();
    for m in modules {
        let key = format!("base_model.model.{}", m.hf);
        tensors.insert(
            format!("{key}.lora_A.weight"),
            Tensor::from_vec(m.a.clone(), (R, m.in_dim), &Device::Cpu).unwrap(),
        );
        tensors.insert(
            format!("{key}.lora_B.weight"),
            Tensor::from_vec(m.b.clone(), (m.out_dim, R), &Device::Cpu).unwrap(),
        );
    }
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors")).unwrap();
    let config = serde_json::json!({
        "peft_type": "LORA", "r": R, "lora_alpha": ALPHA, "bias": "none",
        "target_modules": KINDS.iter().map(|(hf, _)| hf.rsplit('.').next().unwrap()).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
}

/// The HF row that GGUF row `row` of a Llama q/k weight holds: llama.cpp's converter writes row
/// (head, i, half) from HF row (head, half, i) (rotary pairs interleaved).
pub fn llama_hf_row(row: usize, head_dim: usize) -> usize {
    let (head, within) = (row / head_dim, row % head_dim);
    let (i, half) = (within / 2, within % 2);
    head * head_dim + half * (head_dim / 2) + i
}

/// Which tensors of a copy are stored dequantized, in f32.
#[derive(Clone, Copy, PartialEq)]
pub enum F32 {
    /// Only the adapted weights.
    Adapted,
    /// Every tensor: with no quantized kernel left, a 1-ulp difference cannot flip the rounding
    /// of a later layer's quantized activations, so logits compare at f32 precision.
    All,
}

/// A copy of `src` with tensors dequantized to f32 (`which`), the adapted weights plus
/// scale·B·A (by hand, in f64) when `merge`.
pub fn write_f32_copy(
    src: &Path,
    modules: &[Module],
    merge: bool,
    llama: bool,
    which: F32,
    out: &Path,
) {
    let mut gguf = Gguf::open(src);
    let a = arch(llama);
    let head_dim = gguf.uint(&format!("{a}.embedding_length"))
        / gguf.uint(&format!("{a}.attention.head_count"));
    let scale = ALPHA / R as f64;
    let names: Vec<String> = gguf.content.tensor_infos.keys().cloned().collect();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for name in names {
        let q = gguf.tensor(&name);
        let Some(m) = modules.iter().find(|m| m.gguf == name) else {
            let q = if which == F32::All && q.dtype() != GgmlDType::F32 {
                QTensor::quantize(&q.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap()
            } else {
                q
            };
            tensors.push((name, q));
            continue;
        };
        let mut w: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        if merge {
            let permuted = llama && (m.hf.ends_with("q_proj") || m.hf.ends_with("k_proj"));
            for row in 0..m.out_dim {
                let hf_row = if permuted {
                    llama_hf_row(row, head_dim)
                } else {
                    row
                };
                for col in 0..m.in_dim {
                    let delta: f64 = (0..R)
                        .map(|k| {
                            f64::from(m.b[hf_row * R + k]) * f64::from(m.a[k * m.in_dim + col])
                        })
                        .sum();
                    let at = row * m.in_dim + col;
                    w[at] = (f64::from(w[at]) + scale * delta) as f32;
                }
            }
        }
        let t = Tensor::from_vec(w, (m.out_dim, m.in_dim), &Device::Cpu).unwrap();
        tensors.push((name, QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = gguf
        .content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut file = File::create(out).unwrap();
    gguf_file::write(&mut file, &metadata, &refs).unwrap();
}

/// The last position's logits after `prompt`, with `adapter` (PEFT folder) at tensor parallelism `tp`.
pub fn last_logits(path: &Path, adapter: Option<&Path>, tp: usize, prompt: &[u32]) -> Vec<f32> {
    let model = Model::load(&LoadOptions {
        lora: adapter.map(Path::to_path_buf),
        tensor_parallel: tp,
        ..LoadOptions::new(path)
    })
    .expect("model loads");
    let mut session = model.session().unwrap();
    session.extend(prompt).unwrap();
    session.last_logits().unwrap()
}
