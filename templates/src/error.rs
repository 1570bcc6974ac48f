//! Errors of template loading and prompt rendering.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A request named a template set that is not loaded.
    #[error("unknown template set `{name}` (available: {available})")]
    UnknownSet { name: String, available: String },
    #[error("cannot read template {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template {origin}: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("rendering template {origin}: {reason}")]
    Render { origin: String, reason: String },
    #[error("chat format: {0}")]
    Chat(String),
    #[error("invalid end-of-thinking marker {marker:?}: {reason}")]
    ThinkMarker { marker: String, reason: String },
}
