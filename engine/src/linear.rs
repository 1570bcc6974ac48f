//! One weight abstraction for GGUF (quantized) and safetensors (dense) layers: `y = x W^T (+ b)`.

use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use crate::error::Result;
use crate::q4k_tiles::Q4kTiles;
use crate::q6k_prefill;
use crate::q6k_rows;
use crate::q8_0_tiles::Q8_0Tiles;
use crate::shard;

/// How the rows of an input relate, which decides whether they may share one kernel call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    /// Rows of one sequence (prefill): any kernel will do.
    SameSequence,
    /// One row per sequence of a decoding batch: every row must come out bit-identical to a
    /// single-row call, so batched drafting reproduces single-sequence runs exactly.
    Independent,
    /// Consecutive tokens of ONE sequence that must come out as if decoded one step at a time
    /// (speculative verification): linears as `Independent`, attention row by row, and the
    /// logits of every position.
    Steps,
}

#[derive(Debug, Clone)]
enum Weight {
    /// Block-quantized weight, `[out, in]`, multiplied by candle's quantized kernels.
    Quantized(QMatMul, GgmlDType),
    /// Q8_0 in the engine's own tiles (where candle's kernel would go row by row).
    Q8_0Tiles(Arc<Q8_0Tiles>),
    /// Q4K in the engine's own tiles (where candle would keep its tiles beside the blocks).
    Q4kTiles(Arc<Q4kTiles>),
    /// Dense f32 weight, `[out, in]`.
    Dense(Tensor),
}

impl Weight {
    /// A GGUF tensor as the kernel that multiplies it best: float tensors become dense, Q8_0 and
    /// Q4K go to the engine's tiles where they apply, other block-quantized ones stay with candle.
    fn from_qtensor(w: Arc<QTensor>) -> Result<Weight> {
        let dtype = w.dtype();
        Ok(match dtype {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                Weight::Dense(w.dequantize(&w.device())?.to_dtype(DType::F32)?)
            }
            _ => {
                if let Some(tiles) = Q8_0Tiles::from_qtensor(&w)? {
                    Weight::Q8_0Tiles(Arc::new(tiles))
                } else if let Some(tiles) = Q4kTiles::from_qtensor(&w)? {
                    Weight::Q4kTiles(Arc::new(tiles))
                } else {
                    Weight::Quantized(QMatMul::QTensor(w), dtype)
                }
            }
        })
    }

    /// The part `range` along `dim` (0: output rows, 1: input columns), on `device`.
    fn cut(&self, dim: usize, range: Range<usize>, device: &Device) -> Result<Weight> {
        let quantized_part = |q: &QTensor| -> Result<Weight> {
            let part = if dim == 0 {
                shard::quantized_rows(q, range.clone(), device)?
            } else {
                shard::quantized_cols(q, range.clone(), device)?
            };
            Weight::from_qtensor(Arc::new(part))
        };
        Ok(match self {
            Weight::Quantized(QMatMul::QTensor(q), _) => quantized_part(q)?,
            Weight::Q8_0Tiles(t) => quantized_part(&t.to_qtensor(&Device::Cpu)?)?,
            Weight::Q4kTiles(t) => quantized_part(&t.to_qtensor(&Device::Cpu)?)?,
            Weight::Quantized(QMatMul::Tensor(t), dtype) => Weight::Quantized(
                QMatMul::Tensor(shard::dense_range(t, dim, &range, device)?),
                *dtype,
            ),
            Weight::Quantized(QMatMul::TensorF16(t), dtype) => Weight::Quantized(
                QMatMul::TensorF16(shard::dense_range(t, dim, &range, device)?),
                *dtype,
            ),
            Weight::Dense(w) => Weight::Dense(shard::dense_range(w, dim, &range, device)?),
        })
    }
}

/// A LoRA adapter kept beside the weight instead of merged into it (GGUF models, whose weights are
/// block-quantized): `y = x W^T + (x A^T) B^T`, with the adapter's scale folded into `b`.
#[derive(Debug, Clone)]
pub(crate) struct LowRank {
    /// `[r, in]`, f32.
    pub a: Tensor,
    /// `[out, r]`, f32, times the adapter's scale.
    pub b: Tensor,
}

impl LowRank {
    /// `[rows, in]` -> `[rows, out]`. Rows that must come out as single-row calls go one at a time:
    /// a dense GEMM may block differently with the row count, and at rank r each row is cheap.
    fn forward(&self, x: &Tensor, rows: Rows) -> Result<Tensor> {
        let one =
            |x: &Tensor| -> Result<Tensor> { Ok(x.matmul(&self.a.t()?)?.matmul(&self.b.t()?)?) };
        let m = x.dim(0)?;
        if rows == Rows::SameSequence || m == 1 {
            return one(x);
        }
        let parts = (0..m)
            .map(|i| one(&x.narrow(0, i, 1)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    low_rank: Option<LowRank>,
}

/// candle's CPU kernels give per-row results that do not depend on the row count, except where
/// the kernel choice itself depends on it: Q6K uses a compact GEMV for one row and repacked tiles
/// for several, Q4K switches to AMX tiles from 32 rows, and dense GEMM may block differently.
fn row_count_changes_kernel(weight: &Weight, rows: usize) -> bool {
    rows > rows_of_one_kernel(weight)
}

/// The most rows one call may take and still run the kernel a single row runs.
fn rows_of_one_kernel(weight: &Weight) -> usize {
    match weight {
        Weight::Quantized(_, GgmlDType::Q6K) => 1,
        Weight::Quantized(_, GgmlDType::Q4K) => 31,
        Weight::Quantized(..) | Weight::Q8_0Tiles(_) | Weight::Q4kTiles(_) => usize::MAX,
        Weight::Dense(_) => 1,
    }
}

impl Linear {
    /// From a GGUF tensor: float tensors become dense, block-quantized ones stay quantized.
    pub fn from_qtensor(w: Arc<QTensor>, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            weight: Weight::from_qtensor(w)?,
            bias,
            low_rank: None,
        })
    }

    pub fn dense(w: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Self {
            weight: Weight::Dense(w.to_dtype(DType::F32)?.contiguous()?),
            bias,
            low_rank: None,
        })
    }

    /// `[out, in]` of the weight.
    pub fn dims(&self) -> Result<(usize, usize)> {
        Ok(match &self.weight {
            Weight::Quantized(QMatMul::QTensor(q), _) => q.shape().dims2()?,
            Weight::Q8_0Tiles(t) => t.dims(),
            Weight::Q4kTiles(t) => t.dims(),
            Weight::Quantized(QMatMul::Tensor(t), _)
            | Weight::Quantized(QMatMul::TensorF16(t), _)
            | Weight::Dense(t) => t.dims2()?,
        })
    }

    /// The weight `[out, in]` and bias as dense f32 (dequantized), without any run-time LoRA term:
    /// what a trainer differentiates through.
    pub fn dense_parts(&self) -> Result<(Tensor, Option<Tensor>)> {
        let w = match &self.weight {
            Weight::Quantized(QMatMul::QTensor(q), _) => q.dequantize(&q.device())?,
            Weight::Q8_0Tiles(t) => t.to_qtensor(&Device::Cpu)?.dequantize(&Device::Cpu)?,
            Weight::Q4kTiles(t) => t.to_qtensor(&Device::Cpu)?.dequantize(&Device::Cpu)?,
            Weight::Quantized(QMatMul::Tensor(t), _)
            | Weight::Quantized(QMatMul::TensorF16(t), _)
            | Weight::Dense(t) => t.clone(),
        };
        Ok((w.to_dtype(DType::F32)?, self.bias.clone()))
    }

    /// Adds a run-time LoRA term; the caller has checked its shapes against [`Linear::dims`].
    pub fn set_low_rank(&mut self, low_rank: LowRank) {
        self.low_rank = Some(low_rank);
    }

    /// `x` is `[rows, in]`; returns `[rows, out]`.
    pub fn forward(&self, x: &Tensor, rows: Rows) -> Result<Tensor> {
        let m = x.dim(0)?;
        let y = if rows != Rows::SameSequence && row_count_changes_kernel(&self.weight, m) {
            match self.q6k_rows_as_single(x)? {
                Some(y) => y,
                None => {
                    // Large decoding batches (continuous batching) go in groups that keep the
                    // single-row kernel, not row by row.
                    let group = rows_of_one_kernel(&self.weight);
                    let parts = (0..m)
                        .step_by(group)
                        .map(|i| self.matmul(&x.narrow(0, i, group.min(m - i))?))
                        .collect::<Result<Vec<_>>>()?;
                    Tensor::cat(&parts, 0)?
                }
            }
        } else {
            self.matmul(x)?
        };
        self.finish(x, y, rows)
    }

    /// Several linears over the same input (q/k/v, gate/up), each output what `forward` gives:
    /// where all are the engine's tiles of one kind (or candle's fusable Q4K), the input is
    /// quantized once and one parallel region runs them all.
    pub fn forward_shared(linears: &[&Linear], x: &Tensor, rows: Rows) -> Result<Vec<Tensor>> {
        let ys = match Self::shared_kernel(linears, x)? {
            Some(ys) => ys,
            None => return linears.iter().map(|l| l.forward(x, rows)).collect(),
        };
        linears
            .iter()
            .zip(ys)
            .map(|(l, y)| l.finish(x, y, rows))
            .collect()
    }

    /// The weights' products over one shared input in one call, where one kernel takes them all.
    fn shared_kernel(linears: &[&Linear], x: &Tensor) -> Result<Option<Vec<Tensor>>> {
        if linears.len() < 2 {
            return Ok(None);
        }
        let q8_0 = Self::all_of(linears, |w| match w {
            Weight::Q8_0Tiles(t) => Some(t.as_ref()),
            _ => None,
        });
        if let Some(tiles) = q8_0 {
            return Ok(Some(Q8_0Tiles::matmul_many(&tiles, &x.contiguous()?)?));
        }
        let q4k = Self::all_of(linears, |w| match w {
            Weight::Q4kTiles(t) => Some(t.as_ref()),
            _ => None,
        });
        if let Some(tiles) = q4k {
            return Ok(Some(Q4kTiles::matmul_many(&tiles, &x.contiguous()?)?));
        }
        Self::q4k_fused(linears, x)
    }

    /// Every linear's weight as one kind (`kind` picks it out), or None when one is another kind.
    fn all_of<'a, T>(
        linears: &[&'a Linear],
        kind: impl Fn(&'a Weight) -> Option<&'a T>,
    ) -> Option<Vec<&'a T>> {
        linears.iter().map(|l| kind(&l.weight)).collect()
    }

    /// candle's fused form for Q4K weights over one input (one input quantization, one parallel
    /// region): the same repacked tile kernel as one call each, so the same bits, as long as the
    /// row count keeps one call each on that kernel (below its switch to AMX tiles). None where
    /// that does not hold.
    fn q4k_fused(linears: &[&Linear], x: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let m = x.dim(0)?;
        let qs: Option<Vec<&QTensor>> = linears
            .iter()
            .map(|l| match &l.weight {
                Weight::Quantized(QMatMul::QTensor(q), GgmlDType::Q4K)
                    if !row_count_changes_kernel(&l.weight, m) =>
                {
                    Some(q.as_ref())
                }
                _ => None,
            })
            .collect();
        match qs {
            Some(qs) if qs.len() > 1 && x.dtype() == DType::F32 => {
                Ok(QTensor::gemv_fused_shared_lhs(&qs, &x.contiguous()?)?)
            }
            _ => Ok(None),
        }
    }

    /// The weight's product `y` plus the run-time LoRA term and the bias.
    fn finish(&self, x: &Tensor, y: Tensor, rows: Rows) -> Result<Tensor> {
        let y = match &self.low_rank {
            Some(low_rank) => (y + low_rank.forward(&x.to_dtype(DType::F32)?, rows)?)?,
            None => y,
        };
        match &self.bias {
            Some(b) => Ok(y.broadcast_add(b)?),
            None => Ok(y),
        }
    }

    /// Granularity of a cut along the input dimension: the quantization block (1 when dense).
    pub fn block_size(&self) -> usize {
        match &self.weight {
            Weight::Quantized(QMatMul::QTensor(q), _) => q.dtype().block_size(),
            Weight::Q8_0Tiles(_) => GgmlDType::Q8_0.block_size(),
            Weight::Q4kTiles(_) => GgmlDType::Q4K.block_size(),
            _ => 1,
        }
    }

    /// Column-parallel shard: output rows `rows` (bias alike), on `device`.
    pub fn rows(&self, rows: Range<usize>, device: &Device) -> Result<Linear> {
        let bias = self
            .bias
            .as_ref()
            .map(|b| shard::dense_range(b, 0, &rows, device))
            .transpose()?;
        let low_rank = match &self.low_rank {
            Some(l) => Some(LowRank {
                a: l.a.to_device(device)?,
                b: shard::dense_range(&l.b, 0, &rows, device)?,
            }),
            None => None,
        };
        Ok(Linear {
            weight: self.weight.cut(0, rows, device)?,
            bias,
            low_rank,
        })
    }

    /// Row-parallel shard: input columns `cols` of every row, on `device`. The partial products
    /// of all shards are summed, so only one shard (`keep_bias`) adds the bias.
    pub fn cols(&self, cols: Range<usize>, keep_bias: bool, device: &Device) -> Result<Linear> {
        let bias = match (&self.bias, keep_bias) {
            (Some(b), true) => Some(b.to_device(device)?),
            _ => None,
        };
        // Each shard adds B (A_cols x_cols); their sum is B (A x), as for the weight itself.
        let low_rank = match &self.low_rank {
            Some(l) => Some(LowRank {
                a: shard::dense_range(&l.a, 1, &cols, device)?,
                b: l.b.to_device(device)?,
            }),
            None => None,
        };
        Ok(Linear {
            weight: self.weight.cut(1, cols, device)?,
            bias,
            low_rank,
        })
    }

    /// Several rows through a Q6K weight, each bit-identical to a single-row call: on x86 candle
    /// sends one row to its generic GEMV (`k_quants::matmul`, m = 1) and several to repacked
    /// tiles of other rounding. The engine's `q6k_rows` runs the same per-element dot products
    /// unpacking each block once for all rows (candle's generic kernel with all rows, which
    /// unpacks per row, where the CPU lacks AVX2). None where that does not hold or the weight
    /// is not in CPU memory (the caller then goes row by row).
    fn q6k_rows_as_single(&self, x: &Tensor) -> Result<Option<Tensor>> {
        #[cfg(target_arch = "x86_64")]
        {
            use candle_core::quantized::k_quants::{self, BlockQ6K};
            let Weight::Quantized(QMatMul::QTensor(q), GgmlDType::Q6K) = &self.weight else {
                return Ok(None);
            };
            if !x.device().is_cpu() || !q.device().is_cpu() {
                return Ok(None);
            }
            let (n, k) = q.shape().dims2()?;
            let m = x.dim(0)?;
            let data = q.data()?;
            let std::borrow::Cow::Borrowed(bytes) = data else {
                return Ok(None);
            };
            let size = std::mem::size_of::<BlockQ6K>();
            let blocks_per_row = k.div_ceil(k_quants::QK_K);
            if bytes.len() != n * blocks_per_row * size
                || bytes
                    .as_ptr()
                    .align_offset(std::mem::align_of::<BlockQ6K>())
                    != 0
            {
                return Ok(None);
            }
            // SAFETY: the bytes are the QTensor's own Q6K block storage (candle keeps it as a
            // Vec<BlockQ6K>, so it is aligned, as checked), `n * blocks_per_row` whole blocks, and
            // they outlive `blocks` (borrowed from `q`).
            let blocks = unsafe {
                std::slice::from_raw_parts(bytes.as_ptr().cast::<BlockQ6K>(), bytes.len() / size)
            };
            let lhs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let mut dst = vec![0f32; m * n];
            if !q6k_rows::matmul(bytes, &lhs, (m, k, n), &mut dst) {
                k_quants::matmul((m, k, n), &lhs, blocks, &mut dst)?;
            }
            Ok(Some(Tensor::from_vec(dst, (m, n), x.device())?))
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = x;
            Ok(None)
        }
    }

    /// Several rows through a Q6K weight as candle's multi-row kernel gives them, without the
    /// widened copy candle would keep beside the blocks (`q6k_prefill`). None where that kernel
    /// does not run here or the weight is not in CPU memory.
    fn q6k_prefill(q: &QTensor, x: &Tensor) -> Result<Option<Tensor>> {
        let (n, k) = q.shape().dims2()?;
        if !x.device().is_cpu() || !q.device().is_cpu() || !q6k_prefill::applies(n, k) {
            return Ok(None);
        }
        let m = x.dim(0)?;
        // The blocks in place (a copy per call would cost more than the kernel).
        let std::borrow::Cow::Borrowed(data) = q.data()? else {
            return Ok(None);
        };
        let lhs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut dst = vec![0f32; m * n];
        if !q6k_prefill::matmul(data, &lhs, (m, k, n), &mut dst) {
            return Ok(None);
        }
        Ok(Some(Tensor::from_vec(dst, (m, n), x.device())?))
    }

    fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        Ok(match &self.weight {
            Weight::Quantized(QMatMul::QTensor(q), GgmlDType::Q6K) => {
                // One row: candle's one-row kernel, run by `q6k_rows` in fewer instructions.
                let ours = match x.dim(0)? {
                    1 => self.q6k_rows_as_single(&x)?,
                    _ => Self::q6k_prefill(q, &x)?,
                };
                match ours {
                    Some(y) => y,
                    None => x.apply_op1_no_bwd(q.as_ref())?,
                }
            }
            Weight::Quantized(q, _) => q.forward(&x)?,
            Weight::Q8_0Tiles(t) => t.matmul(&x)?,
            Weight::Q4kTiles(t) => t.matmul(&x)?,
            Weight::Dense(w) => x.matmul(&w.t()?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows that must match single-row calls do, bit for bit, for every weight type whose kernel
    /// depends on the row count (Q6K takes the shared-read path on x86) and for the engine's Q8_0
    /// tiles, at odd output sizes too.
    #[test]
    fn independent_rows_equal_single_row_calls() {
        let device = Device::Cpu;
        for (dtype, n, k) in [
            (GgmlDType::Q6K, 64, 512),
            (GgmlDType::Q6K, 37, 512),
            (GgmlDType::Q4K, 64, 512),
            (GgmlDType::Q8_0, 33, 512),
            // K not a multiple of 256: the engine's Q8_0 tiles (on x86 with AVX2).
            (GgmlDType::Q8_0, 37, 896),
        ] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &device).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let linear = Linear::from_qtensor(Arc::new(q), None).unwrap();
            for m in [2, 5, 17, 31, 32, 70] {
                let x = Tensor::randn(0f32, 1.0, (m, k), &device).unwrap();
                for rows in [Rows::Independent, Rows::Steps] {
                    let all = linear.forward(&x, rows).unwrap();
                    for i in 0..m {
                        let one = linear.forward(&x.narrow(0, i, 1).unwrap(), rows).unwrap();
                        let a: Vec<f32> = all.get(i).unwrap().to_vec1().unwrap();
                        let b: Vec<f32> = one.get(0).unwrap().to_vec1().unwrap();
                        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{dtype:?} n={n} m={m} row {i} differs");
                    }
                }
            }
        }
    }

    /// Linears sharing an input (one quantization, one parallel region: the engine's Q8_0 tiles,
    /// candle's fused Q4K form) give what each gives alone, bit for bit, with a bias and a run-time
    /// LoRA term on some of them, at 1-40 rows, and where their kinds differ (one call each).
    #[test]
    fn shared_input_equals_separate_calls() {
        let device = Device::Cpu;
        let linear = |n: usize, k: usize, dtype: GgmlDType, bias: bool, low_rank: bool| {
            let w = Tensor::randn(0f32, 1.0, (n, k), &device).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let b = bias.then(|| Tensor::randn(0f32, 1.0, n, &device).unwrap());
            let mut l = Linear::from_qtensor(Arc::new(q), b).unwrap();
            if low_rank {
                l.set_low_rank(LowRank {
                    a: Tensor::randn(0f32, 0.1, (4, k), &device).unwrap(),
                    b: Tensor::randn(0f32, 0.1, (n, 4), &device).unwrap(),
                });
            }
            l
        };
        let sets = [
            // The engine's Q8_0 tiles.
            vec![
                linear(64, 896, GgmlDType::Q8_0, true, false),
                linear(37, 896, GgmlDType::Q8_0, false, true),
                linear(16, 896, GgmlDType::Q8_0, true, true),
            ],
            // Kinds that differ: one call each.
            vec![
                linear(48, 896, GgmlDType::Q8_0, false, false),
                linear(32, 896, GgmlDType::Q4_0, true, false),
            ],
            // Q4K: the engine's tiles (candle's fused form where AMX keeps candle's, up to its
            // switch to AMX tiles: 40 rows, one call each).
            vec![
                linear(64, 512, GgmlDType::Q4K, true, false),
                linear(48, 512, GgmlDType::Q4K, false, true),
            ],
        ];
        for set in &sets {
            let refs: Vec<&Linear> = set.iter().collect();
            let (_, k) = set[0].dims().unwrap();
            for m in [1, 5, 31, 40] {
                let x = Tensor::randn(0f32, 1.0, (m, k), &device).unwrap();
                if set[0].block_size() == 256
                    && m < 32
                    && crate::q8_0_tiles::Level::detect()
                        == Some(crate::q8_0_tiles::Level::Avx512Vnni)
                {
                    // One shared call really runs here (the engine's Q4K tiles, or candle's
                    // fused form on AMX machines; both AVX-512 VNNI only).
                    assert!(Linear::shared_kernel(&refs, &x).unwrap().is_some(), "m={m}");
                }
                for rows in [Rows::Independent, Rows::SameSequence] {
                    let together = Linear::forward_shared(&refs, &x, rows).unwrap();
                    for (l, got) in set.iter().zip(&together) {
                        let alone = l.forward(&x, rows).unwrap();
                        let a: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
                        let b: Vec<f32> = alone.flatten_all().unwrap().to_vec1().unwrap();
                        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{:?} m={m} {rows:?}", l.dims());
                    }
                }
            }
        }
    }
}
