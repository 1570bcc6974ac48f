//! Flags every node takes for its model, and loading the model and templates from them.

use std::path::PathBuf;
use std::sync::Arc;

use scot_engine::{DeviceSpec, LoadOptions, Model};
use scot_templates::TemplateLibrary;

use crate::engine_chat::ThinkingPrompt;
use crate::engine_gate::EngineGate;
use crate::kv_budget::{default_cpu_budget_bytes, mib_to_bytes, KvBudget};
use crate::node_model::NodeModel;
use crate::speculation::SpeculativeArgs;

/// Default `--max-concurrent`: jobs running at once, whose decoding steps the engine batches
/// (BENCHMARKS.md, "Continuous batching"); the KV budget still holds back jobs it has no room for.
pub const DEFAULT_MAX_CONCURRENT: usize = 16;

/// Default `--max-queued`: room for four coordinators each at their default per-node limit (16).
pub const DEFAULT_MAX_QUEUED: usize = 64;

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a .gguf file, or a Hugging Face folder (config.json + *.safetensors + tokenizer.json).
    #[arg(long, env = "SCOT_MODEL")]
    pub model: PathBuf,
    /// PEFT LoRA adapter folder: merged into safetensors weights at load; beside GGUF weights, applied
    /// at run time (y = W x + s B A x).
    #[arg(long, env = "SCOT_LORA")]
    pub lora: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, env = "SCOT_DEVICE", default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceSpec,
    /// Cap on the context length, below the model's own.
    #[arg(long, env = "SCOT_MAX_CONTEXT")]
    pub max_context: Option<usize>,
    /// Folder of template sets (<dir>/<set>/{system.txt,draft.jinja,answer.jinja,select.jinja,
    /// select_prefix.txt}); the built-in `default` set is always there.
    #[arg(long, env = "SCOT_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,
    /// When to add the system prompt asking for <think>…</think> reasoning.
    #[arg(long, env = "SCOT_THINKING_PROMPT", value_enum, default_value = "auto")]
    pub thinking_prompt: ThinkingPrompt,
    /// Engine jobs run at once: their sequences decode together, one batch per step (continuous
    /// batching); more queue. Advertised in etcd as the node's slots, 1..=256
    /// (`scot_proto::limits::MAX_NODE_SLOTS`).
    #[arg(long, env = "SCOT_MAX_CONCURRENT", default_value_t = DEFAULT_MAX_CONCURRENT,
          value_parser = node_slots)]
    pub max_concurrent: usize,
    /// Engine jobs that may wait for a turn beyond those running; past that the node answers
    /// RESOURCE_EXHAUSTED at once (a caller tries another node) instead of queueing without bound.
    #[arg(long, env = "SCOT_MAX_QUEUED", default_value_t = DEFAULT_MAX_QUEUED)]
    pub max_queued: usize,
    /// KV-cache memory budget in MiB: every job reserves what its sequences can grow to (prompt +
    /// caps) before it runs and waits while the budget is taken; a job that needs more than all of it
    /// is refused with the numbers. Default on CPU: half the memory available once the model is loaded
    /// (the machine's or the cgroup's, whichever is less); set it when several nodes share a machine.
    /// 0 = no budget (the default on CUDA, whose memory is not read).
    #[arg(long, env = "SCOT_KV_BUDGET_MIB")]
    pub kv_budget_mib: Option<u64>,
    /// Tensor-parallel ranks the model is sharded over (by attention heads; 1 = unsharded). On CPU
    /// the ranks are threads; with `--device cuda:B` rank r runs on GPU B+r.
    #[arg(long = "tp", visible_alias = "tensor-parallel", env = "SCOT_TENSOR_PARALLEL",
          default_value_t = 1, value_parser = parse_tensor_parallel)]
    pub tensor_parallel: usize,
    /// Test hook: RANK:FORWARD_CALLS makes tensor-parallel rank RANK fail in the forward pass after
    /// FORWARD_CALLS more passes (0 = the next one).
    #[arg(long, hide = true, value_parser = parse_rank_fault)]
    pub fault_inject_rank_failure: Option<RankFault>,
}

/// Where `--fault-inject-rank-failure` makes a rank fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankFault {
    pub rank: usize,
    pub forward_calls: usize,
}

/// At least 1 (1 = unsharded); whether the model's heads (and the devices) allow it is checked at load.
pub fn parse_tensor_parallel(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("tensor parallelism must be at least 1 (1 = unsharded)".into()),
        Ok(ranks) => Ok(ranks),
        Err(_) => Err(format!(
            "{text:?} is not a number of tensor-parallel ranks (1 = unsharded)"
        )),
    }
}

/// `RANK:FORWARD_CALLS`.
pub fn parse_rank_fault(text: &str) -> Result<RankFault, String> {
    let parsed = text.split_once(':').and_then(|(rank, calls)| {
        Some(RankFault {
            rank: rank.trim().parse().ok()?,
            forward_calls: calls.trim().parse().ok()?,
        })
    });
    parsed.ok_or_else(|| format!("{text:?}: expected RANK:FORWARD_CALLS, e.g. 1:3"))
}

/// `cpu`, `cuda` (= cuda:0) or `cuda:N`.
pub fn parse_device(text: &str) -> Result<DeviceSpec, String> {
    match text.trim() {
        "cpu" => Ok(DeviceSpec::Cpu),
        "cuda" => Ok(DeviceSpec::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceSpec::Cuda)
            .ok_or_else(|| format!("unknown device {other:?}: use cpu, cuda or cuda:N")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading model {path}: {source}")]
    Model {
        path: PathBuf,
        #[source]
        source: Box<scot_engine::EngineError>,
    },
    #[error("loading templates: {0}")]
    Templates(#[from] scot_templates::TemplateError),
    #[error(
        "--fault-inject-rank-failure names rank {rank}, but the model runs on {ranks} \
         tensor-parallel rank(s): it needs --tp 2 or more and a rank below --tp"
    )]
    FaultRank { rank: usize, ranks: usize },
    #[error("model loading thread failed: {0}")]
    Thread(String),
    #[error(transparent)]
    Fingerprint(#[from] crate::model_identity::FingerprintError),
}

impl ModelArgs {
    /// [`ModelArgs::load`] on a blocking thread, so loading never stalls the async runtime.
    pub async fn load_off_runtime(&self) -> Result<NodeModel, LoadError> {
        self.load_off_runtime_with(&SpeculativeArgs::default())
            .await
    }

    /// [`ModelArgs::load_with`] on a blocking thread.
    pub async fn load_off_runtime_with(
        &self,
        speculative: &SpeculativeArgs,
    ) -> Result<NodeModel, LoadError> {
        let (args, speculative) = (self.clone(), speculative.clone());
        tokio::task::spawn_blocking(move || args.load_with(&speculative))
            .await
            .map_err(|e| LoadError::Thread(e.to_string()))?
    }

    /// Loads the templates first (cheap, fails fast) and then the model.
    pub fn load(&self) -> Result<NodeModel, LoadError> {
        self.load_with(&SpeculativeArgs::default())
    }

    /// [`ModelArgs::load`], with the speculative draft `speculative` names (if any) loaded after the
    /// model; the KV budget then counts both caches per position.
    pub fn load_with(&self, speculative: &SpeculativeArgs) -> Result<NodeModel, LoadError> {
        let templates = match &self.templates_dir {
            Some(dir) => TemplateLibrary::load(dir)?,
            None => TemplateLibrary::builtin(),
        };
        let options = LoadOptions {
            path: self.model.clone(),
            lora: self.lora.clone(),
            device: self.device,
            max_context: self.max_context,
            tensor_parallel: self.tensor_parallel,
            ..LoadOptions::default()
        };
        if let Some(fault) = self.fault_inject_rank_failure {
            // Checked before the (slow) load so a bad test flag fails fast.
            if self.tensor_parallel < 2 || fault.rank >= self.tensor_parallel {
                return Err(LoadError::FaultRank {
                    rank: fault.rank,
                    ranks: self.tensor_parallel,
                });
            }
        }
        let model = Model::load(&options).map_err(|source| LoadError::Model {
            path: self.model.clone(),
            source: Box::new(source),
        })?;
        if let Some(fault) = self.fault_inject_rank_failure {
            tracing::warn!(
                rank = fault.rank,
                forward_calls = fault.forward_calls,
                "fault injection: this rank will fail"
            );
            model.fail_rank_after(fault.rank, fault.forward_calls);
        }
        let speculator = speculative
            .load(&model, &options)
            .map_err(|source| LoadError::Model {
                path: speculative.speculative_draft.clone().unwrap_or_default(),
                source: Box::new(source),
            })?;
        let fingerprint =
            crate::model_identity::model_fingerprint(&self.model, self.lora.as_deref())?;
        // The draft's cache mirrors every position of the model's.
        let draft_kv = speculator
            .as_ref()
            .map_or(0, |s| s.draft().info().kv_bytes_per_token);
        let kv = self.kv_budget(&model, draft_kv);
        let native_thinking = self.thinking_prompt.native_thinking(&model);
        let tensor_parallel = model.tensor_parallel();
        tracing::info!(
            model = %model.info().name,
            %fingerprint,
            context = model.info().context_length,
            tensor_parallel,
            native_thinking,
            template_sets = ?templates.names(),
            kv_budget_tokens = ?kv.tokens(),
            kv_bytes_per_token = kv.bytes_per_token(),
            speculative_draft = ?speculator.as_ref().map(|s| s.draft().path().to_path_buf()),
            speculative_tokens = speculator.as_ref().map(|s| s.tokens()),
            "model loaded"
        );
        let context = model.info().context_length;
        Ok(NodeModel {
            model: Arc::new(model),
            fingerprint,
            tensor_parallel,
            templates,
            native_thinking,
            speculator,
            gate: EngineGate::new(self.max_concurrent, self.max_queued, kv, context),
        })
    }

    /// `--kv-budget-mib`, or the default for the device (read now, with the model loaded).
    fn kv_budget(&self, model: &Model, draft_kv_bytes_per_token: usize) -> KvBudget {
        let info = model.info();
        let bytes = match (self.kv_budget_mib, self.device) {
            (Some(mib), _) => Some(mib_to_bytes(mib)),
            (None, DeviceSpec::Cpu) => default_cpu_budget_bytes(),
            (None, DeviceSpec::Cuda(_)) => {
                tracing::warn!("no --kv-budget-mib on CUDA: jobs are bounded by the context only");
                None
            }
        };
        let bytes_per_token = info.kv_bytes_per_token + draft_kv_bytes_per_token;
        KvBudget::new(bytes, bytes_per_token, info.context_length)
    }
}

/// `--max-concurrent`: 1..=MAX_NODE_SLOTS.
fn node_slots(text: &str) -> Result<usize, String> {
    let max = scot_proto::limits::MAX_NODE_SLOTS as usize;
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!(parse_device("cpu"), Ok(DeviceSpec::Cpu));
        assert_eq!(parse_device("cuda"), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(parse_device("cuda:3"), Ok(DeviceSpec::Cuda(3)));
        assert!(parse_device("tpu").is_err());
    }

    #[test]
    fn max_concurrent_stays_within_what_a_node_may_advertise() {
        assert_eq!(node_slots("1"), Ok(1));
        assert_eq!(node_slots("256"), Ok(256));
        for bad in ["0", "257", "4294967295", "-1", "many"] {
            assert!(node_slots(bad).unwrap_err().contains("1 to 256"), "{bad}");
        }
    }

    #[test]
    fn tensor_parallel_flags_parse() {
        assert_eq!(parse_tensor_parallel("2"), Ok(2));
        assert!(parse_tensor_parallel("0")
            .unwrap_err()
            .contains("at least 1"));
        assert!(parse_tensor_parallel("two").is_err());
        assert_eq!(
            parse_rank_fault("1:3"),
            Ok(RankFault {
                rank: 1,
                forward_calls: 3
            })
        );
        assert!(parse_rank_fault("1").is_err());
        assert!(parse_rank_fault("a:b").is_err());
    }
}
