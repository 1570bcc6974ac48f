//! Chat templates (Jinja, rendered by minijinja) from GGUF metadata or tokenizer_config.json.
//! (Owned by the engine-text work; signatures are the contract, bodies are placeholders until then.)

use std::path::Path;

use candle_core::quantized::gguf_file;

use crate::error::{EngineError, Result};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

pub struct ChatTemplate {
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl ChatTemplate {
    pub fn new(source: String, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self> {
        Ok(Self {
            source,
            bos_token,
            eos_token,
        })
    }

    /// The template in GGUF metadata `tokenizer.chat_template`, if any.
    pub fn from_gguf(_content: &gguf_file::Content, _path: &Path) -> Result<Option<Self>> {
        Ok(None)
    }

    /// The template in a Hugging Face folder's tokenizer_config.json, if any.
    pub fn from_tokenizer_config(_dir: &Path) -> Result<Option<Self>> {
        Ok(None)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn render(&self, _messages: &[ChatMessage], _add_generation_prompt: bool) -> Result<String> {
        let _ = (&self.bos_token, &self.eos_token);
        Err(EngineError::ChatTemplate("not implemented yet".into()))
    }
}
