//! The rows of one sequence (prefill) through a compact Q6K weight, without a second copy of it.
//!
//! On AVX-512 VNNI candle multiplies several rows by Q6K through tiles with every value widened
//! to a byte and every scale to f32, built on first use and kept beside the blocks: 1.52x the
//! weight's bytes more (0.5 GB on the 1.5B). Here a worker widens one column tile's blocks into
//! that same form just before it runs them over its rows, and keeps only that tile.
//!
//! The kernel is candle's `q6k_tile` over `matmul_unit_512` instruction for instruction, on the
//! same widened values and the same Q8K activations, so the results are bit-identical to candle's.

use candle_core::quantized::k_quants::QK_K;
use half::f16;

use crate::q6k_rows::{self, Q6K_BYTES};
use crate::q8_0_tiles::Level;
use crate::q8k_rows::{Q8kRows, Q8K_BYTES};

/// Output columns per tile: one 512-bit register of f32 lanes.
const TILE: usize = 16;
/// Sub-blocks of 16 values in a 256-value block, each with its own scale.
const SUBS: usize = 16;
/// Rows sharing one pass over a widened block.
const ROWS_MAX: usize = 8;
/// Rows of one work unit; a worker widens a tile once for all the units of it that it runs.
const ROWS_PER_UNIT: usize = 32;

/// One block of 16 columns widened as candle widens it.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Widened {
    /// `d * scale`, `[sub][column]`.
    scales: [[f32; TILE]; SUBS],
    /// The 6-bit values as bytes (value + 32): `[group of 4 values (64)][column][4 bytes]`.
    qs: [u8; QK_K / 4 * TILE * 4],
}

/// Whether [`matmul`] runs for this weight shape on this CPU.
pub(crate) fn applies(n: usize, k: usize) -> bool {
    Level::detect() == Some(Level::Avx512Vnni)
        && k > 0
        && k.is_multiple_of(QK_K)
        && n.is_multiple_of(TILE)
}

/// `dst[r * n + c] = row r of lhs (m x k) . column c` of a compact Q6K weight (`n` columns of
/// `k / 256` blocks each, as bytes), equal to candle's multi-row result. False where it does not
/// apply (see [`applies`]) or the sizes disagree.
pub(crate) fn matmul(
    weight: &[u8],
    lhs: &[f32],
    (m, k, n): (usize, usize, usize),
    dst: &mut [f32],
) -> bool {
    let Some(blocks) = q6k_rows::blocks_per_column(weight, lhs, (m, k, n), dst) else {
        return false;
    };
    if !applies(n, k) {
        return false;
    }
    let acts = Q8kRows::quantize(lhs, m, k);
    let acts = acts.bytes();
    let chunks = m.div_ceil(ROWS_PER_UNIT);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dst_ptr = dst.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(n / TILE * chunks, |units| {
        for u in units {
            let (t, chunk) = (u / chunks, u % chunks);
            WIDENED.with(|cell| {
                let mut cache = cell.borrow_mut();
                if cache.0 != (call, t) {
                    cache.1.clear();
                    cache
                        .1
                        .extend((0..blocks).map(|b| widen(weight, blocks, t, b)));
                    cache.0 = (call, t);
                }
                let rows = chunk * ROWS_PER_UNIT..((chunk + 1) * ROWS_PER_UNIT).min(m);
                for first in rows.clone().step_by(ROWS_MAX) {
                    let count = ROWS_MAX.min(rows.end - first);
                    // SAFETY: AVX-512 VNNI was detected (`applies`); each (row, column) of dst is
                    // written by exactly one unit; dst holds m * n f32 and outlives the pool
                    // call; acts holds m rows of `blocks` Q8K blocks.
                    unsafe {
                        let out = (dst_ptr as *mut f32).add(first * n + t * TILE);
                        let acts = &acts[first * blocks * Q8K_BYTES..];
                        x86::rows(&cache.1, acts, count, out, n);
                    }
                }
            });
        }
    });
    true
}

/// Each call's number, so a worker's widened tile is never one of another call.
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// The last tile this worker widened: ((call, tile), its blocks).
    static WIDENED: std::cell::RefCell<((u64, usize), Vec<Widened>)> =
        const { std::cell::RefCell::new(((u64::MAX, 0), Vec::new())) };
}

/// Block `b` of column tile `t`, widened as candle's `pack_q6k` does.
fn widen(weight: &[u8], blocks: usize, t: usize, b: usize) -> Widened {
    let mut out = Widened {
        scales: [[0.0; TILE]; SUBS],
        qs: [0; QK_K / 4 * TILE * 4],
    };
    for c in 0..TILE {
        let blk = &weight[((t * TILE + c) * blocks + b) * Q6K_BYTES..][..Q6K_BYTES];
        let (ql, qh, scales) = (&blk[..128], &blk[128..192], &blk[192..208]);
        let d = f16::from_le_bytes([blk[208], blk[209]]).to_f32();
        for (sub, &s) in scales.iter().enumerate() {
            out.scales[sub][c] = d * s as i8 as f32;
        }
        let mut vals = [0u8; QK_K];
        for h in 0..2 {
            let (ql, qh) = (&ql[h * 64..], &qh[h * 32..]);
            for j in 0..32 {
                vals[h * 128 + j] = (ql[j] & 0x0F) | ((qh[j] & 3) << 4);
                vals[h * 128 + j + 32] = (ql[j + 32] & 0x0F) | (((qh[j] >> 2) & 3) << 4);
                vals[h * 128 + j + 64] = (ql[j] >> 4) | (((qh[j] >> 4) & 3) << 4);
                vals[h * 128 + j + 96] = (ql[j + 32] >> 4) | (((qh[j] >> 6) & 3) << 4);
            }
        }
        for g in 0..QK_K / 4 {
            out.qs[(g * TILE + c) * 4..][..4].copy_from_slice(&vals[g * 4..g * 4 + 4]);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use super::{Widened, ROWS_MAX, SUBS, TILE};
    use crate::q8k_rows::{Q8K_BSUMS, Q8K_BYTES, Q8K_QS};
    use crate::rows_dispatch::with_rows;

    /// `rows` (1..=ROWS_MAX) consecutive activation rows against one column tile's blocks,
    /// written to `out` (row stride `n`).
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI must be available; `acts` holds `rows` rows of `tiles.len()` blocks;
    /// `out` has room for `rows` rows of 16 values at stride `n`.
    pub(super) unsafe fn rows(
        tiles: &[Widened],
        acts: &[u8],
        rows: usize,
        out: *mut f32,
        n: usize,
    ) {
        const _: () = assert!(ROWS_MAX == 8);
        with_rows!(rows, [1, 2, 3, 4, 5, 6, 7], 8, rows_of(tiles, acts, out, n))
    }

    /// candle's `q6k_tile`, block after block, for R rows at once.
    #[target_feature(enable = "avx512f,avx512vnni,avx512bw")]
    unsafe fn rows_of<const R: usize>(tiles: &[Widened], acts: &[u8], out: *mut f32, n: usize) {
        let blocks = tiles.len();
        let mut acc = [_mm512_setzero_ps(); R];
        for (b, tile) in tiles.iter().enumerate() {
            let act: [*const u8; R] =
                std::array::from_fn(|r| acts.as_ptr().add((r * blocks + b) * Q8K_BYTES));
            for sub in 0..SUBS {
                let mut isum = [_mm512_setzero_si512(); R];
                for g4 in 0..4 {
                    let g = sub * 4 + g4;
                    let w = _mm512_loadu_si512(tile.qs.as_ptr().add(g * TILE * 4) as *const _);
                    for r in 0..R {
                        let a = _mm512_set1_epi32(
                            (act[r].add(Q8K_QS + sub * 16 + g4 * 4) as *const i32).read_unaligned(),
                        );
                        isum[r] = _mm512_dpbusd_epi32(isum[r], w, a);
                    }
                }
                let scale = _mm512_loadu_ps(tile.scales[sub].as_ptr());
                for r in 0..R {
                    let dall = (act[r] as *const f32).read_unaligned();
                    let bsum =
                        (act[r].add(Q8K_BSUMS + 2 * sub) as *const i16).read_unaligned() as f32;
                    let f = _mm512_sub_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_set1_ps(32.0 * bsum));
                    acc[r] = _mm512_fmadd_ps(f, _mm512_mul_ps(scale, _mm512_set1_ps(dall)), acc[r]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(r * n), *acc);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::Widened;

    /// Never called: `applies` is false off x86_64.
    pub(super) unsafe fn rows(_: &[Widened], _: &[u8], _: usize, _: *mut f32, _: usize) {
        unreachable!("q6k prefill runs only on x86_64")
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    /// Every row equals candle's multi-row Q6K matmul (its widened tiles on this CPU) bit for bit,
    /// across passes and units of rows (m up to 70) and several shapes.
    #[test]
    fn equals_candle_bit_for_bit() {
        if !super::applies(16, 256) {
            eprintln!("SKIPPED: this CPU has no AVX-512 VNNI: candle's own Q6K prefill stays");
            return;
        }
        for (n, k) in [(16, 256), (48, 512), (64, 1536)] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, GgmlDType::Q6K).unwrap();
            let data = q.data().unwrap().to_vec();
            let candle = QMatMul::from_qtensor(q).unwrap();
            for m in [2, 3, 8, 9, 31, 33, 70] {
                let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
                let lhs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let mut dst = vec![0f32; m * n];
                assert!(super::matmul(&data, &lhs, (m, k, n), &mut dst));
                let want = candle.forward(&x).unwrap();
                let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let same = dst
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "n={n} k={k} m={m}");
            }
        }
    }
}
