//! How a model is cut into tensor-parallel shards (Megatron layout): which query/KV heads, FFN
//! columns and vocabulary rows each rank owns, and the cutting of weights along those ranges.
//!
//! Column-parallel layers (q, k, v, gate, up, LM head) keep whole output rows, which any weight
//! allows. Row-parallel layers (o, down) keep a range of input columns of every row; a quantized
//! row is a run of blocks (32 values for Q4_0/Q4_1/Q5_0/Q8_0, 256 for K-quants), so those ranges
//! must start and end on block boundaries. Where a dimension is not a multiple of block x ranks the
//! split is uneven (e.g. 35 blocks over 2 ranks: 18 and 17).

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};

use crate::error::{EngineError, Result};

/// Which heads each rank computes, as head indices (query heads and KV heads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeadPlan {
    pub heads: Vec<Range<usize>>,
    pub kv_heads: Vec<Range<usize>>,
}

/// Splits `n_head` query heads evenly over `ranks`, each rank keeping the KV heads its query heads
/// read. A rank's query heads must be whole KV groups, or lie inside one KV group (then that KV
/// head is replicated on every rank of the group), so attention needs no cross-rank traffic.
pub(crate) fn head_plan(n_head: usize, n_kv_head: usize, ranks: usize) -> Result<HeadPlan> {
    let refuse = |why: String| {
        Err(EngineError::InvalidRequest(format!(
            "tensor parallelism {ranks} is not possible for this model ({n_head} query heads, \
             {n_kv_head} KV heads): {why}"
        )))
    };
    if ranks == 0 {
        return refuse("it must be at least 1".into());
    }
    if n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) {
        return refuse("the query heads do not form whole KV groups".into());
    }
    if !n_head.is_multiple_of(ranks) {
        return refuse(format!(
            "{n_head} query heads cannot be split evenly over {ranks} ranks"
        ));
    }
    let per_rank = n_head / ranks;
    let group = n_head / n_kv_head;
    if !per_rank.is_multiple_of(group) && !group.is_multiple_of(per_rank) {
        return refuse(format!(
            "each rank would get {per_rank} query heads, which neither are whole KV groups of \
             {group} nor lie within one group"
        ));
    }
    let heads: Vec<Range<usize>> = (0..ranks)
        .map(|r| r * per_rank..(r + 1) * per_rank)
        .collect();
    let kv_heads = heads
        .iter()
        .map(|h| h.start / group..(h.end - 1) / group + 1)
        .collect();
    Ok(HeadPlan { heads, kv_heads })
}

/// Splits `len` elements into `parts` ranges of whole `block`s, as even as possible (the first
/// ranges get one block more). Every part gets at least one block.
pub(crate) fn block_ranges(len: usize, block: usize, parts: usize) -> Result<Vec<Range<usize>>> {
    if block == 0 || parts == 0 || !len.is_multiple_of(block) {
        return Err(EngineError::InvalidRequest(format!(
            "cannot split {len} values into {parts} ranges of whole blocks of {block}"
        )));
    }
    let blocks = len / block;
    if blocks < parts {
        return Err(EngineError::InvalidRequest(format!(
            "{len} values are only {blocks} blocks of {block}, fewer than {parts} ranks"
        )));
    }
    let (base, extra) = (blocks / parts, blocks % parts);
    let mut start = 0;
    Ok((0..parts)
        .map(|p| {
            let n = base + usize::from(p < extra);
            let range = start * block..(start + n) * block;
            start += n;
            range
        })
        .collect())
}

/// Scales head ranges to value ranges (`head_dim` values per head).
pub(crate) fn scale_ranges(ranges: &[Range<usize>], by: usize) -> Vec<Range<usize>> {
    ranges.iter().map(|r| r.start * by..r.end * by).collect()
}

/// Rows `rows` of a 2-D block-quantized tensor `[out, in]`, on `device`. Whole rows are contiguous
/// byte ranges, whatever the quantization.
pub(crate) fn quantized_rows(q: &QTensor, rows: Range<usize>, device: &Device) -> Result<QTensor> {
    let (out, cols) = q.shape().dims2()?;
    if rows.start > rows.end || rows.end > out {
        return Err(EngineError::InvalidRequest(format!(
            "rows {rows:?} are outside a tensor of {out} rows"
        )));
    }
    let row_bytes = row_bytes(q, cols)?;
    let data = q.data()?;
    let bytes = &data[rows.start * row_bytes..rows.end * row_bytes];
    rebuild(q, bytes.to_vec(), (rows.len(), cols), device)
}

/// Columns `cols` of every row of a 2-D block-quantized tensor `[out, in]`, on `device`; `cols` must
/// start and end on quantization-block boundaries.
pub(crate) fn quantized_cols(q: &QTensor, cols: Range<usize>, device: &Device) -> Result<QTensor> {
    let (out, width) = q.shape().dims2()?;
    let block = q.dtype().block_size();
    if cols.start > cols.end || cols.end > width {
        return Err(EngineError::InvalidRequest(format!(
            "columns {cols:?} are outside a tensor of {width} columns"
        )));
    }
    if !cols.start.is_multiple_of(block) || !cols.end.is_multiple_of(block) {
        return Err(EngineError::InvalidRequest(format!(
            "columns {cols:?} do not start and end on {:?} block boundaries (block size {block})",
            q.dtype()
        )));
    }
    let row_bytes = row_bytes(q, width)?;
    let type_size = q.dtype().type_size();
    let (from, to) = (cols.start / block * type_size, cols.end / block * type_size);
    let data = q.data()?;
    let mut bytes = Vec::with_capacity(out * (to - from));
    for row in data.chunks_exact(row_bytes) {
        bytes.extend_from_slice(&row[from..to]);
    }
    rebuild(q, bytes, (out, cols.len()), device)
}

fn row_bytes(q: &QTensor, cols: usize) -> Result<usize> {
    let block = q.dtype().block_size();
    if !cols.is_multiple_of(block) {
        return Err(EngineError::InvalidRequest(format!(
            "a row of {cols} values is not whole {:?} blocks",
            q.dtype()
        )));
    }
    Ok(cols / block * q.dtype().type_size())
}

fn rebuild(q: &QTensor, bytes: Vec<u8>, shape: (usize, usize), device: &Device) -> Result<QTensor> {
    let storage = QStorage::from_data(Cow::Owned(bytes), device, q.dtype())?;
    Ok(QTensor::new(storage, shape)?)
}

/// The same quantized tensor on `device`: shared on the CPU, copied to a GPU.
pub(crate) fn quantized_on(q: &Arc<QTensor>, device: &Device) -> Result<Arc<QTensor>> {
    if device.is_cpu() && q.device().is_cpu() {
        return Ok(q.clone());
    }
    let (rows, _) = q.shape().dims2()?;
    Ok(Arc::new(quantized_rows(q, 0..rows, device)?))
}

/// `narrow` + copy of a dense tensor onto `device`.
pub(crate) fn dense_range(
    t: &Tensor,
    dim: usize,
    r: &Range<usize>,
    device: &Device,
) -> Result<Tensor> {
    Ok(t.narrow(dim, r.start, r.len())?
        .contiguous()?
        .to_device(device)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;

    #[test]
    fn block_ranges_split_unevenly_on_block_boundaries() {
        // Qwen2.5-1.5B ffn_down: 8960 inputs = 35 Q4_K/Q6_K blocks -> 18 + 17 blocks.
        assert_eq!(
            block_ranges(8960, 256, 2).unwrap(),
            vec![0..4608, 4608..8960]
        );
        // Qwen2.5-0.5B ffn_down: 4864 = 19 blocks.
        assert_eq!(
            block_ranges(4864, 256, 2).unwrap(),
            vec![0..2560, 2560..4864]
        );
        assert_eq!(
            block_ranges(1536, 32, 3).unwrap(),
            vec![0..512, 512..1024, 1024..1536]
        );
        assert_eq!(block_ranges(10, 1, 3).unwrap(), vec![0..4, 4..7, 7..10]);
        assert!(block_ranges(100, 32, 2).is_err(), "not whole blocks");
        assert!(
            block_ranges(256, 256, 2).is_err(),
            "fewer blocks than ranks"
        );
        assert!(block_ranges(256, 256, 0).is_err());
    }

    #[test]
    fn head_plans_keep_query_heads_within_kv_groups() {
        // Qwen2.5-0.5B: 14 heads, 2 KV heads.
        let p = head_plan(14, 2, 2).unwrap();
        assert_eq!(p.heads, vec![0..7, 7..14]);
        assert_eq!(p.kv_heads, vec![0..1, 1..2]);
        // SmolLM2-135M: 9 heads, 3 KV heads.
        let p = head_plan(9, 3, 3).unwrap();
        assert_eq!(p.kv_heads, vec![0..1, 1..2, 2..3]);
        // Fewer KV heads than ranks: each KV head is replicated on the ranks of its group.
        let p = head_plan(4, 2, 4).unwrap();
        assert_eq!(p.heads, vec![0..1, 1..2, 2..3, 3..4]);
        assert_eq!(p.kv_heads, vec![0..1, 0..1, 1..2, 1..2]);
        // Several whole groups per rank.
        let p = head_plan(8, 4, 2).unwrap();
        assert_eq!(p.kv_heads, vec![0..2, 2..4]);
        assert!(head_plan(14, 2, 3).is_err(), "14 heads over 3 ranks");
        assert!(head_plan(14, 2, 0).is_err());
        // 6 heads in groups of 2 over 2 ranks = 3 heads each: splits a KV group.
        let err = head_plan(6, 3, 2).unwrap_err().to_string();
        assert!(err.contains("KV group"), "{err}");
    }

    fn sample(dtype: GgmlDType, rows: usize, cols: usize) -> QTensor {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
            .collect();
        let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
        QTensor::quantize(&t, dtype).unwrap()
    }

    fn dequant(q: &QTensor) -> Tensor {
        q.dequantize(&Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn quantized_cuts_match_the_dequantized_whole() {
        for (dtype, cols) in [
            (GgmlDType::Q4K, 256 * 5),
            (GgmlDType::Q6K, 256 * 3),
            (GgmlDType::Q8_0, 32 * 7),
            (GgmlDType::Q4_1, 32 * 6),
        ] {
            let q = sample(dtype, 6, cols);
            let whole = dequant(&q);
            let parts = block_ranges(cols, dtype.block_size(), 2).unwrap();
            let mut pieces = Vec::new();
            for r in &parts {
                let cut = quantized_cols(&q, r.clone(), &Device::Cpu).unwrap();
                assert_eq!(cut.shape().dims2().unwrap(), (6, r.len()));
                pieces.push(dequant(&cut));
            }
            let joined = Tensor::cat(&pieces, 1).unwrap();
            let diff = max_abs_diff(&joined, &whole);
            assert_eq!(diff, 0.0, "{dtype:?} column cut");
            let rows = quantized_rows(&q, 2..5, &Device::Cpu).unwrap();
            let diff = max_abs_diff(&dequant(&rows), &whole.narrow(0, 2, 3).unwrap());
            assert_eq!(diff, 0.0, "{dtype:?} row cut");
        }
    }

    #[test]
    fn quantized_column_cuts_refuse_partial_blocks() {
        let q = sample(GgmlDType::Q4K, 2, 512);
        let err = quantized_cols(&q, 0..128, &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("block"), "{err}");
    }
    /// Row-parallel shards' partial products sum to the whole product up to f32 rounding (the
    /// activations of a shard are quantized in the same blocks as in the whole row).
    #[test]
    fn row_parallel_partial_products_sum_to_the_whole() {
        use candle_core::quantized::QMatMul;
        use candle_core::Module;
        for (dtype, k) in [
            (GgmlDType::Q4K, 256 * 5),
            (GgmlDType::Q6K, 256 * 5),
            (GgmlDType::Q8_0, 32 * 28),
            (GgmlDType::Q4_1, 32 * 18),
        ] {
            let n = 64;
            let q = sample(dtype, n, k);
            for m in [1usize, 20, 40] {
                let x: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 104729 % 997) as f32 / 498.0) - 1.0)
                    .collect();
                let x = Tensor::from_vec(x, (m, k), &Device::Cpu).unwrap();
                let whole = quantized_rows(&q, 0..n, &Device::Cpu).unwrap();
                let full = QMatMul::from_qtensor(whole).unwrap().forward(&x).unwrap();
                let mut sum: Option<Tensor> = None;
                for r in block_ranges(k, dtype.block_size(), 2).unwrap() {
                    let cut = quantized_cols(&q, r.clone(), &Device::Cpu).unwrap();
                    let xr = x.narrow(1, r.start, r.len()).unwrap().contiguous().unwrap();
                    let y = QMatMul::from_qtensor(cut).unwrap().forward(&xr).unwrap();
                    sum = Some(match sum {
                        None => y,
                        Some(s) => (s + y).unwrap(),
                    });
                }
                let diff = max_abs_diff(&sum.unwrap(), &full);
                // Outputs are O(10); measured <= 1.6e-5.
                assert!(
                    diff < 1e-4,
                    "{dtype:?} m={m}: partial sums differ by {diff}"
                );
            }
        }
    }
}
