//! scot-engine: the inference library shared by scot's draft and target nodes.
//!
//! Qwen2 and Llama decoders on candle, loaded from GGUF or safetensors, with an explicit KV cache:
//! one prompt is prefilled once and forked into a batch of sampled sequences (drafting), a session can
//! be extended and continued (think, then answer), and a prompt can be scored at its last position
//! (selection).

pub mod chat_template;
pub mod error;
pub mod lora;
pub mod tokenizer;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use error::{EngineError, Result};
pub use lora::LoraAdapter;
pub use tokenizer::TextTokenizer;
