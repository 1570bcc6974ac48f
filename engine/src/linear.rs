//! One weight abstraction for GGUF (quantized) and safetensors (dense) layers: `y = x W^T (+ b)`.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};

use crate::error::Result;

/// How the rows of an input relate, which decides whether they may share one kernel call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    /// Rows of one sequence (prefill): any kernel will do.
    SameSequence,
    /// One row per sequence of a decoding batch: every row must come out bit-identical to a
    /// single-row call, so batched drafting reproduces single-sequence runs exactly.
    Independent,
}

#[derive(Debug, Clone)]
enum Weight {
    /// Block-quantized weight, `[out, in]`, multiplied by candle's quantized kernels.
    Quantized(QMatMul, GgmlDType),
    /// Dense f32 weight, `[out, in]`.
    Dense(Tensor),
}

#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

/// candle's CPU kernels give per-row results that do not depend on the row count, except where
/// the kernel choice itself depends on it: Q6K uses a compact GEMV for one row and repacked tiles
/// for several, Q4K switches to AMX tiles from 32 rows, and dense GEMM may block differently.
fn row_count_changes_kernel(weight: &Weight, rows: usize) -> bool {
    match weight {
        Weight::Quantized(_, GgmlDType::Q6K) => rows > 1,
        Weight::Quantized(_, GgmlDType::Q4K) => rows >= 32,
        Weight::Quantized(..) => false,
        Weight::Dense(_) => rows > 1,
    }
}

impl Linear {
    /// From a GGUF tensor: float tensors become dense, block-quantized ones stay quantized.
    pub fn from_qtensor(w: Arc<QTensor>, bias: Option<Tensor>) -> Result<Self> {
        let dtype = w.dtype();
        let weight = match dtype {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                Weight::Dense(w.dequantize(&w.device())?.to_dtype(DType::F32)?)
            }
            _ => Weight::Quantized(QMatMul::QTensor(w), dtype),
        };
        Ok(Self { weight, bias })
    }

    pub fn dense(w: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            weight: Weight::Dense(w.to_dtype(DType::F32)?.contiguous()?),
            bias,
        })
    }

    /// `x` is `[rows, in]`; returns `[rows, out]`.
    pub fn forward(&self, x: &Tensor, rows: Rows) -> Result<Tensor> {
        let m = x.dim(0)?;
        let y = if rows == Rows::Independent && row_count_changes_kernel(&self.weight, m) {
            let parts = (0..m)
                .map(|i| self.matmul(&x.narrow(0, i, 1)?))
                .collect::<Result<Vec<_>>>()?;
            Tensor::cat(&parts, 0)?
        } else {
            self.matmul(x)?
        };
        match &self.bias {
            Some(b) => Ok(y.broadcast_add(b)?),
            None => Ok(y),
        }
    }

    fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        Ok(match &self.weight {
            Weight::Quantized(q, _) => q.forward(&x)?,
            Weight::Dense(w) => x.matmul(&w.t()?)?,
        })
    }
}
