//! Several rows through a compact Q6K weight (a decoding batch, a speculative verification), each
//! row bit-identical to candle's single-row GEMV, with each weight block unpacked once for all
//! the rows instead of once per row.
//!
//! candle multiplies one row by a Q6K weight with `vec_dot_q6k_q8k` (AVX2) and several rows with
//! repacked tiles of another rounding, so rows that must equal single-row calls went through the
//! one-row kernel row by row, each row paying the whole unpacking. Here every step of that kernel
//! is the same instruction on the same data (the same Q8K activation blocks, the same 16-bit
//! products, integer lane sums, one FMA per block and lane, candle's horizontal sum); only the
//! unpacking and the scale vectors are shared across rows.

use candle_core::quantized::k_quants::QK_K;

use crate::q8_0_tiles::Level;
use crate::q8k_rows::{Q8kRows, Q8K_BYTES, Q8K_QS};

/// Bytes of one Q6K block: ql[128], qh[64], scales[16] (i8), d (f16).
pub(crate) const Q6K_BYTES: usize = 210;
/// Rows whose accumulators one pass over a column keeps.
const ROWS_PER_PASS: usize = 8;

/// `dst[r * n + c] = row r of lhs (m x k) . column c of the weight` for a compact Q6K weight
/// (`n` columns of `k / 256` blocks each, as bytes). False where this CPU lacks AVX2 + FMA (the
/// caller then goes row by row through candle).
pub(crate) fn matmul(
    weight: &[u8],
    lhs: &[f32],
    (m, k, n): (usize, usize, usize),
    dst: &mut [f32],
) -> bool {
    matmul_at(Level::detect(), weight, lhs, (m, k, n), dst)
}

/// [`matmul`] with the kernel for `level` (a test runs each kernel this CPU has).
fn matmul_at(
    level: Option<Level>,
    weight: &[u8],
    lhs: &[f32],
    (m, k, n): (usize, usize, usize),
    dst: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return false;
        }
        let Some(blocks) = blocks_per_column(weight, lhs, (m, k, n), dst) else {
            return false;
        };
        let acts = Q8kRows::quantize(lhs, m, k);
        let acts = acts.bytes();
        // One row: the same steps in 512-bit registers (`x86_512`), measured 4 % faster on the
        // 1.5B. Several rows keep the AVX2 kernel, which unpacks each block once for all of them:
        // through the 512-bit kernel a batch of 5 on the 0.5B ran 3-7 % slower.
        let offsets = (level == Some(Level::Avx512Vnni) && m == 1).then(|| offsets(acts));
        let dst_ptr = dst.as_mut_ptr() as usize;
        candle_core::utils::barrier_pool().execute_chunked(n, |columns| {
            for c in columns {
                let column = &weight[c * blocks * Q6K_BYTES..(c + 1) * blocks * Q6K_BYTES];
                for first in (0..m).step_by(ROWS_PER_PASS) {
                    let rows = first..(first + ROWS_PER_PASS).min(m);
                    let mut sums = [0f32; ROWS_PER_PASS];
                    // SAFETY: AVX2 + FMA were detected, and AVX-512 VNNI where `offsets` exist;
                    // the slices hold whole blocks (checked), `offsets` one entry per row block.
                    unsafe {
                        match &offsets {
                            Some(offsets) => x86_512::column(
                                column,
                                acts,
                                offsets,
                                blocks,
                                rows.clone(),
                                &mut sums,
                            ),
                            None => x86::column(column, acts, blocks, rows.clone(), &mut sums),
                        }
                    };
                    for (i, r) in rows.enumerate() {
                        // SAFETY: each (row, column) is written by exactly one work item; dst
                        // holds m * n values (checked) and outlives the pool call.
                        unsafe { *(dst_ptr as *mut f32).add(r * n + c) = sums[i] };
                    }
                }
            }
        });
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (level, weight, lhs, m, k, n, dst);
        false
    }
}

/// Blocks per column of a compact Q6K weight (`n` columns of `k / 256` blocks, as bytes) when the
/// weight, `lhs` (`m x k`) and `dst` (`m x n`) have the sizes of that product; None otherwise.
pub(crate) fn blocks_per_column(
    weight: &[u8],
    lhs: &[f32],
    (m, k, n): (usize, usize, usize),
    dst: &[f32],
) -> Option<usize> {
    let blocks = k / QK_K;
    let fits = k % QK_K == 0
        && weight.len() == n * blocks * Q6K_BYTES
        && lhs.len() == m * k
        && dst.len() == m * n;
    fits.then_some(blocks)
}

/// `32 * (sum of each 2 activation values)` of every Q8K block, `[row block][pair]`: the part of
/// `(q - 32) * a` that does not depend on the weight, as candle's `maddubs(32, a)` forms it, once
/// for every column.
#[cfg(target_arch = "x86_64")]
fn offsets(acts: &[u8]) -> Vec<[i16; QK_K / 2]> {
    acts.chunks_exact(Q8K_BYTES)
        .map(|block| {
            let qs = &block[Q8K_QS..Q8K_QS + QK_K];
            std::array::from_fn(|u| 32 * (qs[2 * u] as i8 as i16 + qs[2 * u + 1] as i8 as i16))
        })
        .collect()
}

/// candle's one-row Q6K kernel (AVX2) in 512-bit registers.
///
/// The AVX2 kernel forms, per block and row, eight exact integer lane sums (lane `s` of every
/// 32-value part: four products `(q - 32) * a` times their 16-value sub-block's scale), then one
/// FMA per lane. Here the same `maddubs` / `madd` steps run on 64 values at once and the two
/// 256-bit halves are added: the same eight integers (integer sums are exact in any order), then
/// the same FMA per lane and the same horizontal sum.
#[cfg(target_arch = "x86_64")]
mod x86_512 {
    use core::arch::x86_64::*;

    use half::f16;

    use super::{Q6K_BYTES, Q8K_BYTES, ROWS_PER_PASS};
    use crate::q8k_rows::Q8K_QS;

    /// One column's blocks against some rows' Q8K blocks (`rows` of at most ROWS_PER_PASS).
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI, AVX2 and FMA must be available; `column` holds `blocks` Q6K blocks,
    /// `acts` every row's and `offsets` one entry per row block.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub(super) unsafe fn column(
        column: &[u8],
        acts: &[u8],
        offsets: &[[i16; 128]],
        blocks: usize,
        rows: std::ops::Range<usize>,
        sums: &mut [f32; ROWS_PER_PASS],
    ) {
        let m4 = _mm512_set1_epi8(0xF);
        let m3 = _mm512_set1_epi8(3);
        // The high 2 bits of parts 0 and 2 are bits 0-1 and 4-5 of qh, of parts 1 and 3 bits 2-3
        // and 6-7: per-half shift counts (16-bit lanes; masking after the shift keeps one byte).
        let shift_01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
        let shift_23 = _mm512_add_epi16(shift_01, _mm512_set1_epi16(4));
        let mut acc = [_mm256_setzero_ps(); ROWS_PER_PASS];
        for b in 0..blocks {
            let x = &column[b * Q6K_BYTES..(b + 1) * Q6K_BYTES];
            let (ql, qh, scales) = (&x[..128], &x[128..192], &x[192..208]);
            let xd = f16::from_le_bytes([x[208], x[209]]).to_f32();
            // v[j][h]: the values of 128-value half j, parts 2h and 2h + 1, as bytes.
            let mut v = [[_mm512_setzero_si512(); 2]; 2];
            for (j, v) in v.iter_mut().enumerate() {
                let low = _mm512_loadu_si512(ql[j * 64..].as_ptr() as *const _);
                let high = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    qh[j * 32..].as_ptr() as *const __m256i
                ));
                let h01 = _mm512_and_si512(_mm512_srlv_epi16(high, shift_01), m3);
                let h23 = _mm512_and_si512(_mm512_srlv_epi16(high, shift_23), m3);
                v[0] = _mm512_or_si512(_mm512_and_si512(low, m4), _mm512_slli_epi16(h01, 4));
                v[1] = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16(low, 4), m4),
                    _mm512_slli_epi16(h23, 4),
                );
            }
            // sc[j][h]: 16-bit lane u (values 2u, 2u + 1) holds the scale of sub-block
            // 8j + 4h + u / 8.
            let scale_bytes =
                _mm256_broadcastsi128_si256(_mm_loadu_si128(scales.as_ptr() as *const __m128i));
            let mut sc = [[_mm512_setzero_si512(); 2]; 2];
            for (j, sc) in sc.iter_mut().enumerate() {
                for (h, sc) in sc.iter_mut().enumerate() {
                    let first = (8 * j + 4 * h) as i8;
                    let shuffle: [i8; 32] = std::array::from_fn(|u| first + (u / 8) as i8);
                    let shuffle = _mm256_loadu_si256(shuffle.as_ptr() as *const __m256i);
                    *sc = _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(scale_bytes, shuffle));
                }
            }
            for (i, r) in rows.clone().enumerate() {
                let y = &acts[(r * blocks + b) * Q8K_BYTES..(r * blocks + b + 1) * Q8K_BYTES];
                let yd = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
                let q8 = &y[Q8K_QS..];
                let offset = &offsets[r * blocks + b];
                let mut lanes = _mm512_setzero_si512();
                for j in 0..2 {
                    for h in 0..2 {
                        let a = _mm512_loadu_si512(q8[j * 128 + h * 64..].as_ptr() as *const _);
                        let off =
                            _mm512_loadu_si512(offset[(2 * j + h) * 32..].as_ptr() as *const _);
                        let p16 = _mm512_sub_epi16(_mm512_maddubs_epi16(v[j][h], a), off);
                        lanes = _mm512_add_epi32(lanes, _mm512_madd_epi16(sc[j][h], p16));
                    }
                }
                // Lane t of a 64-value vector is lane t % 8 of its 32-value part.
                let lanes = _mm256_add_epi32(
                    _mm512_castsi512_si256(lanes),
                    _mm512_extracti64x4_epi64(lanes, 1),
                );
                let d = yd * xd;
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes), acc[i]);
            }
        }
        for (i, _) in rows.enumerate() {
            sums[i] = super::x86::hsum_float_8(acc[i]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use half::f16;

    use super::{Q6K_BYTES, Q8K_BYTES, ROWS_PER_PASS};

    /// candle's `get_scale_shuffle`: byte `i * 2` eight times, then byte `i * 2 + 1` eight times.
    #[inline(always)]
    fn scale_shuffle(i: usize) -> [u8; 16] {
        std::array::from_fn(|b| (i * 2 + b / 8) as u8)
    }

    /// candle's `hsum_float_8`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn hsum_float_8(x: __m256) -> f32 {
        let res = _mm256_extractf128_ps(x, 1);
        let res = _mm_add_ps(res, _mm256_castps256_ps128(x));
        let res = _mm_add_ps(res, _mm_movehl_ps(res, res));
        let res = _mm_add_ss(res, _mm_movehdup_ps(res));
        _mm_cvtss_f32(res)
    }

    /// One column's blocks against some rows' Q8K blocks (`rows` of at most ROWS_PER_PASS).
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `column` holds `blocks` Q6K blocks and `acts` every row's.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn column(
        column: &[u8],
        acts: &[u8],
        blocks: usize,
        rows: std::ops::Range<usize>,
        sums: &mut [f32; ROWS_PER_PASS],
    ) {
        let m4 = _mm256_set1_epi8(0xF);
        let m2 = _mm256_set1_epi8(3);
        let m32s = _mm256_set1_epi8(32);
        let mut acc = [_mm256_setzero_ps(); ROWS_PER_PASS];
        for b in 0..blocks {
            let x = &column[b * Q6K_BYTES..(b + 1) * Q6K_BYTES];
            let (ql, qh, scales_bytes) = (&x[..128], &x[128..192], &x[192..208]);
            let xd = f16::from_le_bytes([x[208], x[209]]).to_f32();
            // SAFETY (loads below): every pointer stays inside the 210-byte block.
            let scales = unsafe { _mm_loadu_si128(scales_bytes.as_ptr() as *const __m128i) };
            // The block's weights and scale vectors, as candle forms them, once for every row.
            let mut q4 = [[_mm256_setzero_si256(); 4]; 2];
            let mut sc = [[_mm256_setzero_si256(); 4]; 2];
            for j in 0..2 {
                let is = j * 4;
                for (part, s) in sc[j].iter_mut().enumerate() {
                    let shuffle = scale_shuffle(is + part);
                    let shuffle = unsafe { _mm_loadu_si128(shuffle.as_ptr() as *const __m128i) };
                    *s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuffle));
                }
                let q4bits1 =
                    unsafe { _mm256_loadu_si256(ql[j * 64..].as_ptr() as *const __m256i) };
                let q4bits2 =
                    unsafe { _mm256_loadu_si256(ql[j * 64 + 32..].as_ptr() as *const __m256i) };
                let q4bits_h =
                    unsafe { _mm256_loadu_si256(qh[j * 32..].as_ptr() as *const __m256i) };
                let q4h_0 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, m2), 4);
                let q4h_1 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 2), m2), 4);
                let q4h_2 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 4), m2), 4);
                let q4h_3 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 6), m2), 4);
                q4[j][0] = _mm256_or_si256(_mm256_and_si256(q4bits1, m4), q4h_0);
                q4[j][1] = _mm256_or_si256(_mm256_and_si256(q4bits2, m4), q4h_1);
                q4[j][2] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m4), q4h_2);
                q4[j][3] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m4), q4h_3);
            }
            for (i, r) in rows.clone().enumerate() {
                let y = &acts[(r * blocks + b) * Q8K_BYTES..(r * blocks + b + 1) * Q8K_BYTES];
                let yd = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
                let q8 = &y[4..4 + 256];
                let d = yd * xd;
                let mut sumi = _mm256_setzero_si256();
                for j in 0..2 {
                    let mut p = [_mm256_setzero_si256(); 4];
                    for (part, p) in p.iter_mut().enumerate() {
                        let q8v = unsafe {
                            _mm256_loadu_si256(q8[j * 128 + part * 32..].as_ptr() as *const __m256i)
                        };
                        let q8s = _mm256_maddubs_epi16(m32s, q8v);
                        let p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q4[j][part], q8v), q8s);
                        *p = _mm256_madd_epi16(sc[j][part], p16);
                    }
                    sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p[0], p[1]));
                    sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p[2], p[3]));
                }
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[i]);
            }
        }
        for (i, _) in rows.enumerate() {
            sums[i] = hsum_float_8(acc[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    use super::*;

    /// Every row equals candle's single-row Q6K GEMV bit for bit, with each kernel this CPU runs
    /// (AVX-512 VNNI, AVX2), across passes of rows (m up to 17) and odd column counts.
    #[test]
    fn rows_equal_single_row_calls_bit_for_bit() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("SKIPPED: this CPU has no AVX2 + FMA; the kernel does not run");
            return;
        }
        let mut levels = vec![Some(Level::Avx2)];
        if Level::detect() == Some(Level::Avx512Vnni) {
            levels.push(Some(Level::Avx512Vnni));
        } else {
            eprintln!("PARTLY SKIPPED: no AVX-512 VNNI here, only the AVX2 kernel is checked");
        }
        for (n, k) in [(37, 512), (64, 1536), (5, 256)] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, GgmlDType::Q6K).unwrap();
            let data = q.data().unwrap().to_vec();
            let single = QMatMul::from_qtensor(q).unwrap();
            for m in [2, 5, 8, 9, 17] {
                let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
                let lhs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for &level in &levels {
                    let mut dst = vec![0f32; m * n];
                    assert!(matmul_at(level, &data, &lhs, (m, k, n), &mut dst));
                    for r in 0..m {
                        let row = x.narrow(0, r, 1).unwrap();
                        let one = single.forward(&row).unwrap();
                        let one = one.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                        let got = &dst[r * n..(r + 1) * n];
                        let same = got
                            .iter()
                            .zip(&one)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{level:?} n={n} k={k} m={m} row {r}");
                        // The row alone (the AVX-512 kernel's case) gives the same bits.
                        let alone = row.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                        let mut dst = vec![0f32; n];
                        assert!(matmul_at(level, &data, &alone, (1, k, n), &mut dst));
                        let same = dst
                            .iter()
                            .zip(&one)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{level:?} n={n} k={k} row {r} alone");
                    }
                }
            }
        }
    }
}
