//! Text <-> token ids: from tokenizer.json when present, otherwise built from GGUF metadata.
//! (Owned by the engine-text work; signatures are the contract, bodies are placeholders until then.)

use std::path::Path;

use candle_core::quantized::gguf_file;

use crate::error::{EngineError, Result};

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl TextTokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata. `path` is for error messages.
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Self> {
        use candle_core::quantized::tokenizer::TokenizerFromGguf;
        let inner = tokenizers::Tokenizer::from_gguf(content)
            .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self { inner })
    }

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_file(tokenizer_json: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(tokenizer_json)
            .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", tokenizer_json.display())))?;
        Ok(Self { inner })
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
