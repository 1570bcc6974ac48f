//! The default models and fetching them on first use with the repository's fetch script (embedded, so
//! it works from any directory).

use std::path::PathBuf;
use std::process::Command;

/// The fetch script, compiled in.
pub const FETCH_SCRIPT: &str = include_str!("../scripts/fetch-models.sh");

pub const DRAFT_MODEL_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const TARGET_MODEL_FILE: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
pub const SMALL_MODEL_FILE: &str = "smollm2-135m-instruct-q4_1.gguf";

/// `$SCOT_MODEL_DIR`, else `${XDG_CACHE_HOME:-$HOME/.cache}/scot/models` (as the fetch script).
pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SCOT_MODEL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("scot").join("models")
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot run bash for the model fetch script: {0}")]
    Spawn(std::io::Error),
    #[error("fetching models failed ({0}); run scripts/fetch-models.sh by hand to see why")]
    Failed(std::process::ExitStatus),
}

/// Runs the fetch script for the named models (`draft`, `target`, `small`); it prints its progress on
/// stderr and skips models already cached and verified.
pub fn fetch_models(names: &[&str]) -> Result<(), FetchError> {
    let status = Command::new("bash")
        .arg("-c")
        .arg(FETCH_SCRIPT)
        .arg("fetch-models.sh")
        .args(names)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(FetchError::Spawn)?;
    if status.success() {
        Ok(())
    } else {
        Err(FetchError::Failed(status))
    }
}

/// The default draft and target model paths, fetched first if either is missing.
pub fn default_models() -> Result<(PathBuf, PathBuf), FetchError> {
    let dir = model_dir();
    let draft = dir.join(DRAFT_MODEL_FILE);
    let target = dir.join(TARGET_MODEL_FILE);
    let mut missing = Vec::new();
    if !draft.is_file() {
        missing.push("draft");
    }
    if !target.is_file() {
        missing.push("target");
    }
    if !missing.is_empty() {
        eprintln!(
            "scot: fetching the default models ({}) into {}",
            missing.join(", "),
            dir.display()
        );
        fetch_models(&missing)?;
    }
    Ok((draft, target))
}
