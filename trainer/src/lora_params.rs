//! The trained LoRA factors: initialised as PEFT does (A uniform in ±1/sqrt(in), B zero, so training
//! starts from the base model), handed to the engine's [`TopBlock`] as [`LoraTerms`], and written as
//! a PEFT adapter folder that scot (`--lora`, GGUF or safetensors) and PEFT itself load.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scot_engine::{LoraTerms, TopBlock, LORA_MODULES};

use crate::error::TrainError;

/// Rank, alpha and modules of an adapter (the paper: r 8, alpha 32, q_proj and v_proj).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraShape {
    pub r: usize,
    pub alpha: f64,
    pub modules: Vec<String>,
}

pub struct LoraParams {
    pub shape: LoraShape,
    /// Module (`q_proj`) -> (A `[r, in]`, B `[out, r]`), with the block's HF prefix for saving.
    factors: BTreeMap<String, (Var, Var, String)>,
}

impl LoraParams {
    pub fn init(block: &TopBlock, shape: &LoraShape, seed: u64) -> Result<Self, TrainError> {
        if shape.r == 0 {
            return Err(TrainError::InvalidArgument("--r must be positive".into()));
        }
        if shape.modules.is_empty() {
            return Err(TrainError::InvalidArgument("no --modules to adapt".into()));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut factors = BTreeMap::new();
        for module in &shape.modules {
            let ((out_dim, in_dim), name) = block
                .module_dims(module)
                .zip(block.module_name(module))
                .ok_or_else(|| {
                    TrainError::InvalidArgument(format!(
                        "unknown module `{module}` (valid: {})",
                        LORA_MODULES.join(", ")
                    ))
                })?;
            let bound = 1.0 / (in_dim as f32).sqrt();
            let a: Vec<f32> = (0..shape.r * in_dim)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            let a = Var::from_tensor(&Tensor::from_vec(a, (shape.r, in_dim), &Device::Cpu)?)?;
            let b = Var::zeros((out_dim, shape.r), DType::F32, &Device::Cpu)?;
            factors.insert(module.clone(), (a, b, name));
        }
        Ok(Self {
            shape: shape.clone(),
            factors,
        })
    }

    pub fn scale(&self) -> f64 {
        self.shape.alpha / self.shape.r as f64
    }

    pub fn terms(&self) -> LoraTerms {
        LoraTerms {
            scale: self.scale(),
            terms: self
                .factors
                .iter()
                .map(|(m, (a, b, _))| (m.clone(), (a.as_tensor().clone(), b.as_tensor().clone())))
                .collect(),
        }
    }

    /// The variables by name (`q_proj.A`, `q_proj.B`).
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.factors
            .iter()
            .flat_map(|(m, (a, b, _))| {
                [(format!("{m}.A"), a.clone()), (format!("{m}.B"), b.clone())]
            })
            .collect()
    }

    /// Sets the factors from tensors saved under [`LoraParams::vars`]' names.
    pub fn restore(&self, saved: &HashMap<String, Tensor>) -> Result<(), String> {
        for (name, var) in self.vars() {
            let t = saved.get(&name).ok_or_else(|| format!("no `{name}`"))?;
            if t.shape() != var.as_tensor().shape() {
                return Err(format!("`{name}` has another shape"));
            }
            var.set(t).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (PEFT's names and layout).
    pub fn save_peft(&self, dir: &Path, base_model: &str, layer: usize) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let mut tensors = HashMap::new();
        for (a, b, name) in self.factors.values() {
            let key = format!("base_model.model.{name}");
            tensors.insert(format!("{key}.lora_A.weight"), a.as_tensor().clone());
            tensors.insert(format!("{key}.lora_B.weight"), b.as_tensor().clone());
        }
        let weights = dir.join("adapter_model.safetensors");
        candle_core::safetensors::save(&tensors, &weights)?;
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.shape.r,
            "lora_alpha": self.shape.alpha,
            "lora_dropout": 0.0,
            "bias": "none",
            "target_modules": self.shape.modules,
            "layers_to_transform": [layer],
            "use_rslora": false,
            "fan_in_fan_out": false,
        });
        let path = dir.join("adapter_config.json");
        std::fs::write(&path, format!("{config:#}\n")).map_err(|e| TrainError::io(&path, e))
    }
}
