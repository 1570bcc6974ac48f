//! A training data file `scot collect` appends to: the ids already in it (a rerun skips them, so
//! collection resumes) and one JSON line per example, flushed as it is written.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use scot_selection::TrainingDataError;
use serde::Serialize;

use crate::error::EvalError;

pub struct TrainingFile {
    path: PathBuf,
    file: File,
    /// Ids in the file when it was opened.
    pub done: HashSet<String>,
}

impl TrainingFile {
    /// Opens `path` for appending; `read` parses what is already there (an unreadable or
    /// inconsistent file is an error, not overwritten) and `id` names each example.
    pub fn open<T>(
        path: &Path,
        read: impl Fn(&Path) -> Result<Vec<T>, TrainingDataError>,
        id: impl Fn(T) -> String,
    ) -> Result<Self, EvalError> {
        let done = if path.exists() {
            read(path)
                .map_err(|e| EvalError::InvalidArgument(e.to_string()))?
                .into_iter()
                .map(id)
                .collect()
        } else {
            HashSet::new()
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| EvalError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            done,
        })
    }

    pub fn append(&mut self, id: &str, example: &impl Serialize) -> Result<(), EvalError> {
        let line = serde_json::to_string(example)
            .map_err(|e| EvalError::InvalidArgument(format!("cannot serialise {id}: {e}")))?;
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(|source| EvalError::Write {
                path: self.path.clone(),
                source,
            })
    }
}
