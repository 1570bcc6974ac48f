//! PEFT LoRA adapters: merged into dense (safetensors) weights at load, W' = W + (alpha / r) * B * A;
//! kept beside block-quantized (GGUF) weights and applied at run time, y = W x + (alpha / r) B (A x).
//!
//! Supported: plain LoRA on linear layers (`lora_A.weight` [r, in], `lora_B.weight` [out, r]), with
//! `use_rslora` (scale alpha / sqrt(r)). Rejected with a clear error: DoRA, `fan_in_fan_out`, trained biases,
//! `modules_to_save`, per-module rank/alpha patterns, embedding LoRA and pickled `adapter_model.bin`.
//! The merge runs in f32 and casts back to the weight's dtype; the run-time form holds A and B in f32.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::bounded_read::{read_text, MAX_CONFIG_BYTES};
use crate::config::Architecture;
use crate::error::{EngineError, Result};
use crate::linear::{Linear, LowRank};
use crate::transformer::Transformer;

/// The parts of PEFT's adapter_config.json that decide how the adapter is merged.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub use_rslora: bool,
    /// Module names (`q_proj`, `v_proj`) the adapter was trained on; empty when given as a regex.
    pub target_modules: Vec<String>,
}

impl LoraConfig {
    /// The factor B·A is multiplied by: alpha / r, or alpha / sqrt(r) for rank-stabilised LoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }
}

/// One adapted linear layer: the model weight it changes and its low-rank factors.
struct LoraModule {
    /// The model weight's Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    weight_name: String,
    /// [r, in]
    a: Tensor,
    /// [out, r]
    b: Tensor,
}

pub struct LoraAdapter {
    path: PathBuf,
    config: LoraConfig,
    modules: Vec<LoraModule>,
}

impl std::fmt::Debug for LoraAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoraAdapter")
            .field("path", &self.path)
            .field("config", &self.config)
            .field("modules", &self.modules.len())
            .finish()
    }
}

impl LoraAdapter {
    /// Reads `adapter_config.json` + `adapter_model.safetensors` from a PEFT adapter folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let fail = |reason: String| EngineError::Lora {
            path: dir.to_path_buf(),
            reason,
        };
        let config_path = dir.join("adapter_config.json");
        let config_text = read_text(&config_path, MAX_CONFIG_BYTES)
            .map_err(|e| fail(format!("cannot read adapter_config.json: {e}")))?;
        let raw: serde_json::Value = serde_json::from_str(&config_text)
            .map_err(|e| fail(format!("adapter_config.json is not valid JSON: {e}")))?;
        let config = parse_config(&raw).map_err(fail)?;

        let weights_path = dir.join("adapter_model.safetensors");
        if !weights_path.exists() {
            let reason = if dir.join("adapter_model.bin").exists() {
                "only adapter_model.bin (pickle) found; convert it to adapter_model.safetensors"
                    .into()
            } else {
                "adapter_model.safetensors not found".into()
            };
            return Err(fail(reason));
        }
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| fail(format!("cannot read adapter_model.safetensors: {e}")))?;
        let modules = collect_modules(tensors, &config).map_err(fail)?;
        if modules.is_empty() {
            return Err(fail(
                "adapter_model.safetensors holds no LoRA tensors".into(),
            ));
        }
        Ok(Self {
            path: dir.to_path_buf(),
            config,
            modules,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The Hugging Face names of the weights this adapter changes, in a stable order.
    pub fn target_weights(&self) -> impl Iterator<Item = &str> {
        self.modules.iter().map(|m| m.weight_name.as_str())
    }

    /// The f32 update `scale · B · A` ([out, in]) for each adapted weight, keyed by Hugging Face name;
    /// for callers that hold weights in another form (e.g. dequantized GGUF tensors, see
    /// [`gguf_tensor_name`] and [`permute_for_llama_gguf`]).
    pub fn deltas(&self, device: &Device) -> Result<Vec<(String, Tensor)>> {
        self.modules
            .iter()
            .map(|m| Ok((m.weight_name.clone(), self.delta(m, device)?)))
            .collect()
    }

    fn delta(&self, module: &LoraModule, device: &Device) -> Result<Tensor> {
        let wrap = |e: candle_core::Error| EngineError::Lora {
            path: self.path.clone(),
            reason: format!("{}: {e}", module.weight_name),
        };
        let a = module
            .a
            .to_dtype(DType::F32)
            .and_then(|t| t.to_device(device))
            .map_err(wrap)?;
        let b = module
            .b
            .to_dtype(DType::F32)
            .and_then(|t| t.to_device(device))
            .map_err(wrap)?;
        b.matmul(&a)
            .and_then(|ba| ba.affine(self.config.scale(), 0.0))
            .map_err(wrap)
    }

    /// Merges the adapter into `weights`, keyed by Hugging Face names
    /// (`model.layers.N.self_attn.q_proj.weight`, shape [out, in]). An adapter that names a module the
    /// model lacks, or whose shapes do not fit, is an error and leaves `weights` unchanged.
    pub fn merge_into(&self, weights: &mut HashMap<String, Tensor>) -> Result<()> {
        let fail = |reason: String| EngineError::Lora {
            path: self.path.clone(),
            reason,
        };
        // Check everything before touching any weight.
        for m in &self.modules {
            let w = weights.get(&m.weight_name).ok_or_else(|| {
                fail(format!(
                    "adapter targets `{}`, which this model does not have (adapter for another model?)",
                    m.weight_name
                ))
            })?;
            let (out_dim, _) = m.b.dims2().map_err(|e| fail(e.to_string()))?;
            let (_, in_dim) = m.a.dims2().map_err(|e| fail(e.to_string()))?;
            if w.dims() != [out_dim, in_dim] {
                return Err(fail(format!(
                    "`{}` has shape {:?} but the adapter's B·A is [{out_dim}, {in_dim}] (adapter for another model?)",
                    m.weight_name,
                    w.dims()
                )));
            }
        }
        let mut merged = Vec::with_capacity(self.modules.len());
        for m in &self.modules {
            let w = &weights[&m.weight_name];
            let delta = self.delta(m, w.device())?;
            let new_w = w
                .to_dtype(DType::F32)
                .and_then(|w32| w32.add(&delta))
                .and_then(|sum| sum.to_dtype(w.dtype()))
                .map_err(|e| fail(format!("merging `{}`: {e}", m.weight_name)))?;
            merged.push((m.weight_name.clone(), new_w));
        }
        for (name, w) in merged {
            weights.insert(name, w);
        }
        tracing::info!(
            adapter = %self.path.display(),
            modules = self.modules.len(),
            r = self.config.r,
            scale = self.config.scale(),
            "merged LoRA adapter"
        );
        Ok(())
    }
}

impl LoraAdapter {
    /// Attaches the adapter to a GGUF-loaded decoder as run-time low-rank terms beside its quantized
    /// weights (no merge, no dequantized copy). Every module is checked before any is attached, so an
    /// adapter for another model fails with the model untouched.
    pub(crate) fn attach_to(&self, transformer: &mut Transformer) -> Result<()> {
        let fail = |reason: String| EngineError::Lora {
            path: self.path.clone(),
            reason,
        };
        let (arch, n_head, n_kv_head) = (
            transformer.hp.architecture,
            transformer.hp.n_head,
            transformer.hp.n_kv_head,
        );
        let mut terms = Vec::with_capacity(self.modules.len());
        for m in &self.modules {
            let linear = linear_of(transformer, &m.weight_name).ok_or_else(|| {
                fail(format!(
                    "adapter targets `{}`, which this model does not have or cannot adapt at run \
                     time (adapter for another model?)",
                    m.weight_name
                ))
            })?;
            let (out_dim, in_dim) = linear.dims()?;
            let (b_out, _) = m.b.dims2().map_err(|e| fail(e.to_string()))?;
            let (_, a_in) = m.a.dims2().map_err(|e| fail(e.to_string()))?;
            if (b_out, a_in) != (out_dim, in_dim) {
                return Err(fail(format!(
                    "`{}` has shape [{out_dim}, {in_dim}] but the adapter's B·A is [{b_out}, {a_in}] \
                     (adapter for another model?)",
                    m.weight_name
                )));
            }
            let wrap = |e: candle_core::Error| fail(format!("{}: {e}", m.weight_name));
            let device = &transformer.device;
            let a =
                m.a.to_dtype(DType::F32)
                    .and_then(|t| t.to_device(device))
                    .map_err(wrap)?;
            let mut b =
                m.b.to_dtype(DType::F32)
                    .and_then(|t| t.affine(self.config.scale(), 0.0))
                    .and_then(|t| t.to_device(device))
                    .map_err(wrap)?;
            // B·A's rows are B's rows: permuting B permutes the delta as the converter did W.
            if arch == Architecture::Llama {
                if m.weight_name.ends_with("self_attn.q_proj.weight") {
                    b = permute_for_llama_gguf(&b, n_head)?;
                } else if m.weight_name.ends_with("self_attn.k_proj.weight") {
                    b = permute_for_llama_gguf(&b, n_kv_head)?;
                }
            }
            terms.push((m.weight_name.as_str(), LowRank { a, b }));
        }
        for (name, term) in terms {
            if let Some(linear) = linear_of(transformer, name) {
                linear.set_low_rank(term);
            }
        }
        tracing::info!(
            adapter = %self.path.display(),
            modules = self.modules.len(),
            r = self.config.r,
            scale = self.config.scale(),
            "attached LoRA adapter at run time"
        );
        Ok(())
    }
}

/// The linear layer a Hugging Face weight name denotes (`model.layers.N.self_attn.q_proj.weight`,
/// `lm_head.weight`).
fn linear_of<'a>(transformer: &'a mut Transformer, hf_name: &str) -> Option<&'a mut Linear> {
    if hf_name == "lm_head.weight" {
        return Some(&mut transformer.output);
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, module) = rest.split_once('.')?;
    let block = transformer.blocks.get_mut(layer.parse::<usize>().ok()?)?;
    Some(match module {
        "self_attn.q_proj.weight" => &mut block.q,
        "self_attn.k_proj.weight" => &mut block.k,
        "self_attn.v_proj.weight" => &mut block.v,
        "self_attn.o_proj.weight" => &mut block.o,
        "mlp.gate_proj.weight" => &mut block.gate,
        "mlp.up_proj.weight" => &mut block.up,
        "mlp.down_proj.weight" => &mut block.down,
        _ => return None,
    })
}

fn parse_config(raw: &serde_json::Value) -> std::result::Result<LoraConfig, String> {
    if let Some(peft_type) = raw.get("peft_type").and_then(|v| v.as_str()) {
        if peft_type != "LORA" {
            return Err(format!(
                "peft_type `{peft_type}` is not supported (only LORA)"
            ));
        }
    }
    let flag = |key: &str| raw.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    if flag("use_dora") {
        return Err("DoRA adapters (use_dora = true) are not supported".into());
    }
    if flag("fan_in_fan_out") {
        return Err("fan_in_fan_out = true (Conv1D layers) is not supported".into());
    }
    match raw.get("bias").and_then(|v| v.as_str()) {
        None | Some("none") => {}
        Some(other) => return Err(format!("bias = `{other}` is not supported (only \"none\")")),
    }
    let non_empty = |key: &str| match raw.get(key) {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(serde_json::Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    };
    for key in ["modules_to_save", "rank_pattern", "alpha_pattern"] {
        if non_empty(key) {
            return Err(format!("`{key}` is not supported"));
        }
    }
    let r = raw
        .get("r")
        .and_then(|v| v.as_u64())
        .filter(|&r| r > 0)
        .ok_or("adapter_config.json: `r` must be a positive integer")? as usize;
    let lora_alpha = raw
        .get("lora_alpha")
        .and_then(|v| v.as_f64())
        .ok_or("adapter_config.json: `lora_alpha` must be a number")?;
    let target_modules = match raw.get("target_modules") {
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Ok(LoraConfig {
        r,
        lora_alpha,
        use_rslora: flag("use_rslora"),
        target_modules,
    })
}

/// Pairs `…lora_A.weight` / `…lora_B.weight` tensors by module and checks their ranks.
fn collect_modules(
    tensors: HashMap<String, Tensor>,
    config: &LoraConfig,
) -> std::result::Result<Vec<LoraModule>, String> {
    let mut pairs: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    for (key, tensor) in tensors {
        let (module, is_a) = split_lora_key(&key).ok_or_else(|| {
            format!("unsupported tensor `{key}` (only lora_A/lora_B weights of linear layers)")
        })?;
        let entry = pairs.entry(module).or_default();
        if is_a {
            entry.0 = Some(tensor);
        } else {
            entry.1 = Some(tensor);
        }
    }
    let mut modules = Vec::with_capacity(pairs.len());
    for (module, (a, b)) in pairs {
        let a = a.ok_or_else(|| format!("`{module}` has lora_B but no lora_A"))?;
        let b = b.ok_or_else(|| format!("`{module}` has lora_A but no lora_B"))?;
        let (a_r, _) = a.dims2().map_err(|_| {
            format!(
                "`{module}` lora_A has shape {:?}, expected [r, in]",
                a.dims()
            )
        })?;
        let (_, b_r) = b.dims2().map_err(|_| {
            format!(
                "`{module}` lora_B has shape {:?}, expected [out, r]",
                b.dims()
            )
        })?;
        if a_r != config.r || b_r != config.r {
            return Err(format!(
                "`{module}`: lora_A {:?} / lora_B {:?} do not have rank r = {}",
                a.dims(),
                b.dims(),
                config.r
            ));
        }
        let leaf = module.rsplit('.').next().unwrap_or(&module);
        if !config.target_modules.is_empty() && !config.target_modules.iter().any(|t| t == leaf) {
            tracing::warn!(
                module,
                "LoRA tensor for a module not listed in target_modules"
            );
        }
        modules.push(LoraModule {
            weight_name: format!("{module}.weight"),
            a,
            b,
        });
    }
    Ok(modules)
}

/// `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` -> (`model.layers.0.self_attn.q_proj`, A).
/// Also accepts PEFT's adapter-named form `...lora_A.default.weight`.
fn split_lora_key(key: &str) -> Option<(String, bool)> {
    let key = key.strip_prefix("base_model.model.").unwrap_or(key);
    for (marker, is_a) in [(".lora_A.", true), (".lora_B.", false)] {
        if let Some((module, rest)) = key.split_once(marker) {
            if rest == "weight"
                || (rest.ends_with(".weight") && !rest[..rest.len() - 7].contains('.'))
            {
                return Some((module.to_string(), is_a));
            }
        }
    }
    None
}

/// The GGUF tensor name (llama.cpp naming) of a Hugging Face Qwen2/Llama weight name, e.g.
/// `model.layers.3.self_attn.q_proj.weight` -> `blk.3.attn_q.weight`.
pub fn gguf_tensor_name(hf_name: &str) -> Option<String> {
    match hf_name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        _ => {}
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let gguf = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

/// llama.cpp's converter permutes the rows of Llama-architecture q_proj/k_proj weights (rotary layout);
/// a q/k delta must get the same permutation before it is added to a Llama GGUF weight. `n_head` is the
/// number of query heads for q_proj, of key/value heads for k_proj. Qwen2 GGUF files are not permuted.
pub fn permute_for_llama_gguf(delta: &Tensor, n_head: usize) -> Result<Tensor> {
    let (out_dim, in_dim) = delta.dims2()?;
    if n_head == 0 || !out_dim.is_multiple_of(n_head * 2) {
        return Err(EngineError::InvalidRequest(format!(
            "cannot permute a [{out_dim}, {in_dim}] weight into {n_head} rotary heads"
        )));
    }
    Ok(delta
        .reshape((n_head, 2, out_dim / n_head / 2, in_dim))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out_dim, in_dim))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_peft_key_names() {
        assert_eq!(
            split_lora_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"),
            Some(("model.layers.0.self_attn.q_proj".into(), true))
        );
        assert_eq!(
            split_lora_key("base_model.model.model.layers.1.mlp.up_proj.lora_B.default.weight"),
            Some(("model.layers.1.mlp.up_proj".into(), false))
        );
        assert_eq!(split_lora_key("base_model.model.lm_head.weight"), None);
        assert_eq!(
            split_lora_key("base_model.model.model.embed_tokens.lora_embedding_A"),
            None
        );
    }

    #[test]
    fn maps_hf_names_to_gguf() {
        assert_eq!(
            gguf_tensor_name("model.layers.12.self_attn.v_proj.weight").as_deref(),
            Some("blk.12.attn_v.weight")
        );
        assert_eq!(
            gguf_tensor_name("model.layers.0.self_attn.q_proj.bias").as_deref(),
            Some("blk.0.attn_q.bias")
        );
        assert_eq!(gguf_tensor_name("model.layers.x.mlp.up_proj.weight"), None);
    }

    #[test]
    fn permutes_rows_like_the_llama_converter() {
        // 2 heads of 4 rows: rows [h, half, i] -> [h, i, half].
        let d = Tensor::arange(0f32, 8.0, &Device::Cpu)
            .unwrap()
            .reshape((8, 1))
            .unwrap();
        let p = permute_for_llama_gguf(&d, 2).unwrap();
        let rows: Vec<f32> = p.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(rows, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }
}
