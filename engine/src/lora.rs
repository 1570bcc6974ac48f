//! PEFT LoRA adapters merged into dense (safetensors) weights at load: W' = W + (alpha / r) * B * A.
//! (Owned by the engine-text work; signatures are the contract, bodies are placeholders until then.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::error::{EngineError, Result};

pub struct LoraAdapter {
    path: PathBuf,
}

impl LoraAdapter {
    /// Reads `adapter_config.json` + `adapter_model.safetensors` from a PEFT adapter folder.
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Self {
            path: dir.to_path_buf(),
        })
    }

    /// Merges the adapter into `weights`, keyed by Hugging Face names
    /// (`model.layers.N.self_attn.q_proj.weight`, shape [out, in]). An adapter that names a module the
    /// model lacks, or whose shapes do not fit, is an error and leaves `weights` unchanged.
    pub fn merge_into(&self, _weights: &mut HashMap<String, Tensor>) -> Result<()> {
        Err(EngineError::Lora {
            path: self.path.clone(),
            reason: "not implemented yet".into(),
        })
    }
}
