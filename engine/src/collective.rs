//! The collective operations tensor-parallel ranks use to combine their partial results.
//!
//! One object is shared by all ranks of a model; each call names the calling rank. Every rank must
//! make the same calls in the same order with tensors of the same shape (the Megatron pattern:
//! an all-reduce after each row-parallel layer, an all-gather of vocab-parallel logits).
//! Implementations: an in-process one over rank threads (CPU, tests), NCCL through cudarc (`nccl`).

use candle_core::Tensor;

use crate::error::Result;

pub trait Collective: Send + Sync + std::fmt::Debug {
    /// Number of ranks.
    fn world_size(&self) -> usize;

    /// Element-wise sum of `t` over all ranks; every rank gets the sum.
    fn all_reduce_sum(&self, rank: usize, t: &Tensor) -> Result<Tensor>;

    /// Concatenation of every rank's `t` along `dim`, in rank order; every rank gets the whole.
    /// Ranks may contribute different sizes along `dim` (uneven vocab shards), equal elsewhere.
    fn all_gather(&self, rank: usize, t: &Tensor, dim: usize) -> Result<Tensor>;

    /// A rank failed: every rank waiting in (or later entering) a collective returns
    /// `EngineError::RankFailed` instead of waiting forever.
    fn abort(&self, failed_rank: usize, reason: &str);
}
