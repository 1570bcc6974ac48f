//! Q4K weights in tiles of 16 output columns, the only copy of them kept in memory.
//!
//! On AVX-512 VNNI candle multiplies Q4K by repacked tiles that it builds on first use and keeps
//! beside the GGUF blocks, with every sub-block scale widened to f32: 2.33x the weight's bytes
//! (the 1.5B's Q4K weights are 0.6 GB). Here the tiles replace the blocks and keep the scales as
//! the blocks' own 6-bit values and f16 factors (1.03x), widened in registers.
//!
//! The kernel is candle's instruction for instruction (`q4k_tile` over `matmul_unit_512`): the
//! same Q8K activations, the same integer sums per pair of sub-blocks, the scale `d * sc` formed
//! in f32 as candle forms it at packing, and the same FMA order per row. So the results are
//! bit-identical to candle's, whatever the row count: switching moves no answer, and a batched
//! row equals the same row alone.

use candle_core::quantized::k_quants::QK_K;
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use crate::error::{EngineError, Result};
use crate::q8_0_tiles::Level;
use crate::q8k_rows::Q8kRows;

/// Output columns per tile: one 512-bit register of f32 lanes.
const TILE: usize = 16;
/// Sub-blocks of 32 values in a 256-value block, each with its own scale and min.
const SUBS: usize = 8;
/// Bytes of one GGUF Q4K block: d, dmin (f16), scales[12] (6-bit scales and mins), qs[128].
const BLOCK_BYTES: usize = 144;
/// Most rows sharing one pass over a tile (a batch of five decodes reads each tile once).
const ROWS_MAX: usize = 6;

/// One 256-value block of 16 columns.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct TileQ4 {
    /// candle's layout: `[group of 8 values (32)][column][4 bytes]`, byte `j` of a group holding
    /// value `j` in its low nibble and value `j + 4` in its high one.
    qs: [u8; QK_K / 8 * TILE * 4],
    /// Sub-block scales, `[sub][column]`, the 6-bit values of the block.
    sc: [[u8; TILE]; SUBS],
    /// Sub-block mins, `[sub][column]`.
    mn: [[u8; TILE]; SUBS],
    /// The block's scale factors, `[column]`.
    d: [f16; TILE],
    dmin: [f16; TILE],
}

impl std::fmt::Debug for TileQ4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TileQ4")
    }
}

/// A Q4K weight `[n, k]` in tiles, `[tile][block]`.
#[derive(Debug, Clone)]
pub(crate) struct Q4kTiles {
    n: usize,
    k: usize,
    tiles: Vec<TileQ4>,
}

/// Does this CPU run candle's AMX kernel for Q4K prefill? Then candle's own form stays: its
/// tiles there are faster than these for long inputs.
fn has_amx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // Leaf 7 exists on every CPU with AVX-512 (checked before the call).
        let info = core::arch::x86_64::__cpuid_count(7, 0);
        info.edx & (1 << 24) != 0 && info.edx & (1 << 25) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// candle's `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min from the 12 packed bytes.
fn scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// The 12 packed bytes back from the eight scales and mins.
fn pack_scale_min(sc: [u8; SUBS], mn: [u8; SUBS]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4);
    }
    s
}

impl Q4kTiles {
    /// Repacks a Q4K weight in CPU memory where candle would run its AVX-512 VNNI tiles (K a
    /// multiple of 256, N of 16, no AMX); None elsewhere (candle's form stays).
    pub fn from_qtensor(q: &QTensor) -> Result<Option<Q4kTiles>> {
        if q.dtype() != GgmlDType::Q4K
            || !q.device().is_cpu()
            || Level::detect() != Some(Level::Avx512Vnni)
            || has_amx()
        {
            return Ok(None);
        }
        let (n, k) = q.shape().dims2()?;
        if k == 0 || !k.is_multiple_of(QK_K) || !n.is_multiple_of(TILE) {
            return Ok(None);
        }
        let data = q.data()?;
        if data.len() != n * (k / QK_K) * BLOCK_BYTES {
            return Ok(None);
        }
        Ok(Some(Self::pack(&data, n, k)))
    }

    fn pack(data: &[u8], n: usize, k: usize) -> Q4kTiles {
        let blocks = k / QK_K;
        let empty = TileQ4 {
            qs: [0; QK_K / 8 * TILE * 4],
            sc: [[0; TILE]; SUBS],
            mn: [[0; TILE]; SUBS],
            d: [f16::ZERO; TILE],
            dmin: [f16::ZERO; TILE],
        };
        let mut tiles = vec![empty; n / TILE * blocks];
        for col in 0..n {
            let (t, c) = (col / TILE, col % TILE);
            for b in 0..blocks {
                let src = &data[(col * blocks + b) * BLOCK_BYTES..][..BLOCK_BYTES];
                let tile = &mut tiles[t * blocks + b];
                tile.d[c] = f16::from_le_bytes([src[0], src[1]]);
                tile.dmin[c] = f16::from_le_bytes([src[2], src[3]]);
                for sub in 0..SUBS {
                    (tile.sc[sub][c], tile.mn[sub][c]) = scale_min(sub, &src[4..16]);
                }
                let qs = &src[16..];
                // Values 0..256 in order: 32-byte chunk `h` holds values 64h..64h+32 in its low
                // nibbles and 64h+32..64h+64 in its high ones.
                let value = |v: usize| {
                    let (h, i) = (v / 64, v % 64);
                    let byte = qs[h * 32 + i % 32];
                    if i < 32 {
                        byte & 0xF
                    } else {
                        byte >> 4
                    }
                };
                for g in 0..QK_K / 8 {
                    for j in 0..4 {
                        tile.qs[(g * TILE + c) * 4 + j] =
                            value(g * 8 + j) | (value(g * 8 + j + 4) << 4);
                    }
                }
            }
        }
        Q4kTiles { n, k, tiles }
    }

    /// `[n, k]`.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// The GGUF Q4K blocks back (for cuts and dequantization, both at load or training time).
    pub fn to_qtensor(&self, device: &Device) -> Result<QTensor> {
        let blocks = self.k / QK_K;
        let mut out = Vec::with_capacity(self.n * blocks * BLOCK_BYTES);
        for col in 0..self.n {
            let (t, c) = (col / TILE, col % TILE);
            for b in 0..blocks {
                let tile = &self.tiles[t * blocks + b];
                out.extend_from_slice(&tile.d[c].to_le_bytes());
                out.extend_from_slice(&tile.dmin[c].to_le_bytes());
                let sc = std::array::from_fn(|sub| tile.sc[sub][c]);
                let mn = std::array::from_fn(|sub| tile.mn[sub][c]);
                out.extend_from_slice(&pack_scale_min(sc, mn));
                let mut values = [0u8; QK_K];
                for g in 0..QK_K / 8 {
                    for j in 0..4 {
                        let byte = tile.qs[(g * TILE + c) * 4 + j];
                        values[g * 8 + j] = byte & 0xF;
                        values[g * 8 + j + 4] = byte >> 4;
                    }
                }
                for h in 0..4 {
                    for i in 0..32 {
                        out.push(values[h * 64 + i] | (values[h * 64 + 32 + i] << 4));
                    }
                }
            }
        }
        let storage = QStorage::from_data(std::borrow::Cow::Owned(out), device, GgmlDType::Q4K)?;
        Ok(QTensor::new(storage, (self.n, self.k))?)
    }

    /// `x` `[m, k]` (f32) -> `[m, n]`. Each row's result depends on that row alone.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        let mut out = Self::matmul_many(&[self], x)?;
        out.pop()
            .ok_or_else(|| EngineError::Device("q4k tiles: no output".into()))
    }

    /// Several weights over the same input (q/k/v, gate/up): the input is quantized once and all
    /// their tiles run in one parallel region. Every output is the one `matmul` gives.
    pub fn matmul_many(weights: &[&Q4kTiles], x: &Tensor) -> Result<Vec<Tensor>> {
        let (m, k) = x.dims2()?;
        if let Some(w) = weights.iter().find(|w| w.k != k) {
            return Err(candle_core::Error::ShapeMismatchBinaryOp {
                lhs: x.shape().clone(),
                rhs: (w.n, w.k).into(),
                op: "q4k tiles matmul",
            }
            .into());
        }
        let lhs = x
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let acts = Q8kRows::quantize(&lhs, m, k);
        let acts = acts.bytes();
        let mut dsts: Vec<Vec<f32>> = weights.iter().map(|w| vec![0f32; m * w.n]).collect();
        let groups = m.div_ceil(ROWS_MAX);
        // Units are (weight, tile, group of rows), tile-major within a weight.
        let parts: Vec<(&Q4kTiles, usize, usize)> = weights
            .iter()
            .zip(dsts.iter_mut())
            .map(|(w, dst)| (*w, w.n / TILE * groups, dst.as_mut_ptr() as usize))
            .collect();
        let total: usize = parts.iter().map(|p| p.1).sum();
        candle_core::utils::barrier_pool().execute_chunked(total, |range| {
            for mut u in range {
                for &(w, units, dst) in &parts {
                    if u >= units {
                        u -= units;
                        continue;
                    }
                    let blocks = k / QK_K;
                    let (t, g) = (u / groups, u % groups);
                    let first = g * ROWS_MAX;
                    let rows = ROWS_MAX.min(m - first);
                    let tiles = &w.tiles[t * blocks..(t + 1) * blocks];
                    // SAFETY: the tiles exist only where AVX-512 VNNI was detected
                    // (`from_qtensor`); each (row, column) of dst is written by exactly one unit;
                    // dst holds m * n f32 and outlives the pool call; acts holds m rows of
                    // `blocks` Q8K blocks.
                    unsafe {
                        let out = (dst as *mut f32).add(first * w.n + t * TILE);
                        let acts = &acts[first * blocks * crate::q8k_rows::Q8K_BYTES..];
                        x86::rows(tiles, acts, rows, out, w.n);
                    }
                    break;
                }
            }
        });
        dsts.into_iter()
            .zip(weights)
            .map(|(dst, w)| Ok(Tensor::from_vec(dst, (m, w.n), x.device())?))
            .collect()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use super::{TileQ4, ROWS_MAX, TILE};
    use crate::q8k_rows::{Q8K_BSUMS, Q8K_BYTES, Q8K_QS};
    use crate::rows_dispatch::with_rows;

    /// `rows` (1..=ROWS_MAX) consecutive activation rows against one column tile's blocks,
    /// written to `out` (row stride `n`).
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI must be available; `acts` holds `rows` rows of `tiles.len()` blocks;
    /// `out` has room for `rows` rows of 16 values at stride `n`.
    pub(super) unsafe fn rows(tiles: &[TileQ4], acts: &[u8], rows: usize, out: *mut f32, n: usize) {
        const _: () = assert!(ROWS_MAX == 6);
        with_rows!(rows, [1, 2, 3, 4, 5], 6, rows_of(tiles, acts, out, n))
    }

    /// candle's `q4k_tile`, block after block, for R rows at once.
    #[target_feature(enable = "avx512f,avx512vnni,avx512bw")]
    unsafe fn rows_of<const R: usize>(tiles: &[TileQ4], acts: &[u8], out: *mut f32, n: usize) {
        let blocks = tiles.len();
        let mask = _mm512_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); R];
        for (b, tile) in tiles.iter().enumerate() {
            let act: [*const u8; R] =
                std::array::from_fn(|r| acts.as_ptr().add((r * blocks + b) * Q8K_BYTES));
            let dall: [f32; R] = std::array::from_fn(|r| (act[r] as *const f32).read_unaligned());
            let bcast = |r: usize, off: usize| {
                _mm512_set1_epi32((act[r].add(Q8K_QS + off) as *const i32).read_unaligned())
            };
            let bsum = |r: usize, i: usize| {
                (act[r].add(Q8K_BSUMS + 2 * i) as *const i16).read_unaligned() as i32
            };
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(tile.d.as_ptr() as *const __m256i));
            let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(tile.dmin.as_ptr() as *const __m256i));
            // candle's packing: `d * sc as f32`, `dmin * mn as f32`, one f32 product each.
            let widen = |v: &[u8; TILE]| {
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    v.as_ptr() as *const __m128i
                )))
            };
            for sub2 in 0..4 {
                let (sa, sb) = (sub2 * 2, sub2 * 2 + 1);
                let mut isum_a = [_mm512_setzero_si512(); R];
                let mut isum_b = [_mm512_setzero_si512(); R];
                for g4 in 0..4 {
                    let (ga, gb) = (sa * 4 + g4, sb * 4 + g4);
                    let wa = _mm512_loadu_si512(tile.qs.as_ptr().add(ga * TILE * 4) as *const _);
                    let wb = _mm512_loadu_si512(tile.qs.as_ptr().add(gb * TILE * 4) as *const _);
                    let lo_a = _mm512_and_si512(wa, mask);
                    let hi_a = _mm512_and_si512(_mm512_srli_epi16(wa, 4), mask);
                    let lo_b = _mm512_and_si512(wb, mask);
                    let hi_b = _mm512_and_si512(_mm512_srli_epi16(wb, 4), mask);
                    for r in 0..R {
                        isum_a[r] =
                            _mm512_dpbusd_epi32(isum_a[r], lo_a, bcast(r, sa * 32 + g4 * 8));
                        isum_a[r] =
                            _mm512_dpbusd_epi32(isum_a[r], hi_a, bcast(r, sa * 32 + g4 * 8 + 4));
                        isum_b[r] =
                            _mm512_dpbusd_epi32(isum_b[r], lo_b, bcast(r, sb * 32 + g4 * 8));
                        isum_b[r] =
                            _mm512_dpbusd_epi32(isum_b[r], hi_b, bcast(r, sb * 32 + g4 * 8 + 4));
                    }
                }
                for (sub, isum) in [(sa, &isum_a), (sb, &isum_b)] {
                    let scale = _mm512_mul_ps(d, widen(&tile.sc[sub]));
                    let min = _mm512_mul_ps(dmin, widen(&tile.mn[sub]));
                    for r in 0..R {
                        let f = _mm512_cvtepi32_ps(isum[r]);
                        acc[r] = _mm512_fmadd_ps(
                            f,
                            _mm512_mul_ps(scale, _mm512_set1_ps(dall[r])),
                            acc[r],
                        );
                        let bsum = (bsum(r, sub * 2) + bsum(r, sub * 2 + 1)) as f32;
                        acc[r] = _mm512_fnmadd_ps(min, _mm512_set1_ps(dall[r] * bsum), acc[r]);
                    }
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
    use super::TileQ4;

    /// Never called: the tiles are built only on x86_64 with AVX-512 VNNI.
    pub(super) unsafe fn rows(_: &[TileQ4], _: &[u8], _: usize, _: *mut f32, _: usize) {
        unreachable!("q4k tiles exist only on x86_64")
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    use super::*;

    /// Every row equals candle's Q4K matmul bit for bit (its repacked tiles on this CPU), for any
    /// row count (passes of 1-6 rows, a prefill's 40), several shapes, and several weights over
    /// one input; the blocks come back byte for byte.
    #[test]
    fn equals_candle_bit_for_bit() {
        if Level::detect() != Some(Level::Avx512Vnni) || has_amx() {
            eprintln!(
                "SKIPPED: this CPU has no AVX-512 VNNI (or has AMX): candle's own Q4K form stays"
            );
            return;
        }
        let device = Device::Cpu;
        for (n, k) in [(16, 256), (48, 512), (64, 1536)] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &device).unwrap();
            let q = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
            let original = q.data().unwrap().to_vec();
            let tiles = Q4kTiles::from_qtensor(&q).unwrap().expect("tiles apply");
            let back = tiles.to_qtensor(&device).unwrap();
            assert_eq!(
                back.data().unwrap().to_vec(),
                original,
                "round trip n={n} k={k}"
            );
            let other = Q4kTiles::from_qtensor(
                &QTensor::quantize(
                    &Tensor::randn(0f32, 1.0, (32, k), &device).unwrap(),
                    GgmlDType::Q4K,
                )
                .unwrap(),
            )
            .unwrap()
            .unwrap();
            let candle = QMatMul::from_qtensor(q).unwrap();
            let candle_other = QMatMul::from_qtensor(other.to_qtensor(&device).unwrap()).unwrap();
            for m in [1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 40] {
                let x = Tensor::randn(0f32, 1.0, (m, k), &device).unwrap();
                let ours = Q4kTiles::matmul_many(&[&tiles, &other], &x).unwrap();
                for (got, reference) in ours.iter().zip([&candle, &candle_other]) {
                    let want = reference.forward(&x).unwrap();
                    let a: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
                    let b: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
                    let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "n={n} k={k} m={m}");
                }
            }
        }
    }

    /// The packed scale bytes come back from the unpacked scales and mins for every 6-bit value.
    #[test]
    fn scale_bytes_round_trip() {
        for seed in 0..64u8 {
            let sc: [u8; SUBS] = std::array::from_fn(|j| ((seed as usize + 7 * j) & 63) as u8);
            let mn: [u8; SUBS] = std::array::from_fn(|j| ((seed as usize * 3 + 11 * j) & 63) as u8);
            let bytes = pack_scale_min(sc, mn);
            for j in 0..SUBS {
                assert_eq!(scale_min(j, &bytes), (sc[j], mn[j]), "seed {seed} sub {j}");
            }
        }
    }
}
