//! Model description: the public `ModelInfo` and the decoder's hyperparameters, read from GGUF metadata
//! or a Hugging Face `config.json`.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use serde_json::Value as Json;

use crate::bounded_read::{read_text, MAX_CONFIG_BYTES};
use crate::error::{EngineError, Result};

/// Largest context length accepted from a model file (RoPE tables are built for the whole context).
const MAX_CONTEXT: usize = 1 << 21;

/// Upper bounds on the decoder's shape read from a model file: far above any released model, low
/// enough that nothing sized from them (the layer list, expected weight shapes, `heads × head_dim`)
/// overflows or asks for absurd memory before the tensors themselves are checked against them.
const MAX_LAYERS: usize = 1 << 10;
const MAX_HEADS: usize = 1 << 10;
const MAX_HEAD_DIM: usize = 1 << 10;
const MAX_HIDDEN: usize = 1 << 17;
const MAX_INTERMEDIATE: usize = 1 << 20;
const MAX_VOCAB: usize = 1 << 22;

/// Decoder families the engine implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    Qwen2,
    Llama,
}

impl Architecture {
    fn parse(name: &str, path: &Path) -> Result<Self> {
        match name {
            "qwen2" => Ok(Self::Qwen2),
            "llama" => Ok(Self::Llama),
            other => Err(EngineError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                architecture: other.to_string(),
            }),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Qwen2 => "qwen2",
            Self::Llama => "llama",
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What callers need to know about a loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: Architecture,
    /// Usable context (the model's own length, capped by `LoadOptions::max_context`).
    pub context_length: usize,
    /// Rows of the output layer (may exceed the tokenizer's vocabulary: padding rows).
    pub vocab_size: usize,
    /// Tokens that end a generation.
    pub eos_token_ids: Vec<u32>,
    /// The BOS token, only when the model expects it to be prepended to prompts.
    pub bos_token_id: Option<u32>,
    /// Bytes of KV cache one context position of one sequence takes, over every layer and rank
    /// (what a node's memory budget counts in).
    pub kv_bytes_per_token: usize,
}

/// The decoder's shape and numerics.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hyperparams {
    pub architecture: Architecture,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub vocab_size: usize,
    pub rms_eps: f64,
    pub rope_theta: f32,
    /// GGUF llama weights are permuted by llama.cpp: their RoPE pairs adjacent values (`rope_i`).
    pub rope_interleaved: bool,
    pub context_length: usize,
    pub attention_bias: bool,
    pub tie_embeddings: bool,
}

impl Hyperparams {
    /// Keys and values of every layer, one position, as the cache stores them.
    pub fn kv_bytes_per_token(&self) -> usize {
        self.n_layer
            * 2
            * self.n_kv_head
            * self.head_dim
            * crate::kv_cache::KV_DTYPE.size_in_bytes()
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, reason: String| EngineError::Metadata {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        for (key, v, max) in [
            ("block_count", self.n_layer, MAX_LAYERS),
            ("head_count", self.n_head, MAX_HEADS),
            ("head_count_kv", self.n_kv_head, MAX_HEADS),
            ("head_dim", self.head_dim, MAX_HEAD_DIM),
            ("embedding_length", self.hidden, MAX_HIDDEN),
            ("feed_forward_length", self.intermediate, MAX_INTERMEDIATE),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("context_length", self.context_length, MAX_CONTEXT),
        ] {
            if v == 0 {
                return Err(bad(key, "must be positive".into()));
            }
            if v > max {
                return Err(bad(key, format!("{v} exceeds the supported {max}")));
            }
        }
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            return Err(bad(
                "head_count_kv",
                format!(
                    "{} query heads are not a multiple of {} key/value heads",
                    self.n_head, self.n_kv_head
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad(
                "head_dim",
                format!("{} is odd (RoPE needs pairs)", self.head_dim),
            ));
        }
        if !(self.rms_eps > 0.0 && self.rms_eps < 1.0) {
            return Err(bad(
                "rms_norm_eps",
                format!("{} is out of range", self.rms_eps),
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(bad(
                "rope_theta",
                format!("{} is out of range", self.rope_theta),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- GGUF

pub(crate) struct GgufMeta<'a> {
    pub content: &'a gguf_file::Content,
    pub path: &'a Path,
}

impl GgufMeta<'_> {
    fn err(&self, key: &str, reason: impl Into<String>) -> EngineError {
        EngineError::Metadata {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    fn get(&self, key: &str) -> Option<&gguf_file::Value> {
        self.content.metadata.get(key)
    }

    pub fn string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .to_string()
                .map(|s| Some(s.clone()))
                .map_err(|e| self.err(key, e.to_string())),
        }
    }

    /// Any integer type as usize.
    pub fn uint(&self, key: &str) -> Result<Option<usize>> {
        use gguf_file::Value as V;
        let v = match self.get(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let n: i128 = match v {
            V::U8(x) => *x as i128,
            V::I8(x) => *x as i128,
            V::U16(x) => *x as i128,
            V::I16(x) => *x as i128,
            V::U32(x) => *x as i128,
            V::I32(x) => *x as i128,
            V::U64(x) => *x as i128,
            V::I64(x) => *x as i128,
            other => return Err(self.err(key, format!("expected an integer, found {other:?}"))),
        };
        usize::try_from(n)
            .map(Some)
            .map_err(|_| self.err(key, format!("{n} is not a valid count")))
    }

    pub fn required_uint(&self, key: &str) -> Result<usize> {
        self.uint(key)?.ok_or_else(|| self.err(key, "missing"))
    }

    pub fn float(&self, key: &str) -> Result<Option<f64>> {
        use gguf_file::Value as V;
        match self.get(key) {
            None => Ok(None),
            Some(V::F32(x)) => Ok(Some(*x as f64)),
            Some(V::F64(x)) => Ok(Some(*x)),
            Some(other) => Err(self.err(key, format!("expected a float, found {other:?}"))),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .to_bool()
                .map(Some)
                .map_err(|e| self.err(key, e.to_string())),
        }
    }
}

pub(crate) fn gguf_architecture(meta: &GgufMeta<'_>) -> Result<Architecture> {
    let name = meta
        .string("general.architecture")?
        .ok_or_else(|| meta.err("general.architecture", "missing"))?;
    Architecture::parse(&name, meta.path)
}

/// Hyperparameters from `{arch}.*` GGUF metadata; `vocab_size` comes from the embedding tensor.
pub(crate) fn hyperparams_from_gguf(meta: &GgufMeta<'_>, vocab_size: usize) -> Result<Hyperparams> {
    let architecture = gguf_architecture(meta)?;
    let a = architecture.as_str();
    let key = |k: &str| format!("{a}.{k}");
    let n_head = meta.required_uint(&key("attention.head_count"))?;
    let n_kv_head = meta
        .uint(&key("attention.head_count_kv"))?
        .unwrap_or(n_head);
    let hidden = meta.required_uint(&key("embedding_length"))?;
    if n_head == 0 || hidden % n_head != 0 {
        return Err(meta.err(
            &key("attention.head_count"),
            format!("{n_head} heads do not divide the embedding length {hidden}"),
        ));
    }
    let head_dim = meta
        .uint(&key("attention.key_length"))?
        .unwrap_or(hidden / n_head);
    let rms_eps = meta
        .float(&key("attention.layer_norm_rms_epsilon"))?
        .ok_or_else(|| meta.err(&key("attention.layer_norm_rms_epsilon"), "missing"))?;
    let hp = Hyperparams {
        architecture,
        n_layer: meta.required_uint(&key("block_count"))?,
        n_head,
        n_kv_head,
        head_dim,
        hidden,
        intermediate: meta.required_uint(&key("feed_forward_length"))?,
        vocab_size,
        rms_eps,
        rope_theta: meta.float(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f32,
        rope_interleaved: architecture == Architecture::Llama,
        context_length: meta.required_uint(&key("context_length"))?,
        attention_bias: architecture == Architecture::Qwen2,
        tie_embeddings: false,
    };
    hp.validate(meta.path)?;
    Ok(hp)
}

// ---------------------------------------------------------------- config.json

pub(crate) struct HfConfig {
    pub hyperparams: Hyperparams,
    pub eos_token_ids: Vec<u32>,
    pub bos_token_id: Option<u32>,
    pub name: Option<String>,
}

fn json_ids(v: Option<&Json>) -> Vec<u32> {
    match v {
        Some(Json::Number(n)) => n
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .into_iter()
            .collect(),
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads and validates `config.json` of a Hugging Face model folder.
pub(crate) fn hf_config(dir: &Path) -> Result<HfConfig> {
    let path: PathBuf = dir.join("config.json");
    let text = read_text(&path, MAX_CONFIG_BYTES).map_err(|source| EngineError::Io {
        path: path.clone(),
        source,
    })?;
    let json: Json = serde_json::from_str(&text).map_err(|e| EngineError::InvalidModelFile {
        path: path.clone(),
        reason: format!("config.json is not valid JSON: {e}"),
    })?;
    let obj = json
        .as_object()
        .ok_or_else(|| EngineError::InvalidModelFile {
            path: path.clone(),
            reason: "config.json is not a JSON object".into(),
        })?;
    let err = |key: &str, reason: &str| EngineError::Metadata {
        path: path.clone(),
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let model_type = obj
        .get("model_type")
        .and_then(Json::as_str)
        .ok_or_else(|| err("model_type", "missing or not a string"))?;
    let architecture = Architecture::parse(model_type, &path)?;
    let uint = |key: &str| -> Result<Option<usize>> {
        match obj.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| err(key, "expected a non-negative integer")),
        }
    };
    let req = |key: &str| -> Result<usize> { uint(key)?.ok_or_else(|| err(key, "missing")) };
    let float = |key: &str| -> Result<Option<f64>> {
        match obj.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| err(key, "expected a number")),
        }
    };
    let boolean = |key: &str| -> Result<Option<bool>> {
        match obj.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| err(key, "expected true or false")),
        }
    };
    if let Some(scaling) = obj.get("rope_scaling") {
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(Json::as_str);
        if !(scaling.is_null() || kind == Some("default")) {
            return Err(err("rope_scaling", "RoPE scaling is not supported"));
        }
    }
    let hidden = req("hidden_size")?;
    let n_head = req("num_attention_heads")?;
    if n_head == 0 || hidden % n_head != 0 {
        return Err(err(
            "num_attention_heads",
            "must be positive and divide hidden_size",
        ));
    }
    let hp = Hyperparams {
        architecture,
        n_layer: req("num_hidden_layers")?,
        n_head,
        n_kv_head: uint("num_key_value_heads")?.unwrap_or(n_head),
        head_dim: uint("head_dim")?.unwrap_or(hidden / n_head),
        hidden,
        intermediate: req("intermediate_size")?,
        vocab_size: req("vocab_size")?,
        rms_eps: float("rms_norm_eps")?.unwrap_or(1e-6),
        rope_theta: float("rope_theta")?.unwrap_or(10_000.0) as f32,
        rope_interleaved: false,
        context_length: req("max_position_embeddings")?,
        attention_bias: match architecture {
            Architecture::Qwen2 => true,
            Architecture::Llama => boolean("attention_bias")?.unwrap_or(false),
        },
        tie_embeddings: boolean("tie_word_embeddings")?.unwrap_or(false),
    };
    hp.validate(&path)?;
    let mut eos_token_ids = json_ids(obj.get("eos_token_id"));
    // generation_config.json often lists more end tokens (e.g. Qwen's <|im_end|> and <|endoftext|>).
    if let Ok(text) = read_text(&dir.join("generation_config.json"), MAX_CONFIG_BYTES) {
        if let Ok(gen) = serde_json::from_str::<Json>(&text) {
            for id in json_ids(gen.get("eos_token_id")) {
                if !eos_token_ids.contains(&id) {
                    eos_token_ids.push(id);
                }
            }
        }
    }
    Ok(HfConfig {
        hyperparams: hp,
        eos_token_ids,
        bos_token_id: json_ids(obj.get("bos_token_id")).first().copied(),
        name: obj
            .get("_name_or_path")
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    })
}
