//! The residual stream entering the last block, per training prompt, computed once by the engine
//! (a prefill through every lower block: the expensive part of training) and kept on disk in f16,
//! keyed by the model's fingerprint and the prompt's tokens, so epochs, reruns and resumed runs
//! read it back instead.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use scot_engine::Model;
use sha2::{Digest, Sha256};

use crate::error::TrainError;

pub struct ResidualCache {
    dir: PathBuf,
    model_fingerprint: String,
}

impl ResidualCache {
    pub fn new(dir: &Path, model_fingerprint: &str) -> Result<Self, TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            model_fingerprint: model_fingerprint.to_string(),
        })
    }

    fn path(&self, tokens: &[u32]) -> PathBuf {
        let mut hasher = Sha256::new();
        hasher.update(self.model_fingerprint.as_bytes());
        for t in tokens {
            hasher.update(t.to_le_bytes());
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("{digest}.safetensors"))
    }

    /// Whether the stream of `tokens` is on disk.
    pub fn has(&self, tokens: &[u32]) -> bool {
        self.path(tokens).is_file()
    }

    /// Computes and stores the stream of `tokens` unless it is there (a file left half-written by
    /// an interrupted run is replaced: it is written aside and renamed).
    pub fn fill(&self, model: &Model, tokens: &[u32]) -> Result<(), TrainError> {
        let path = self.path(tokens);
        if path.is_file() {
            return Ok(());
        }
        let x = model
            .residual_stream_before_top(tokens)?
            .to_dtype(DType::F16)?;
        let partial = path.with_extension("partial");
        candle_core::safetensors::save(
            &std::collections::HashMap::from([("x".to_string(), x)]),
            &partial,
        )?;
        std::fs::rename(&partial, &path).map_err(|e| TrainError::io(&path, e))
    }

    /// The stream `[tokens, hidden]` in f32.
    pub fn load(&self, tokens: &[u32]) -> Result<Tensor, TrainError> {
        let path = self.path(tokens);
        let mut saved = candle_core::safetensors::load(&path, &Device::Cpu)?;
        let x = saved.remove("x").ok_or_else(|| TrainError::Checkpoint {
            path: path.clone(),
            reason: "no tensor `x`".into(),
        })?;
        if x.dim(0)? != tokens.len() {
            return Err(TrainError::Checkpoint {
                path,
                reason: format!("{} rows for {} tokens", x.dim(0)?, tokens.len()),
            });
        }
        Ok(x.to_dtype(DType::F32)?)
    }
}
