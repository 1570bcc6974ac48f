//! Everything training can fail on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Engine(#[from] scot_engine::EngineError),
    #[error("tensor operation: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Data(#[from] scot_selection::TrainingDataError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Fingerprint(#[from] scot_node_support::FingerprintError),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
