//! The decoder: embeddings, pre-norm attention (GQA, RoPE, optional q/k/v bias) + SwiGLU MLP
//! blocks, final norm and output projection, over explicit per-sequence KV caches.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

use crate::collective::Collective;
use crate::config::Hyperparams;
use crate::error::{EngineError, Result};
use crate::kv_cache::SequenceCache;
use crate::linear::{Linear, Rows};
use crate::rope::Rope;

/// Token embedding table; the quantized form dequantizes only the looked-up rows, which keeps
/// e.g. Qwen's 151936-row table at its file size instead of ~0.5 GB of f32.
#[derive(Debug, Clone)]
pub(crate) enum TokenEmbedding {
    Quantized(Arc<QTensor>),
    Dense(Tensor),
}

impl TokenEmbedding {
    fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match self {
            TokenEmbedding::Quantized(q) => q.embedding(ids)?.to_dtype(DType::F32)?,
            TokenEmbedding::Dense(w) => w.index_select(ids, 0)?,
        })
    }
}

/// Test hook: how a rank fails at the middle layer of a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Error,
    Panic,
}

/// What one rank of a tensor-parallel model adds to a forward pass: the collective that combines
/// its partial results with the other ranks'.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RankContext<'a> {
    pub rank: usize,
    pub collective: &'a dyn Collective,
    pub fault: Option<Fault>,
}

impl RankContext<'_> {
    fn reduce(&self, t: &Tensor) -> Result<Tensor> {
        self.collective.all_reduce_sum(self.rank, t)
    }

    fn check_fault(&self) -> Result<()> {
        match self.fault {
            None => Ok(()),
            Some(Fault::Error) => Err(EngineError::Device(format!(
                "rank {}: injected failure",
                self.rank
            ))),
            Some(Fault::Panic) => panic!("rank {}: injected panic", self.rank),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub attn_norm: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ffn_norm: Tensor,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

#[derive(Debug, Clone)]
pub(crate) struct Transformer {
    pub hp: Hyperparams,
    pub embedding: TokenEmbedding,
    pub blocks: Vec<Block>,
    pub norm: Tensor,
    pub output: Linear,
    pub rope: Rope,
    pub device: Device,
}

impl Transformer {
    pub fn new_cache(&self, limit: usize) -> Result<SequenceCache> {
        SequenceCache::new(
            self.hp.n_layer,
            self.hp.n_kv_head,
            self.hp.head_dim,
            limit.min(self.rope.max_len()),
            &self.device,
        )
    }

    /// Checks that `tokens` split into `batch` sequences and are all in the vocabulary.
    pub fn check_tokens(&self, tokens: &[u32], batch: usize) -> Result<()> {
        if batch == 0 || tokens.is_empty() || !tokens.len().is_multiple_of(batch) {
            return Err(EngineError::InvalidRequest(format!(
                "{} tokens cannot be split over {batch} sequences",
                tokens.len()
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.hp.vocab_size) {
            return Err(EngineError::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary (size {})",
                self.hp.vocab_size
            )));
        }
        Ok(())
    }

    /// Embeds `tokens` and runs them through the first `layers` blocks, appending to each cache;
    /// returns the residual stream `[batch * seq, hidden]` entering block `layers` (the final norm's
    /// input when `layers` is all of them). See [`Transformer::forward`] for the arguments.
    pub fn residual_stream(
        &self,
        tokens: &[u32],
        caches: &mut [&mut SequenceCache],
        rows: Rows,
        tp: Option<&RankContext<'_>>,
        layers: usize,
    ) -> Result<Tensor> {
        let batch = caches.len();
        self.check_tokens(tokens, batch)?;
        let seq = tokens.len() / batch;
        let positions: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        check_positions(&positions, seq)?;
        let pos = positions[0];
        for cache in caches.iter_mut() {
            cache.reserve(seq)?;
        }
        let hp = &self.hp;
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embedding.lookup(&ids)?; // [batch*seq, hidden]
        let mask = if seq > 1 && rows != Rows::Steps {
            Some(causal_mask(seq, pos, &self.device)?)
        } else {
            None
        };
        for (layer, block) in self.blocks.iter().enumerate().take(layers) {
            if let Some(ctx) = tp {
                if layer == self.blocks.len() / 2 {
                    ctx.check_fault()?;
                }
            }
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, hp.rms_eps as f32)?;
            let [q, k, v] = shared::<3>(&[&block.q, &block.k, &block.v], &h, rows)?;
            let heads = |t: Tensor, n: usize| -> Result<Tensor> {
                Ok(t.reshape((batch, seq, n, hp.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (q, k) = if seq == 1 {
                (
                    self.rope.apply_each(&heads(q, hp.n_head)?, &positions)?,
                    self.rope.apply_each(&heads(k, hp.n_kv_head)?, &positions)?,
                )
            } else {
                (
                    self.rope.apply(&heads(q, hp.n_head)?, pos)?,
                    self.rope.apply(&heads(k, hp.n_kv_head)?, pos)?,
                )
            };
            let v = heads(v, hp.n_kv_head)?;
            let mut outs = Vec::with_capacity(batch);
            for (b, cache) in caches.iter_mut().enumerate() {
                let (k_all, v_all) = cache.write(layer, &k.get(b)?, &v.get(b)?)?;
                let q_b = q.get(b)?;
                if rows == Rows::Steps {
                    outs.push(attend_steps(&q_b, &k_all, &v_all, positions[b], hp)?);
                } else {
                    outs.push(attend(&q_b, &k_all, &v_all, mask.as_ref(), hp)?);
                }
            }
            let attn = if batch == 1 {
                outs.pop()
                    .ok_or_else(|| EngineError::InvalidRequest("empty batch".into()))?
            } else {
                Tensor::cat(&outs, 0)?
            };
            let mut o = block.o.forward(&attn, rows)?;
            if let Some(ctx) = &tp {
                o = ctx.reduce(&o)?;
            }
            x = (x + o)?;
            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, hp.rms_eps as f32)?;
            let [gate, up] = shared::<2>(&[&block.gate, &block.up], &h, rows)?;
            let gate = candle_nn::ops::silu(&gate)?;
            let mut down = block.down.forward(&(gate * up)?, rows)?;
            if let Some(ctx) = &tp {
                down = ctx.reduce(&down)?;
            }
            x = (x + down)?;
        }
        for cache in caches.iter_mut() {
            cache.advance(seq);
        }
        Ok(x)
    }

    /// Runs `tokens` (`caches.len()` sequences of `tokens.len() / caches.len()` tokens each, sequence
    /// major) through the model, appending to each cache. All caches must hold the same number of
    /// positions. Returns the last position's logits per sequence (`[batch, vocab]`) when asked, or
    /// with `Rows::Steps` every position's (`[batch * seq, vocab]`).
    /// `tp` is this rank's part in a tensor-parallel model (`None`: the whole model, no collective):
    /// its partial attention and MLP outputs are summed over the ranks, its logits gathered.
    pub fn forward(
        &self,
        tokens: &[u32],
        caches: &mut [&mut SequenceCache],
        rows: Rows,
        want_logits: bool,
        tp: Option<RankContext<'_>>,
    ) -> Result<Option<Tensor>> {
        let batch = caches.len();
        let seq = tokens.len() / batch.max(1);
        let x = self.residual_stream(tokens, caches, rows, tp.as_ref(), self.blocks.len())?;
        let hp = &self.hp;
        if !want_logits {
            return Ok(None);
        }
        // Steps want every position's logits; otherwise only the last of each sequence.
        let last = if rows == Rows::Steps {
            x
        } else {
            x.reshape((batch, seq, hp.hidden))?
                .narrow(1, seq - 1, 1)?
                .reshape((batch, hp.hidden))?
                .contiguous()?
        };
        let last = candle_nn::ops::rms_norm(&last, &self.norm, hp.rms_eps as f32)?;
        let logits = self.output.forward(&last, rows)?;
        match &tp {
            // Vocab-parallel head: each rank holds a range of vocabulary rows.
            Some(ctx) => Ok(Some(ctx.collective.all_gather(ctx.rank, &logits, 1)?)),
            None => Ok(Some(logits)),
        }
    }
}

/// `N` linears over the same input, as an array.
fn shared<const N: usize>(linears: &[&Linear; N], x: &Tensor, rows: Rows) -> Result<[Tensor; N]> {
    Linear::forward_shared(linears, x, rows)?
        .try_into()
        .map_err(|_| EngineError::Device("a shared projection lost an output".into()))
}

/// Sequences of one batch may sit at different positions (they joined a running batch at different
/// times) only when each brings one token: several tokens share one causal mask and rotation.
pub(crate) fn check_positions(positions: &[usize], seq: usize) -> Result<()> {
    match positions {
        [first, rest @ ..] if seq > 1 && rest.iter().any(|p| p != first) => {
            Err(EngineError::InvalidRequest(
                "sequences at different positions can only be batched one token each".into(),
            ))
        }
        [] => Err(EngineError::InvalidRequest("empty batch".into())),
        _ => Ok(()),
    }
}

/// `[seq, past + seq]`: 0 where a query may attend, -inf where the key lies in its future.
fn causal_mask(seq: usize, past: usize, device: &Device) -> Result<Tensor> {
    let total = past + seq;
    let data: Vec<f32> = (0..seq)
        .flat_map(|t| (0..total).map(move |j| if j > past + t { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (seq, total), device)?)
}

/// Attention of one sequence: `q` `[heads, seq, head_dim]` over the cache `[kv_heads, len, head_dim]`.
/// Query heads sharing a KV head are folded into rows, so GQA needs no repeated K/V copies.
/// Returns `[seq, heads * head_dim]`. Batched decoding calls this per sequence, exactly as a
/// single-sequence step does, so both give identical bits.
fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    hp: &Hyperparams,
) -> Result<Tensor> {
    let seq = q.dim(1)?;
    let len = k.dim(1)?;
    let group = hp.n_head / hp.n_kv_head;
    let q = q.reshape((hp.n_kv_head, group * seq, hp.head_dim))?;
    let scale = 1.0 / (hp.head_dim as f64).sqrt();
    let scores = (q.matmul(&k.t()?)? * scale)?; // [kv_heads, group*seq, len]
    let scores = match mask {
        Some(mask) => scores
            .reshape((hp.n_kv_head, group, seq, len))?
            .broadcast_add(mask)?
            .reshape((hp.n_kv_head, group * seq, len))?,
        None => scores,
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    // The cache views are strided (capacity > len); candle's CPU GEMM takes strides, so no copy.
    let out = probs.matmul(v)?; // [kv_heads, group*seq, head_dim]
    Ok(out
        .reshape((hp.n_head, seq, hp.head_dim))?
        .transpose(0, 1)?
        .reshape((seq, hp.n_head * hp.head_dim))?)
}

/// Attention of consecutive query positions `pos..pos + seq` of one sequence, each over the cache up
/// to itself and computed alone, exactly as the single steps that decode them one by one.
fn attend_steps(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    pos: usize,
    hp: &Hyperparams,
) -> Result<Tensor> {
    let seq = q.dim(1)?;
    let rows = (0..seq)
        .map(|t| {
            let visible = pos + t + 1;
            attend(
                &q.narrow(1, t, 1)?.contiguous()?,
                &k.narrow(1, 0, visible)?,
                &v.narrow(1, 0, visible)?,
                None,
                hp,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&rows, 0)?)
}

/// Row-wise log-softmax of one logits vector, in f64 for accuracy over large vocabularies.
pub(crate) fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&l| (l as f64 - lse) as f32).collect()
}
