//! Rotary position embeddings: cos/sin tables computed once, applied at any start position.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

#[derive(Debug, Clone)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
    /// Pairs adjacent values (GGUF llama, whose q/k rows llama.cpp permuted) instead of halves.
    interleaved: bool,
}

impl Rope {
    /// Same arithmetic as candle-transformers' quantized models (f32 thetas, f32 outer product),
    /// so logits agree with them to the last bits where the rest does.
    pub fn new(
        head_dim: usize,
        theta: f32,
        max_len: usize,
        interleaved: bool,
        device: &Device,
    ) -> Result<Self> {
        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1f32 / theta.powf(i as f32 / head_dim as f32))
            .collect();
        let n = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, n), device)?;
        let positions = Tensor::arange(0, max_len as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_len, 1))?;
        let angles = positions.matmul(&inv_freq)?;
        Ok(Self {
            cos: angles.cos()?,
            sin: angles.sin()?,
            interleaved,
        })
    }

    /// The cos and sin tables `[len, head_dim / 2]` of positions `start..start + len`.
    pub fn tables(&self, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
        Ok((
            self.cos.narrow(0, start, len)?,
            self.sin.narrow(0, start, len)?,
        ))
    }

    pub fn interleaved(&self) -> bool {
        self.interleaved
    }

    pub fn max_len(&self) -> usize {
        self.cos.dims()[0]
    }

    /// `x` is `[batch, heads, 1, head_dim]`, batch row b at position `positions[b]` (sequences of
    /// a decoding batch that joined at different times). Each element is rotated by the same
    /// arithmetic as [`Rope::apply`], so a row comes out as it would alone.
    pub fn apply_each(&self, x: &Tensor, positions: &[usize]) -> Result<Tensor> {
        match positions {
            [first, rest @ ..] if rest.iter().all(|p| p == first) => self.apply(x, *first),
            _ => {
                let at: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
                let at = Tensor::new(at.as_slice(), self.cos.device())?;
                let half = self.cos.dim(1)?;
                let cos = self
                    .cos
                    .index_select(&at, 0)?
                    .reshape((positions.len(), 1, half))?;
                let sin = self
                    .sin
                    .index_select(&at, 0)?
                    .reshape((positions.len(), 1, half))?;
                let x = x.contiguous()?;
                Ok(if self.interleaved {
                    candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?
                } else {
                    candle_nn::rotary_emb::rope(&x, &cos, &sin)?
                })
            }
        }
    }

    /// `x` is `[batch, heads, seq, head_dim]`; every batch row starts at position `start`.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, start, seq)?;
        let sin = self.sin.narrow(0, start, seq)?;
        let x = x.contiguous()?;
        Ok(if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?
        } else {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)?
        })
    }
}
