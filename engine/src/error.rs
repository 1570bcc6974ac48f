//! The engine's error type: every variant says which file or input is at fault and what is wrong.

use std::path::PathBuf;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a usable model file (bad magic, truncated, corrupt metadata).
    #[error("{path}: invalid model file: {reason}")]
    InvalidModelFile { path: PathBuf, reason: String },
    #[error("{path}: unsupported architecture `{architecture}` (supported: qwen2, llama)")]
    UnsupportedArchitecture { path: PathBuf, architecture: String },
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("{path}: missing or invalid metadata `{key}`: {reason}")]
    Metadata {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("LoRA adapter {path}: {reason}")]
    Lora { path: PathBuf, reason: String },
    #[error("prompt needs {needed} tokens of context but the limit is {limit}")]
    ContextOverflow { needed: usize, limit: usize },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The job's CancelToken fired during a prefill (the caller's deadline passed or it went away).
    #[error("cancelled during the prefill")]
    Cancelled,
    #[error("device: {0}")]
    Device(String),
    /// A tensor-parallel rank failed; the model cannot run until it is reloaded.
    #[error("tensor-parallel rank {rank} failed: {reason}")]
    RankFailed { rank: usize, reason: String },
    /// The model's engine loop could not run a pass (it panicked, or the loop stopped).
    #[error("engine loop: {0}")]
    EngineLoop(String),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}
