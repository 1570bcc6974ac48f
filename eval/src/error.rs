//! Errors of the evaluation harness.

use std::path::PathBuf;

/// Everything `scot eval` / `scot report` can fail on.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: no problems to run (offset/limit past the end, or an empty file)")]
    EmptyDataset { path: PathBuf },
    #[error(transparent)]
    Connect(#[from] scot_client::ConnectError),
    #[error("cannot connect to the node at {endpoint}: {message}")]
    NodeConnect { endpoint: String, message: String },
    #[error("no result lines found in {0:?}")]
    NoResults(Vec<PathBuf>),
    #[error("font file {path} is missing or unreadable ({message}); install Debian fonts-dejavu-core or pass --font")]
    Font { path: PathBuf, message: String },
    #[error("plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
