//! Shared by the node crates' model tests (included with `#[path]`): where a cached model is, and the
//! model flags a test loads it with.
#![allow(dead_code)]

use std::path::PathBuf;

use scot_node_support::{ModelArgs, ThinkingPrompt};

/// `$SCOT_MODEL_DIR/<file>`, else `~/.cache/scot/models/<file>`; a missing model fails the test.
pub fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("SCOT_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/scot/models")
        });
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models.sh first (or set SCOT_MODEL_DIR)",
        path.display()
    );
    path
}

/// The flags' defaults for a cached model on the CPU, its context capped at `max_context`.
pub fn model_args(file: &str, max_context: usize) -> ModelArgs {
    ModelArgs {
        model: model_path(file),
        lora: None,
        device: scot_engine::DeviceSpec::Cpu,
        max_context: Some(max_context),
        templates_dir: None,
        thinking_prompt: ThinkingPrompt::Auto,
        max_concurrent: 1,
        max_queued: scot_node_support::DEFAULT_MAX_QUEUED,
        kv_budget_mib: None,
        tensor_parallel: 1,
        fault_inject_rank_failure: None,
    }
}
