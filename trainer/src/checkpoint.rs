//! A training run's state on disk, so an interrupted run resumes where it was: the LoRA factors, the
//! optimiser's moments and where in which epoch the run stood, with the settings it was made under
//! (a resume under other settings is refused rather than mixed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::adamw::{AdamW, AdamWParams};
use crate::error::TrainError;
use crate::lora_params::{LoraParams, LoraShape};

/// What a resumed run must share with the run that wrote the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub model_fingerprint: String,
    pub lora: LoraShape,
    pub optimizer: AdamWParams,
    pub seed: u64,
    /// The training examples' ids, in file order.
    pub examples: Vec<String>,
    /// The command's own settings that change what is learnt (alignment: the chain cut).
    #[serde(default)]
    pub task: String,
}

/// Where the run stands: `epoch` epochs done, then `next` examples of epoch `epoch`'s order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub settings: RunSettings,
    pub epoch: usize,
    pub next: usize,
    pub step: usize,
    /// Mean training loss of each finished epoch.
    pub epoch_losses: Vec<f64>,
    /// Sum of the losses of the current epoch so far.
    pub loss_sum: f64,
}

pub struct Checkpoint {
    dir: PathBuf,
}

impl Checkpoint {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn fail(&self, reason: impl Into<String>) -> TrainError {
        TrainError::Checkpoint {
            path: self.dir.clone(),
            reason: reason.into(),
        }
    }

    pub fn save(
        &self,
        params: &LoraParams,
        opt: &AdamW,
        progress: &Progress,
    ) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        let mut tensors: HashMap<String, Tensor> = params
            .vars()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        tensors.extend(opt.moments());
        // Written aside and renamed, so a run killed mid-save leaves the previous checkpoint whole.
        let state = self.dir.join("state.safetensors");
        let partial = self.dir.join("state.safetensors.partial");
        candle_core::safetensors::save(&tensors, &partial)?;
        let progress_path = self.dir.join("progress.json");
        let progress_partial = self.dir.join("progress.json.partial");
        let text = serde_json::to_string_pretty(progress)
            .map_err(|e| self.fail(format!("cannot serialise progress: {e}")))?;
        std::fs::write(&progress_partial, text)
            .map_err(|e| TrainError::io(&progress_partial, e))?;
        std::fs::rename(&partial, &state).map_err(|e| TrainError::io(&state, e))?;
        std::fs::rename(&progress_partial, &progress_path)
            .map_err(|e| TrainError::io(&progress_path, e))
    }

    /// Restores `params` and `opt` and returns the progress, when a checkpoint is there; refuses
    /// one made under other settings.
    pub fn resume(
        &self,
        settings: &RunSettings,
        params: &LoraParams,
        opt: &mut AdamW,
    ) -> Result<Option<Progress>, TrainError> {
        let progress_path = self.dir.join("progress.json");
        if !progress_path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&progress_path)
            .map_err(|e| TrainError::io(&progress_path, e))?;
        let progress: Progress =
            serde_json::from_str(&text).map_err(|e| self.fail(format!("progress.json: {e}")))?;
        if &progress.settings != settings {
            return Err(self.fail(
                "made by a run with other settings (model, data, rank, modules, learning rate, seed or the command's own, such as --max-chain-tokens); \
                 remove it or use another --out to start over",
            ));
        }
        let state = self.dir.join("state.safetensors");
        let tensors = candle_core::safetensors::load(&state, &Device::Cpu)?;
        params.restore(&tensors).map_err(|e| self.fail(e))?;
        opt.restore(progress.step, &tensors)
            .map_err(|e| self.fail(e))?;
        Ok(Some(progress))
    }
}
