//! The model's last decoder block in dense f32 with LoRA terms, made of differentiable tensor
//! operations and evaluated at the positions a loss reads (the last one for the selection adapter,
//! every position of a chain for alignment): what a LoRA trainer needs to learn an adapter on the
//! last block without back-propagating through the quantized lower blocks. Their output, the residual stream entering the last block, depends on
//! no adapter here and is computed once per example ([`Model::residual_stream_before_top`]).
//!
//! Same arithmetic as the engine's forward pass up to f32 summation order and the quantized kernels'
//! activation rounding (the engine multiplies the quantized weights, this block their dequantized
//! values).

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, D};

use crate::error::{EngineError, Result};
use crate::linear::{Linear, Rows};
use crate::lora::permute_for_llama_gguf;
use crate::model::Model;
use crate::rope::Rope;
use crate::session::PREFILL_CHUNK;
use crate::transformer::Transformer;

/// The linear layers of a block that LoRA may adapt, by their Hugging Face (PEFT) module names.
pub const LORA_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The Hugging Face path of a block's module (`self_attn.q_proj`, `mlp.up_proj`); None when `module`
/// is not one of [`LORA_MODULES`].
pub fn module_path(module: &str) -> Option<&'static str> {
    Some(match module {
        "q_proj" => "self_attn.q_proj",
        "k_proj" => "self_attn.k_proj",
        "v_proj" => "self_attn.v_proj",
        "o_proj" => "self_attn.o_proj",
        "gate_proj" => "mlp.gate_proj",
        "up_proj" => "mlp.up_proj",
        "down_proj" => "mlp.down_proj",
        _ => return None,
    })
}

/// LoRA factors for some modules of the block, with the adapter's scale (alpha / r).
#[derive(Debug, Clone, Default)]
pub struct LoraTerms {
    pub scale: f64,
    /// Keyed by module name (`q_proj`): `a` `[r, in]`, `b` `[out, r]`.
    pub terms: BTreeMap<String, (Tensor, Tensor)>,
}

#[derive(Debug, Clone)]
struct Dense {
    /// `[out, in]`
    w: Tensor,
    b: Option<Tensor>,
}

impl Dense {
    fn from_linear(linear: &Linear) -> Result<Self> {
        let (w, b) = linear.dense_parts()?;
        Ok(Self { w, b })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.w.t()?)?;
        Ok(match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            w: self.w.to_dtype(dtype)?,
            b: self.b.as_ref().map(|b| b.to_dtype(dtype)).transpose()?,
        })
    }
}

/// The last block, the final norm and the output rows of some tokens, dense.
#[derive(Debug, Clone)]
pub struct TopBlock {
    layer: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    rms_eps: f64,
    rope: Rope,
    attn_norm: Tensor,
    ffn_norm: Tensor,
    norm: Tensor,
    modules: BTreeMap<&'static str, Dense>,
    /// `[tokens, hidden]`: the output projection's rows of the tokens whose logits are wanted.
    output_rows: Tensor,
    dtype: DType,
}

impl TopBlock {
    fn new(t: &Transformer, output_rows: Tensor) -> Result<Self> {
        let layer = t.hp.n_layer - 1;
        let block = &t.blocks[layer];
        let mut modules = BTreeMap::new();
        for (name, linear) in [
            ("q_proj", &block.q),
            ("k_proj", &block.k),
            ("v_proj", &block.v),
            ("o_proj", &block.o),
            ("gate_proj", &block.gate),
            ("up_proj", &block.up),
            ("down_proj", &block.down),
        ] {
            modules.insert(name, Dense::from_linear(linear)?);
        }
        Ok(Self {
            layer,
            n_head: t.hp.n_head,
            n_kv_head: t.hp.n_kv_head,
            head_dim: t.hp.head_dim,
            rms_eps: t.hp.rms_eps,
            rope: t.rope.clone(),
            attn_norm: block.attn_norm.clone(),
            ffn_norm: block.ffn_norm.clone(),
            norm: t.norm.clone(),
            modules,
            output_rows,
            dtype: DType::F32,
        })
    }

    /// Index of the block (the model's last).
    pub fn layer(&self) -> usize {
        self.layer
    }

    /// `[out, in]` of a module of [`LORA_MODULES`].
    pub fn module_dims(&self, module: &str) -> Option<(usize, usize)> {
        self.modules.get(module).and_then(|d| d.w.dims2().ok())
    }

    /// The Hugging Face weight prefix of a module of this block, as a PEFT adapter names it:
    /// `model.layers.27.self_attn.q_proj`.
    pub fn module_name(&self, module: &str) -> Option<String> {
        module_path(module).map(|path| format!("model.layers.{}.{path}", self.layer))
    }

    /// The same block in another float type (f64 for gradient checks).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let mut modules = BTreeMap::new();
        for (name, dense) in &self.modules {
            modules.insert(*name, dense.to_dtype(dtype)?);
        }
        Ok(Self {
            attn_norm: self.attn_norm.to_dtype(dtype)?,
            ffn_norm: self.ffn_norm.to_dtype(dtype)?,
            norm: self.norm.to_dtype(dtype)?,
            output_rows: self.output_rows.to_dtype(dtype)?,
            modules,
            dtype,
            ..self.clone()
        })
    }

    /// The logits of the output tokens at the last position, `[tokens]`, given the residual stream
    /// `x` `[seq, hidden]` entering the block (from [`Model::residual_stream_before_top`]).
    pub fn last_logits(&self, x: &Tensor, lora: &LoraTerms) -> Result<Tensor> {
        let seq = x.dim(0)?;
        if seq == 0 {
            return Err(EngineError::InvalidRequest("empty residual stream".into()));
        }
        Ok(self.logits_from(x, lora, seq - 1)?.squeeze(0)?)
    }

    /// The logits of the output tokens at positions `from..seq`, `[seq - from, tokens]`, each
    /// position attending to itself and the positions before it (causal), given the residual
    /// stream `x` `[seq, hidden]` entering the block. Row i predicts the token at `from + i + 1`.
    pub fn logits_from(&self, x: &Tensor, lora: &LoraTerms, from: usize) -> Result<Tensor> {
        let x = x.to_dtype(self.dtype)?;
        let (seq, _) = x.dims2()?;
        if from >= seq {
            return Err(EngineError::InvalidRequest(format!(
                "no positions from {from} in a residual stream of {seq}"
            )));
        }
        let rows = seq - from;
        let (nh, kv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let group = nh / kv;
        let h = self.rms_norm(&x, &self.attn_norm)?;
        let h_rows = h.narrow(0, from, rows)?;
        let q = self.module("q_proj", &h_rows, lora)?;
        let k = self.module("k_proj", &h, lora)?;
        let v = self.module("v_proj", &h, lora)?;
        let q = self.rope(&q.reshape((rows, nh, hd))?, from)?;
        let k = self.rope(&k.reshape((seq, kv, hd))?, 0)?;
        // Query heads sharing a key/value head are grouped as in the engine's attention:
        // [kv, group * rows, hd], row-major by (head in group, position).
        let q = q
            .reshape((rows, kv, group, hd))?
            .permute((1, 2, 0, 3))?
            .contiguous()?
            .reshape((kv, group * rows, hd))?;
        let k = k.transpose(0, 1)?.contiguous()?; // [kv, seq, hd]
        let v = v.reshape((seq, kv, hd))?.transpose(0, 1)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?; // [kv, group*rows, seq]
        let scores = if rows > 1 {
            scores.broadcast_add(&self.causal_mask(from, rows, seq, group, scores.device())?)?
        } else {
            scores
        };
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let attn = probs
            .matmul(&v)? // [kv, group*rows, hd]
            .reshape((kv, group, rows, hd))?
            .permute((2, 0, 1, 3))?
            .contiguous()?
            .reshape((rows, nh * hd))?;
        let x1 = (x.narrow(0, from, rows)? + self.module("o_proj", &attn, lora)?)?;
        let h2 = self.rms_norm(&x1, &self.ffn_norm)?;
        let gate = self.module("gate_proj", &h2, lora)?.silu()?;
        let up = self.module("up_proj", &h2, lora)?;
        let x2 = (&x1 + self.module("down_proj", &(gate * up)?, lora)?)?;
        let out = self.rms_norm(&x2, &self.norm)?;
        Ok(out.matmul(&self.output_rows.t()?)?)
    }

    /// `[group * rows, seq]`: 0 where query row (position `from + row`) may see the key, -inf after.
    fn causal_mask(
        &self,
        from: usize,
        rows: usize,
        seq: usize,
        group: usize,
        device: &candle_core::Device,
    ) -> Result<Tensor> {
        let mut mask = Vec::with_capacity(group * rows * seq);
        for _ in 0..group {
            for row in 0..rows {
                let last_visible = from + row;
                mask.extend((0..seq).map(|key| {
                    if key <= last_visible {
                        0f32
                    } else {
                        f32::NEG_INFINITY
                    }
                }));
            }
        }
        Ok(Tensor::from_vec(mask, (group * rows, seq), device)?.to_dtype(self.dtype)?)
    }

    fn module(&self, name: &str, x: &Tensor, lora: &LoraTerms) -> Result<Tensor> {
        let dense = self
            .modules
            .get(name)
            .ok_or_else(|| EngineError::InvalidRequest(format!("no module `{name}`")))?;
        let y = dense.forward(x)?;
        let Some((a, b)) = lora.terms.get(name) else {
            return Ok(y);
        };
        // Adapters are in Hugging Face row order; a GGUF Llama's q/k rows were permuted (and its
        // RoPE is interleaved to match), so B's rows are permuted alike, as at run time.
        let b = match (self.rope.interleaved(), name) {
            (true, "q_proj") => permute_for_llama_gguf(b, self.n_head)?,
            (true, "k_proj") => permute_for_llama_gguf(b, self.n_kv_head)?,
            _ => b.clone(),
        };
        Ok((y + (x.matmul(&a.t()?)?.matmul(&b.t()?)? * lora.scale)?)?)
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + self.rms_eps)?
            .sqrt()?
            .recip()?;
        Ok(x.broadcast_mul(&inv)?.broadcast_mul(weight)?)
    }

    /// `x` `[rows, heads, head_dim]`, row i at position `start + i`; the arithmetic of
    /// candle's `rope` / `rope_i` (which have no backward pass) in plain operations.
    fn rope(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let (rows, heads, hd) = x.dims3()?;
        let half = hd / 2;
        let (cos, sin) = self.rope.tables(start, rows)?;
        let cos = cos.to_dtype(self.dtype)?.unsqueeze(1)?; // [rows, 1, half]
        let sin = sin.to_dtype(self.dtype)?.unsqueeze(1)?;
        if self.rope.interleaved() {
            let pairs = x.reshape((rows, heads, half, 2))?;
            let even = pairs.narrow(3, 0, 1)?.squeeze(3)?;
            let odd = pairs.narrow(3, 1, 1)?.squeeze(3)?;
            let out_even = (even.broadcast_mul(&cos)? - odd.broadcast_mul(&sin)?)?;
            let out_odd = (even.broadcast_mul(&sin)? + odd.broadcast_mul(&cos)?)?;
            Ok(Tensor::stack(&[out_even, out_odd], 3)?.reshape((rows, heads, hd))?)
        } else {
            let x1 = x.narrow(2, 0, half)?;
            let x2 = x.narrow(2, half, half)?;
            let first = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
            let second = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
            Ok(Tensor::cat(&[first, second], 2)?)
        }
    }
}

impl Model {
    fn whole_transformer(&self) -> Result<&Transformer> {
        self.ranks().whole().ok_or_else(|| {
            EngineError::InvalidRequest(
                "training needs the model on one device (tensor parallelism 1)".into(),
            )
        })
    }

    /// The last block in dense f32 with the output rows of `output_tokens` (see [`TopBlock`]).
    pub fn top_block(&self, output_tokens: &[u32]) -> Result<TopBlock> {
        let t = self.whole_transformer()?;
        if output_tokens.is_empty() {
            return Err(EngineError::InvalidRequest(
                "no output tokens to score".into(),
            ));
        }
        let mut rows = Vec::with_capacity(output_tokens.len());
        for &token in output_tokens {
            let token = token as usize;
            if token >= t.hp.vocab_size {
                return Err(EngineError::InvalidRequest(format!(
                    "token id {token} is outside the vocabulary (size {})",
                    t.hp.vocab_size
                )));
            }
            rows.push(t.output.rows(token..token + 1, &t.device)?.dense_parts()?.0);
        }
        TopBlock::new(t, Tensor::cat(&rows, 0)?)
    }

    /// The last block in dense f32 with the whole output projection: logits over the vocabulary
    /// (next-token training, e.g. the draft's alignment).
    pub fn top_block_full_vocabulary(&self) -> Result<TopBlock> {
        let t = self.whole_transformer()?;
        let rows = t
            .output
            .rows(0..t.hp.vocab_size, &t.device)?
            .dense_parts()?
            .0;
        TopBlock::new(t, rows)
    }

    /// The residual stream `[tokens, hidden]` entering the last block for a prompt, prefilled in
    /// chunks through every block below it (quantized kernels, as served).
    pub fn residual_stream_before_top(&self, tokens: &[u32]) -> Result<Tensor> {
        let t = self.whole_transformer()?;
        if tokens.len() > self.info().context_length {
            return Err(EngineError::InvalidRequest(format!(
                "{} tokens exceed the model's context of {}",
                tokens.len(),
                self.info().context_length
            )));
        }
        let mut cache = t.new_cache(tokens.len())?;
        let mut parts = Vec::new();
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            parts.push(t.residual_stream(
                chunk,
                &mut [&mut cache],
                Rows::SameSequence,
                None,
                t.hp.n_layer - 1,
            )?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}
