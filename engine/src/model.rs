//! `Model`: loads weights, tokenizer and chat template, warms the kernels up, and hands out sessions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;

use crate::batch;
use crate::chat_template::ChatTemplate;
use crate::collective::Collective;
use crate::collective_cpu::CpuCollective;
use crate::config::{self, GgufMeta, ModelInfo};
use crate::device::{open_device, DeviceSpec};
use crate::error::{EngineError, Result};
use crate::generation::{BatchEvent, CancelToken, SamplingParams, SequenceOutput, StopCriteria};
use crate::lora::LoraAdapter;
use crate::session::{Session, Speculator};
use crate::shard::head_plan;
use crate::step_loop::{StepLoop, StepStats, Stepper};
use crate::tensor_parallel::Ranks;
use crate::tokenizer::TextTokenizer;
use crate::transformer::Transformer;
use crate::weights::{self, GgufFile, WeightOptions};

/// Tokens that end a chat turn in the supported model families, added to the EOS set when present.
const END_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// A `.gguf` file, or a Hugging Face folder (config.json + *.safetensors + tokenizer.json).
    pub path: PathBuf,
    /// PEFT adapter folder (adapter_config.json + adapter_model.safetensors): merged into safetensors
    /// weights, applied beside GGUF (quantized) weights at run time.
    pub lora: Option<PathBuf>,
    pub device: DeviceSpec,
    /// Cap below the model's own context length.
    pub max_context: Option<usize>,
    /// Store GGUF Q5_0 linear weights as Q8_0 with identical values (candle has SIMD kernels for
    /// Q8_0 but not Q5_0: ~2x faster prefill on the Qwen2.5-0.5B). Logits then differ from the
    /// file's own kernels only by f32 summation order. Default on.
    pub q5_0_as_q8_0: bool,
    /// Tensor-parallel ranks (default 1: the whole model on `device`, no threads). With N > 1 the
    /// weights and KV caches are sharded by heads and FFN columns over N ranks: N threads on the
    /// CPU, or GPUs `Cuda(base)..Cuda(base + N - 1)` (needs the `nccl` feature). On the CPU the
    /// ranks share candle's one kernel thread pool and take turns on it; with
    /// `CANDLE_NUM_THREADS=1` each rank computes on its own thread instead (see BENCHMARKS.md).
    pub tensor_parallel: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            lora: None,
            device: DeviceSpec::Cpu,
            max_context: None,
            q5_0_as_q8_0: true,
            tensor_parallel: 1,
        }
    }
}

impl LoadOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }
}

/// A loaded model: immutable weights shared by any number of sessions (each owns its KV cache),
/// whose forward passes all run on the model's engine loop (continuous batching: the decoding steps
/// of concurrent sessions go together).
pub struct Model {
    info: ModelInfo,
    transformer: Arc<Ranks>,
    steps: StepLoop,
    tokenizer: TextTokenizer,
    chat_template: Option<ChatTemplate>,
    path: PathBuf,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("info", &self.info)
            .field("tensor_parallel", &self.transformer.world_size())
            .finish()
    }
}

fn context_limit(model_len: usize, cap: Option<usize>) -> Result<usize> {
    match cap {
        Some(0) => Err(EngineError::InvalidRequest(
            "max_context must be positive".into(),
        )),
        Some(c) => Ok(c.min(model_len)),
        None => Ok(model_len),
    }
}

/// Where the ranks of a model run.
struct Placement {
    /// Where the whole model is loaded before sharding (the model's device when unsharded).
    load_device: Device,
    /// One device per rank and their collective, when sharded.
    ranks: Option<(Vec<Device>, Arc<dyn Collective>)>,
}

fn placement(opts: &LoadOptions) -> Result<Placement> {
    let tp = opts.tensor_parallel;
    if tp == 0 {
        return Err(EngineError::InvalidRequest(
            "tensor_parallel must be at least 1".into(),
        ));
    }
    if tp == 1 {
        return Ok(Placement {
            load_device: open_device(opts.device)?,
            ranks: None,
        });
    }
    match opts.device {
        DeviceSpec::Cpu => Ok(Placement {
            load_device: Device::Cpu,
            ranks: Some((vec![Device::Cpu; tp], Arc::new(CpuCollective::new(tp)))),
        }),
        DeviceSpec::Cuda(base) => cuda_ranks(base, tp),
    }
}

#[cfg(not(feature = "nccl"))]
fn cuda_ranks(base: usize, tp: usize) -> Result<Placement> {
    Err(EngineError::Device(format!(
        "tensor parallelism {tp} on CUDA devices {base}..{} needs scot-engine built with the \
         `nccl` feature",
        base + tp - 1
    )))
}

#[cfg(feature = "nccl")]
fn cuda_ranks(base: usize, tp: usize) -> Result<Placement> {
    let ordinals: Vec<usize> = (base..base + tp).collect();
    let devices = ordinals
        .iter()
        .map(|&o| open_device(DeviceSpec::Cuda(o)))
        .collect::<Result<Vec<_>>>()?;
    let collective = crate::collective_nccl::NcclCollective::new(&ordinals)?;
    Ok(Placement {
        load_device: Device::Cpu,
        ranks: Some((devices, Arc::new(collective))),
    })
}

/// The decoder on its rank(s): as loaded, or sharded over the placement's ranks.
fn place(transformer: Transformer, placement: Placement) -> Result<Ranks> {
    match placement.ranks {
        None => Ok(Ranks::single(transformer)),
        Some((devices, collective)) => Ranks::sharded(transformer, &devices, collective),
    }
}

fn end_tokens(tokenizer: &TextTokenizer, mut ids: Vec<u32>, vocab: usize) -> Vec<u32> {
    for name in END_TOKENS {
        if let Some(id) = tokenizer.token_to_id(name) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids.retain(|&id| (id as usize) < vocab);
    ids
}

impl Model {
    pub fn load(opts: &LoadOptions) -> Result<Model> {
        let path = &opts.path;
        let meta = std::fs::metadata(path).map_err(|source| EngineError::Io {
            path: path.clone(),
            source,
        })?;
        let model = if meta.is_dir() {
            Self::load_hf(opts)?
        } else {
            Self::load_gguf(opts)?
        };
        model.warm_up()?;
        tracing::info!(
            path = %path.display(),
            architecture = %model.info.architecture,
            context = model.info.context_length,
            "model loaded"
        );
        Ok(model)
    }

    fn load_gguf(opts: &LoadOptions) -> Result<Model> {
        let path = &opts.path;
        let mut file = GgufFile::open(path)?;
        let meta = GgufMeta {
            content: &file.content,
            path,
        };
        let architecture = config::gguf_architecture(&meta)?;
        let vocab_rows = file.vocab_rows()?;
        let hp = config::hyperparams_from_gguf(&meta, vocab_rows)?;
        // Read (and validated) before the weights, so a bad adapter fails fast.
        let adapter = opts.lora.as_deref().map(LoraAdapter::load).transpose()?;
        // A tensor-parallel degree the heads do not allow fails before the weights are read.
        head_plan(hp.n_head, hp.n_kv_head, opts.tensor_parallel)?;
        let placement = placement(opts)?;
        let device = placement.load_device.clone();
        let context_length = context_limit(hp.context_length, opts.max_context)?;
        let tokenizer = TextTokenizer::from_gguf(&file.content, path)?;
        let chat_template = ChatTemplate::from_gguf(&file.content, path)?;
        let mut eos = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            // An id past u32 cannot be a token; end_tokens drops ids outside the vocabulary.
            if let Some(id) = meta.uint(key)?.and_then(|id| u32::try_from(id).ok()) {
                eos.push(id);
            }
        }
        let bos_token_id = match meta.bool("tokenizer.ggml.add_bos_token")? {
            Some(true) => meta
                .uint("tokenizer.ggml.bos_token_id")?
                .and_then(|id| u32::try_from(id).ok())
                .filter(|&id| (id as usize) < vocab_rows),
            _ => None,
        };
        let name = meta
            .string("general.name")?
            .unwrap_or_else(|| file_stem(path));
        let eos_token_ids = end_tokens(&tokenizer, eos, vocab_rows);
        let kv_bytes_per_token = hp.kv_bytes_per_token();
        let mut transformer = file.load_transformer(
            hp,
            context_length,
            &device,
            WeightOptions {
                q5_0_as_q8_0: opts.q5_0_as_q8_0,
            },
        )?;
        if let Some(adapter) = &adapter {
            adapter.attach_to(&mut transformer)?;
        }
        let transformer = Arc::new(place(transformer, placement)?);
        Ok(Model {
            steps: StepLoop::start(transformer.clone())?,
            info: ModelInfo {
                name,
                architecture,
                context_length,
                vocab_size: vocab_rows,
                eos_token_ids,
                bos_token_id,
                kv_bytes_per_token,
            },
            transformer,
            tokenizer,
            chat_template,
            path: path.clone(),
        })
    }

    fn load_hf(opts: &LoadOptions) -> Result<Model> {
        let dir = &opts.path;
        let cfg = config::hf_config(dir)?;
        let hp = cfg.hyperparams;
        head_plan(hp.n_head, hp.n_kv_head, opts.tensor_parallel)?;
        let placement = placement(opts)?;
        let device = placement.load_device.clone();
        let context_length = context_limit(hp.context_length, opts.max_context)?;
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(EngineError::Tokenizer(format!(
                "{}: missing tokenizer.json",
                dir.display()
            )));
        }
        let tokenizer = TextTokenizer::from_file(&tokenizer_path)?;
        let chat_template = ChatTemplate::from_tokenizer_config(dir)?;
        let (mut tensors, _origin) = weights::read_safetensors(dir, &device)?;
        if let Some(lora) = &opts.lora {
            LoraAdapter::load(lora)?.merge_into(&mut tensors)?;
        }
        let architecture = hp.architecture;
        let vocab_size = hp.vocab_size;
        let kv_bytes_per_token = hp.kv_bytes_per_token();
        let transformer = weights::dense_transformer(dir, tensors, hp, context_length, &device)?;
        let transformer = Arc::new(place(transformer, placement)?);
        Ok(Model {
            steps: StepLoop::start(transformer.clone())?,
            info: ModelInfo {
                name: cfg.name.unwrap_or_else(|| file_stem(dir)),
                architecture,
                context_length,
                vocab_size,
                eos_token_ids: end_tokens(&tokenizer, cfg.eos_token_ids, vocab_size),
                bos_token_id: cfg.bos_token_id.filter(|&id| (id as usize) < vocab_size),
                kv_bytes_per_token,
            },
            transformer,
            tokenizer,
            chat_template,
            path: dir.clone(),
        })
    }

    /// candle repacks quantized weights on their first multiplication (seconds on the 1.5B), once per
    /// kernel family: run a multi-row prefill and a single-row step now instead of in the first request.
    fn warm_up(&self) -> Result<()> {
        let n = 33.min(self.info.context_length.saturating_sub(1));
        if n == 0 {
            return Ok(());
        }
        let mut session = self.session()?;
        session.extend(&vec![0u32; n])?;
        session.extend(&[0u32])?;
        Ok(())
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// A new session with an empty KV cache.
    pub fn session(&self) -> Result<Session<'_>> {
        Session::new(self)
    }

    /// A new session whose `generate` decodes speculatively with `speculator`'s draft (made for
    /// this model by [`Speculator::new`]); greedy output is identical to a plain session's.
    pub fn speculative_session<'m>(&'m self, speculator: &'m Speculator) -> Result<Session<'m>> {
        Session::speculative(self, speculator)
    }

    /// Drafting: prefill `prompt` once, fork the cache into `sequences.len()` sequences decoding
    /// together as one batch, each with its own sampler and independent stop. Sequence i's output is
    /// identical to `Session::generate` with `sequences[i]` after extending a fresh session by `prompt`.
    pub fn generate_batch(
        &self,
        prompt: &[u32],
        sequences: &[SamplingParams],
        stop: &StopCriteria,
        on_event: &mut dyn FnMut(BatchEvent),
        cancel: &CancelToken,
    ) -> Result<Vec<SequenceOutput>> {
        batch::generate_batch(self, prompt, sequences, stop, on_event, cancel)
    }

    /// Tensor-parallel ranks the model runs on (1: unsharded).
    pub fn tensor_parallel(&self) -> usize {
        self.transformer.world_size()
    }

    /// Why the model stopped working: set once a tensor-parallel rank failed, after which every
    /// call returns `EngineError::RankFailed` at once. A server should report NOT_SERVING and exit.
    pub fn failure(&self) -> Option<String> {
        self.transformer
            .failure()
            .map(|(rank, reason)| EngineError::RankFailed { rank, reason }.to_string())
    }

    /// Test hook (tensor parallelism > 1 only): rank `rank` returns an error in the middle of the
    /// forward pass that follows `forward_calls` more passes (0: the next one).
    #[doc(hidden)]
    pub fn fail_rank_after(&self, rank: usize, forward_calls: usize) {
        self.transformer.inject_fault(rank, forward_calls, false);
    }

    /// Test hook (tensor parallelism > 1 only): as `fail_rank_after`, but the rank panics.
    #[doc(hidden)]
    pub fn panic_rank_after(&self, rank: usize, forward_calls: usize) {
        self.transformer.inject_fault(rank, forward_calls, true);
    }

    pub(crate) fn ranks(&self) -> &Ranks {
        &self.transformer
    }

    /// A participant of the model's engine loop: every forward pass goes through one.
    pub(crate) fn stepper(&self) -> Stepper<'_> {
        self.steps.stepper()
    }

    /// What the engine loop has run: decoding batches and their sizes, other passes.
    pub fn step_stats(&self) -> StepStats {
        self.steps.stats()
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[allow(dead_code)]
fn assert_model_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Model>();
}
