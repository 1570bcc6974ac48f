//! Text <-> token ids: from tokenizer.json when present, otherwise built from GGUF metadata.
//!
//! The GGUF builder mirrors llama.cpp's byte-level BPE (`tokenizer.ggml.model = "gpt2"`): the vocabulary and
//! merges come from `tokenizer.ggml.tokens` / `tokenizer.ggml.merges`, the pre-tokenizer split is chosen by
//! `tokenizer.ggml.pre` (qwen2, llama3, smollm/starcoder, gpt2), and `tokenizer.ggml.token_type` decides
//! which tokens are matched verbatim in text: control tokens (`<|im_start|>`) become special tokens,
//! user-defined ones (`<think>`, `<tool_call>`) plain added tokens, unused padding slots nothing.
//! candle's own `TokenizerFromGguf` gets SmolLM2 wrong (it adds a prefix space and does not split digits)
//! and marks unused/user-defined tokens special, hence this builder.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel as ByteLevelPre;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::tokenizer::SplitDelimiterBehavior;
use tokenizers::PreTokenizer as _;
use tokenizers::{AddedToken, Model as _, Normalizer as _, OffsetType, PreTokenizedString};

use crate::bounded_read::{read_text, MAX_TOKENIZER_BYTES};
use crate::error::{EngineError, Result};

/// The tokens that open and close a model's own chain of thought (`<think>` / `</think>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkingMarkers {
    pub open: u32,
    pub close: u32,
}

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    special_ids: HashSet<u32>,
    added: AddedTokens,
}

// llama.cpp's `llama_token_type` values in `tokenizer.ggml.token_type`.
const TOKEN_TYPE_CONTROL: u32 = 3;
const TOKEN_TYPE_USER_DEFINED: u32 = 4;

// Pre-tokenizer regexes, as in llama.cpp's llama-vocab.cpp and the models' tokenizer.json files.
const REGEX_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl TextTokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata. `path` is for error messages.
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Self> {
        let err = |what: String| EngineError::Tokenizer(format!("{}: {what}", path.display()));
        let model_kind = metadata_str(content, "tokenizer.ggml.model").map_err(&err)?;
        if model_kind != "gpt2" {
            return Err(err(format!(
                "unsupported tokenizer.ggml.model `{model_kind}` (only byte-level BPE `gpt2` is supported)"
            )));
        }
        let tokens = metadata_strings(content, "tokenizer.ggml.tokens").map_err(&err)?;
        let merges = metadata_strings(content, "tokenizer.ggml.merges")
            .map_err(&err)?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| err(format!("invalid merge entry `{m}`")))
            })
            .collect::<Result<Vec<_>>>()?;
        let token_types = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => {
                let arr = v
                    .to_vec()
                    .map_err(|e| err(format!("tokenizer.ggml.token_type: {e}")))?;
                arr.iter()
                    .map(value_as_u32)
                    .collect::<Option<Vec<u32>>>()
                    .ok_or_else(|| err("tokenizer.ggml.token_type holds non-integers".into()))?
            }
            None => Vec::new(),
        };
        let pre = metadata_str(content, "tokenizer.ggml.pre").unwrap_or_else(|_| "gpt2".into());
        let style = PreTokenizerStyle::from_gguf_pre(&pre);

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let ignore_merges = match content.metadata.get("tokenizer.ggml.ignore_merges") {
            Some(v) => v.to_bool().unwrap_or(false),
            // llama.cpp looks a whole pre-token up in the vocabulary before merging for llama3.
            None => style == PreTokenizerStyle::Llama3,
        };
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| err(format!("building BPE model: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        style
            .configure(&mut inner)
            .map_err(|e| err(format!("pre-tokenizer `{pre}`: {e}")))?;

        // Control tokens are special (matched in text, skipped by decode(skip_special=true)); user-defined
        // tokens are matched in text but are ordinary text on decode, like HF's `special: false` tokens.
        let mut added = Vec::new();
        for (id, ty) in token_types.iter().enumerate() {
            let Some(tok) = tokens.get(id) else { continue };
            match *ty {
                TOKEN_TYPE_CONTROL => added.push(AddedToken::from(tok.clone(), true)),
                TOKEN_TYPE_USER_DEFINED => {
                    added.push(AddedToken::from(tok.clone(), false).normalized(false))
                }
                _ => {}
            }
        }
        // BOS/EOS/PAD are special even in files that leave their type as normal.
        for key in [
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.padding_token_id",
            "tokenizer.ggml.eot_token_id",
        ] {
            if let Some(tok) = content
                .metadata
                .get(key)
                .and_then(value_as_u32)
                .and_then(|id| tokens.get(id as usize))
            {
                if !added.iter().any(|a| &a.content == tok) {
                    added.push(AddedToken::from(tok.clone(), true));
                }
            }
        }
        // Specials first so add_tokens does not re-add them as non-special.
        let (specials, plain): (Vec<_>, Vec<_>) = added.into_iter().partition(|a| a.special);
        inner
            .add_special_tokens(specials)
            .map_err(|e| err(format!("adding special tokens: {e}")))?;
        inner
            .add_tokens(plain)
            .map_err(|e| err(format!("adding user-defined tokens: {e}")))?;
        Ok(Self::wrap(inner))
    }

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_file(tokenizer_json: &Path) -> Result<Self> {
        let fail = |e: String| EngineError::Tokenizer(format!("{}: {e}", tokenizer_json.display()));
        let text =
            read_text(tokenizer_json, MAX_TOKENIZER_BYTES).map_err(|e| fail(e.to_string()))?;
        let inner: tokenizers::Tokenizer = text.parse().map_err(|e| fail(format!("{e}")))?;
        Ok(Self::wrap(inner))
    }

    fn wrap(inner: tokenizers::Tokenizer) -> Self {
        let decoder = inner.get_added_tokens_decoder();
        let special_ids = decoder
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect();
        let added = AddedTokens::new(decoder);
        Self {
            inner,
            special_ids,
            added,
        }
    }

    /// Encodes text; special tokens written in the text (`<|im_start|>`) become their ids.
    /// `add_special_tokens` adds BOS/EOS where the tokenizer's post-processor asks for them.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes a prompt in which the byte ranges `untrusted` came from outside (a user's problem, a
    /// model's draft): added tokens (`<|im_start|>`, `</think>`) are matched only outside them, so
    /// inside them they are plain text. With no untrusted text the result is exactly
    /// `encode(text, false)`: the text is cut at the same added tokens and each piece between them
    /// goes through the same normalizer, pre-tokenizer and model.
    pub fn encode_with_untrusted(
        &self,
        text: &str,
        untrusted: &[Range<usize>],
    ) -> Result<Vec<u32>> {
        let mut trusted = Vec::with_capacity(untrusted.len() + 1);
        let mut at = 0;
        for r in untrusted {
            if r.start < at
                || r.end < r.start
                || r.end > text.len()
                || !text.is_char_boundary(r.start)
                || !text.is_char_boundary(r.end)
            {
                return Err(EngineError::Tokenizer(format!(
                    "untrusted range {r:?} is not a sorted character range of the {}-byte prompt",
                    text.len()
                )));
            }
            trusted.push(at..r.start);
            at = r.end;
        }
        trusted.push(at..text.len());
        let mut ids = Vec::new();
        let mut piece_start = 0;
        for segment in trusted {
            let mut pos = segment.start;
            while pos < segment.end {
                match self
                    .added
                    .match_at(text, pos, piece_start.max(segment.start)..segment.end)
                {
                    Some((found, id)) => {
                        self.encode_plain(&text[piece_start..found.start], &mut ids)?;
                        ids.push(id);
                        piece_start = found.end;
                        pos = found.end;
                    }
                    None => pos += text[pos..].chars().next().map_or(1, char::len_utf8),
                }
            }
        }
        self.encode_plain(&text[piece_start..], &mut ids)?;
        Ok(ids)
    }

    /// Normalizer, pre-tokenizer and model on `piece`, without matching any added token.
    fn encode_plain(&self, piece: &str, ids: &mut Vec<u32>) -> Result<()> {
        if piece.is_empty() {
            return Ok(());
        }
        let err = |e: tokenizers::Error| EngineError::Tokenizer(e.to_string());
        let mut pre = PreTokenizedString::from(piece);
        if let Some(normalizer) = self.inner.get_normalizer() {
            pre.normalize(|s| normalizer.normalize(s)).map_err(err)?;
        }
        if let Some(pre_tokenizer) = self.inner.get_pre_tokenizer() {
            pre_tokenizer.pre_tokenize(&mut pre).map_err(err)?;
        }
        let model = self.inner.get_model();
        pre.tokenize(|s| model.tokenize(s.get())).map_err(err)?;
        let encoding = pre.into_encoding(None, 0, OffsetType::None).map_err(err)?;
        ids.extend_from_slice(encoding.get_ids());
        Ok(())
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

    /// `<think>` / `</think>` when both are single tokens of this vocabulary (reasoning models such as
    /// DeepSeek-R1-Distill); `None` for models without their own thinking markers.
    pub fn thinking_markers(&self) -> Option<ThinkingMarkers> {
        Some(ThinkingMarkers {
            open: self.token_to_id("<think>")?,
            close: self.token_to_id("</think>")?,
        })
    }

    /// Whether `id` is a special (control) token, e.g. `<|im_end|>`.
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// The underlying Hugging Face tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// The added tokens (special or not) as the tokenizer matches them in text: leftmost, longest first,
/// with their `lstrip` / `rstrip` / `single_word` options.
struct AddedTokens {
    /// By first byte, longest first.
    by_first_byte: HashMap<u8, Vec<(AddedToken, u32)>>,
}

impl AddedTokens {
    fn new(decoder: impl IntoIterator<Item = (u32, AddedToken)>) -> Self {
        let mut by_first_byte: HashMap<u8, Vec<(AddedToken, u32)>> = HashMap::new();
        for (id, token) in decoder {
            if let Some(&b) = token.content.as_bytes().first() {
                by_first_byte.entry(b).or_default().push((token, id));
            }
        }
        for tokens in by_first_byte.values_mut() {
            tokens.sort_by(|a, b| {
                b.0.content
                    .len()
                    .cmp(&a.0.content.len())
                    .then(a.1.cmp(&b.1))
            });
        }
        Self { by_first_byte }
    }

    /// The added token starting at `pos`, if one lies wholly inside `within`: its span (widened
    /// by lstrip/rstrip, never past `within`) and id.
    fn match_at(
        &self,
        text: &str,
        pos: usize,
        within: Range<usize>,
    ) -> Option<(Range<usize>, u32)> {
        let candidates = self.by_first_byte.get(&text.as_bytes()[pos])?;
        let word = |c: char| c.is_alphanumeric() || c == '_';
        for (token, id) in candidates {
            let end = pos + token.content.len();
            if end > within.end || !text[pos..].starts_with(token.content.as_str()) {
                continue;
            }
            if token.single_word
                && (text[..pos].chars().next_back().is_some_and(word)
                    || text[end..].chars().next().is_some_and(word))
            {
                continue;
            }
            let start = if token.lstrip {
                within.start.max(text[..pos].trim_end().len())
            } else {
                pos
            };
            let end = if token.rstrip {
                let rest = &text[end..within.end];
                end + (rest.len() - rest.trim_start().len())
            } else {
                end
            };
            return Some((start..end, *id));
        }
        None
    }
}

/// How llama.cpp splits text into pre-tokens before BPE, by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreTokenizerStyle {
    /// Qwen2 family (incl. DeepSeek-R1-Distill-Qwen): NFC, single digits.
    Qwen2,
    /// Llama 3 family: digits in groups of up to three.
    Llama3,
    /// GPT-2 regex after splitting every digit (SmolLM, StarCoder, Refact, ...).
    Gpt2Digits,
    /// Plain GPT-2 byte-level regex.
    Gpt2,
}

impl PreTokenizerStyle {
    fn from_gguf_pre(pre: &str) -> Self {
        match pre {
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "hunyuan" => Self::Qwen2,
            "llama3" | "llama-bpe" | "llama-v3" | "smaug-bpe" | "lfm2" | "falcon3" | "pixtral" => {
                Self::Llama3
            }
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva" => Self::Gpt2Digits,
            _ => Self::Gpt2,
        }
    }

    fn configure(self, tok: &mut tokenizers::Tokenizer) -> tokenizers::Result<()> {
        // No prefix space: llama.cpp's byte-level BPE never adds one.
        let byte_level_regex = || PreTokenizerWrapper::from(ByteLevelPre::new(false, false, true));
        let byte_level_plain = || PreTokenizerWrapper::from(ByteLevelPre::new(false, false, false));
        let split = |re: &str| -> tokenizers::Result<PreTokenizerWrapper> {
            Ok(Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )?
            .into())
        };
        let pre: PreTokenizerWrapper = match self {
            Self::Qwen2 => {
                tok.with_normalizer(Some(NFC))?;
                PreSequence::new(vec![split(REGEX_QWEN2)?, byte_level_plain()]).into()
            }
            Self::Llama3 => PreSequence::new(vec![split(REGEX_LLAMA3)?, byte_level_plain()]).into(),
            Self::Gpt2Digits => {
                PreSequence::new(vec![Digits::new(true).into(), byte_level_regex()]).into()
            }
            Self::Gpt2 => byte_level_regex(),
        };
        tok.with_pre_tokenizer(Some(pre));
        tok.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));
        Ok(())
    }
}

fn value_as_u32(v: &gguf_file::Value) -> Option<u32> {
    use gguf_file::Value::*;
    match v {
        U8(v) => Some(u32::from(*v)),
        I8(v) => u32::try_from(*v).ok(),
        U16(v) => Some(u32::from(*v)),
        I16(v) => u32::try_from(*v).ok(),
        U32(v) => Some(*v),
        I32(v) => u32::try_from(*v).ok(),
        U64(v) => u32::try_from(*v).ok(),
        I64(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

fn metadata_str(content: &gguf_file::Content, key: &str) -> std::result::Result<String, String> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| format!("missing metadata `{key}`"))?
        .to_string()
        .map(|s| s.to_string())
        .map_err(|e| format!("metadata `{key}`: {e}"))
}

fn metadata_strings(
    content: &gguf_file::Content,
    key: &str,
) -> std::result::Result<Vec<String>, String> {
    let arr = content
        .metadata
        .get(key)
        .ok_or_else(|| format!("missing metadata `{key}`"))?
        .to_vec()
        .map_err(|e| format!("metadata `{key}`: {e}"))?;
    arr.iter()
        .map(|v| {
            v.to_string()
                .map(|s| s.to_string())
                .map_err(|_| format!("metadata `{key}` holds a non-string"))
        })
        .collect()
}
