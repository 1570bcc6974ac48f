//! Activation rows quantized to candle's Q8K blocks, the input of every K-quant kernel here.
//!
//! A block is 256 values: an f32 scale, the values as i8, and the sums of each 16 of them (i16).
//! candle does not make the fields public, so the kernels read them as the bytes they are.

use candle_core::quantized::k_quants::{BlockQ8K, GgmlType, QK_K};

/// Bytes of one Q8K block: d (f32), qs[256] (i8), bsums[16] (i16).
pub(crate) const Q8K_BYTES: usize = 292;
/// Offset of `qs` in a block.
pub(crate) const Q8K_QS: usize = 4;
/// Offset of `bsums` in a block.
pub(crate) const Q8K_BSUMS: usize = 4 + QK_K;

const _: () = assert!(std::mem::size_of::<BlockQ8K>() == Q8K_BYTES);

/// `m` rows of `k` values, each row `k / 256` blocks, as candle's quantized matmul forms them.
pub(crate) struct Q8kRows {
    blocks: Vec<BlockQ8K>,
}

impl Q8kRows {
    /// Quantizes `lhs` (`m` rows of `k`, `k` a multiple of 256) row by row with candle's
    /// `BlockQ8K::from_float`, the rows in parallel when there are several (as candle does).
    pub fn quantize(lhs: &[f32], m: usize, k: usize) -> Q8kRows {
        let per_row = k / QK_K;
        let mut blocks = vec![BlockQ8K::zeros(); m * per_row];
        if m <= 1 || per_row == 0 {
            for (row, out) in lhs.chunks_exact(k).zip(blocks.chunks_exact_mut(per_row)) {
                BlockQ8K::from_float(row, out);
            }
            return Q8kRows { blocks };
        }
        let out_ptr = blocks.as_mut_ptr() as usize;
        candle_core::utils::barrier_pool().execute_chunked(m, |rows| {
            for r in rows {
                // SAFETY: each row's blocks are written by exactly one work item; `blocks` holds
                // m * per_row blocks and outlives the pool call.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(
                        (out_ptr as *mut BlockQ8K).add(r * per_row),
                        per_row,
                    )
                };
                BlockQ8K::from_float(&lhs[r * k..(r + 1) * k], out);
            }
        });
        Q8kRows { blocks }
    }

    /// Every block of every row, row-major, as bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: BlockQ8K is repr(C) { d: f32, qs: [i8; 256], bsums: [i16; 16] } (asserted
        // size, no padding), read as the bytes its fields are.
        unsafe {
            std::slice::from_raw_parts(
                self.blocks.as_ptr().cast::<u8>(),
                self.blocks.len() * Q8K_BYTES,
            )
        }
    }
}
