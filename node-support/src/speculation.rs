//! Token-level speculative decoding on a node: the flags naming the draft model, loading it beside
//! the node's model, and the counters of what it proposed and the model kept.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use prometheus_client::metrics::counter::Counter;
use scot_engine::{LoadOptions, Model, SpeculationStats, Speculator, MAX_SPECULATIVE_TOKENS};

/// Default `--speculative-tokens`: from the acceptance rate and cost ratio measured on the default
/// CPU pair (BENCHMARKS.md, "Token-level speculative decoding").
pub const DEFAULT_SPECULATIVE_TOKENS: usize = 2;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct SpeculativeArgs {
    /// Draft model for token-level speculative decoding of this node's own generation (a .gguf
    /// file or Hugging Face folder with the same tokenizer): it proposes tokens, the model verifies
    /// them in one pass. Greedy output is unchanged; sampled output keeps the model's distribution.
    /// Off when unset.
    #[arg(long, env = "SCOT_SPECULATIVE_DRAFT")]
    pub speculative_draft: Option<PathBuf>,
    /// Tokens the draft proposes per verification pass.
    #[arg(long, env = "SCOT_SPECULATIVE_TOKENS", default_value_t = DEFAULT_SPECULATIVE_TOKENS,
          value_parser = speculative_tokens)]
    pub speculative_tokens: usize,
}

/// `--speculative-tokens`: 1..=MAX_SPECULATIVE_TOKENS.
fn speculative_tokens(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_SPECULATIVE_TOKENS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to {MAX_SPECULATIVE_TOKENS}"
        )),
    }
}

impl SpeculativeArgs {
    /// The draft model loaded for `model` (same device and context cap, unsharded) and checked
    /// against its tokenizer; None when speculation is off.
    pub(crate) fn load(
        &self,
        model: &Model,
        options: &LoadOptions,
    ) -> Result<Option<Arc<Speculator>>, scot_engine::EngineError> {
        let Some(path) = &self.speculative_draft else {
            return Ok(None);
        };
        let draft = Model::load(&LoadOptions {
            path: path.clone(),
            lora: None,
            tensor_parallel: 1,
            ..options.clone()
        })?;
        let speculator = Speculator::new(model, Arc::new(draft), self.speculative_tokens)?;
        Ok(Some(Arc::new(speculator)))
    }
}

struct SpeculationCounters {
    proposed: Counter,
    accepted: Counter,
}

static COUNTERS: LazyLock<SpeculationCounters> = LazyLock::new(|| {
    let counters = SpeculationCounters {
        proposed: Counter::default(),
        accepted: Counter::default(),
    };
    scot_telemetry::register(
        "scot_node_speculative_proposed_tokens",
        "Tokens the speculative draft proposed to this node's model",
        counters.proposed.clone(),
    );
    scot_telemetry::register(
        "scot_node_speculative_accepted_tokens",
        "Proposed tokens this node's model kept",
        counters.accepted.clone(),
    );
    counters
});

/// Adds one session's speculation to the node's counters.
pub fn record_speculation(stats: &SpeculationStats) {
    COUNTERS.proposed.inc_by(stats.proposed);
    COUNTERS.accepted.inc_by(stats.accepted);
}
