//! scot-engine: the inference library shared by scot's draft and target nodes.
//!
//! Qwen2 and Llama decoders on candle, loaded from GGUF or safetensors, with an explicit KV cache:
//! one prompt is prefilled once and forked into a batch of sampled sequences (drafting), a session can
//! be extended and continued (think, then answer), optionally with a draft model speculating its
//! tokens, and a prompt can be scored at its last position (selection). PEFT LoRA adapters merge into
//! safetensors weights or run beside GGUF ones; the last block, dense and differentiable, is what a
//! LoRA trainer fits (`TopBlock`). Every forward pass of a
//! model runs on its engine loop, which batches the decoding steps of concurrent sessions.

mod batch;
mod bounded_read;
pub mod chat_template;
pub mod collective;
mod collective_cpu;
#[cfg(feature = "nccl")]
mod collective_nccl;
mod config;
mod device;
pub mod error;
mod generation;
pub mod gguf_header;
mod kv_cache;
mod linear;
pub mod lora;
mod model;
mod q4k_tiles;
mod q6k_prefill;
mod q6k_rows;
mod q8_0_tiles;
mod q8k_rows;
mod rope;
mod rows_dispatch;
mod sampling;
mod session;
mod shard;
mod step_loop;
mod stop;
mod tensor_parallel;
pub mod tokenizer;
mod top_block;
mod transformer;
mod weights;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use collective::Collective;
pub use collective_cpu::CpuCollective;
#[cfg(feature = "nccl")]
pub use collective_nccl::NcclCollective;
pub use config::{Architecture, ModelInfo};
pub use device::DeviceSpec;
pub use error::{EngineError, Result};
pub use generation::{
    BatchEvent, CancelToken, FinishReason, SamplingParams, SequenceOutput, StopCriteria, TokenEvent,
};
pub use kv_cache::allocated_positions as kv_allocated_positions;
pub use lora::LoraAdapter;
pub use model::{LoadOptions, Model};
pub use session::{Session, SpeculationStats, Speculator, MAX_SPECULATIVE_TOKENS};
pub use step_loop::StepStats;
pub use tokenizer::TextTokenizer;
pub use top_block::{module_path, LoraTerms, TopBlock, LORA_MODULES};
