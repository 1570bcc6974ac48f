//! Q8_0 weights repacked into tiles of 16 output columns, and their matmul on x86.
//!
//! candle tiles Q8_0 only when K is a multiple of 256; below that (the Qwen2.5-0.5B's K = 896) it
//! runs one dot product per (row, column), so a batch of rows reads every weight once per row and
//! prefill runs 8-wide integer dot products. Here every row of a group reads each tile once, with
//! 16 columns per instruction (AVX-512 VNNI, or AVX2 chosen at run time).
//!
//! Weights whose values all fit 5 bits (GGUF Q5_0, widened to Q8_0 at load) stay in 5 bits here
//! (AVX-512 VNNI only) and are widened lane by lane in registers: 320 bytes a block instead of 512.
//!
//! The results are bit-identical to candle's `vec_dot_q8_0_q8_0`, so switching kernels moves no
//! answer and a batched row equals the same row alone: the activations are quantized by candle's
//! own `BlockQ8_0::from_float`, every block gives the same eight exact integer partial sums (four
//! products each) that candle's 8-lane kernel forms, each lane accumulates `d_w * d_x * sum` by FMA
//! in block order, and the lanes are summed in candle's `hsum_float_8` order.

use candle_core::quantized::k_quants::{BlockQ8_0, GgmlType, QK8_0};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use half::f16;

use crate::error::{EngineError, Result};

/// Output columns per tile: one 512-bit register of f32 lanes.
const TILE: usize = 16;
/// Lanes of candle's Q8_0 dot product: 8 partial sums of 4 products each per 32-value block.
const LANES: usize = 8;
/// Rows sharing one pass over a tile in the AVX-512 kernel (3 x 8 accumulators in 32 registers).
const GROUP_512: usize = 3;
/// Bytes of one GGUF Q8_0 block: f16 scale, 32 x i8.
const BLOCK_BYTES: usize = 2 + QK8_0;

/// Which kernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Avx512Vnni,
    Avx2,
}

impl Level {
    /// The best kernel this CPU supports, if any.
    pub fn detect() -> Option<Level> {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                return Some(Level::Avx512Vnni);
            }
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                return Some(Level::Avx2);
            }
        }
        None
    }
}

/// One 32-value block of 16 columns: `[lane][column][4 bytes]`, each weight stored as `q + 128`
/// (u8), so one 64-byte load holds one lane of all 16 columns.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct TileQs([[u8; TILE * 4]; LANES]);

/// The same block in 5 bits a value, for weights whose values all lie in -16..=15 (Q5_0 widened
/// to Q8_0): `q + 16`, low nibbles of lane values `v` and `v + 32` in byte `v`, fifth bits in a
/// mask. 320 bytes instead of 512; the kernel widens a lane back to bytes in three instructions.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct TileQ5 {
    nibbles: [[u8; TILE * 2]; LANES],
    high: [u64; LANES],
}

/// A weight's values in tiles, `[tile][block]`.
#[derive(Debug, Clone)]
enum Values {
    Bytes(Vec<TileQs>),
    /// Only built where the AVX-512 VNNI kernel runs.
    Five(Vec<TileQ5>),
}

impl TileQ5 {
    /// None when a value does not fit 5 bits.
    fn from_bytes(t: &TileQs) -> Option<TileQ5> {
        let mut out = TileQ5 {
            nibbles: [[0; TILE * 2]; LANES],
            high: [0; LANES],
        };
        for lane in 0..LANES {
            for v in 0..TILE * 4 {
                let q = t.0[lane][v] as i16 - 128;
                if !(-16..=15).contains(&q) {
                    return None;
                }
                let u = (q + 16) as u8;
                out.nibbles[lane][v % 32] |= (u & 15) << (4 * (v / 32));
                out.high[lane] |= ((u >> 4) as u64) << v;
            }
        }
        Some(out)
    }

    /// The lane's value `v` as stored in [`TileQs`] (`q + 128`).
    fn byte(&self, lane: usize, v: usize) -> u8 {
        let low = (self.nibbles[lane][v % 32] >> (4 * (v / 32))) & 15;
        let high = ((self.high[lane] >> v) & 1) as u8;
        (low | (high << 4)) + 112
    }
}

impl std::fmt::Debug for TileQ5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TileQ5")
    }
}

/// A Q8_0 weight `[n, k]` in tiles, the only copy of it kept in memory.
#[derive(Debug, Clone)]
pub(crate) struct Q8_0Tiles {
    n: usize,
    k: usize,
    level: Level,
    values: Values,
    /// `[tile][block][column]`, the blocks' own f16 scales (0 in padding columns).
    scales: Vec<[f16; TILE]>,
}

impl std::fmt::Debug for TileQs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TileQs")
    }
}

/// One activation block as the kernels read it.
#[derive(Clone, Copy)]
struct ActBlock {
    /// The block's 32 quantized values, four per lane, as the i32 a broadcast reads.
    quads: [i32; LANES],
    /// `-128 * (sum of the lane's four values)`: removes the weights' +128 offset exactly.
    offset: [i32; LANES],
    /// `-16 * (the same sum)`, for 5-bit tiles (`q + 16`).
    offset5: [i32; LANES],
    /// The block's scale, as candle reads it (`f16::to_f32`).
    d: f32,
}

impl Q8_0Tiles {
    /// Repacks a Q8_0 weight in CPU memory; None where no kernel here applies (not Q8_0, not on
    /// the CPU, no AVX2, or K a multiple of 256, where candle's own tiles already share reads).
    pub fn from_qtensor(q: &QTensor) -> Result<Option<Q8_0Tiles>> {
        let level = match Level::detect() {
            Some(level) => level,
            None => return Ok(None),
        };
        if q.dtype() != GgmlDType::Q8_0 || !q.device().is_cpu() {
            return Ok(None);
        }
        let (n, k) = q.shape().dims2()?;
        if k == 0 || !k.is_multiple_of(QK8_0) || k.is_multiple_of(256) {
            return Ok(None);
        }
        let data = q.data()?;
        let blocks = k / QK8_0;
        if data.len() != n * blocks * BLOCK_BYTES {
            return Ok(None);
        }
        Ok(Some(Self::pack(&data, n, k, level)))
    }

    fn pack(data: &[u8], n: usize, k: usize, level: Level) -> Q8_0Tiles {
        let blocks = k / QK8_0;
        let tiles = n.div_ceil(TILE);
        // Padding columns: scale 0 and values 0 (stored as 128), so they add exactly nothing.
        let mut qs = vec![TileQs([[128u8; TILE * 4]; LANES]); tiles * blocks];
        let mut scales = vec![[f16::ZERO; TILE]; tiles * blocks];
        for col in 0..n {
            let (t, c) = (col / TILE, col % TILE);
            for b in 0..blocks {
                let src = &data[(col * blocks + b) * BLOCK_BYTES..][..BLOCK_BYTES];
                scales[t * blocks + b][c] = f16::from_le_bytes([src[0], src[1]]);
                let tile = &mut qs[t * blocks + b];
                for (lane, quad) in src[2..].chunks_exact(4).enumerate() {
                    for (i, &v) in quad.iter().enumerate() {
                        tile.0[lane][c * 4 + i] = (v as i8 as i16 + 128) as u8;
                    }
                }
            }
        }
        // Five bits where every value fits them (and the kernel that reads them runs here).
        let five = match level {
            Level::Avx512Vnni => qs
                .iter()
                .map(TileQ5::from_bytes)
                .collect::<Option<Vec<_>>>(),
            Level::Avx2 => None,
        };
        let values = match five {
            Some(five) => Values::Five(five),
            None => Values::Bytes(qs),
        };
        Q8_0Tiles {
            n,
            k,
            level,
            values,
            scales,
        }
    }

    /// `[n, k]`.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// The GGUF Q8_0 blocks back (for cuts and dequantization, both at load or training time).
    pub fn to_qtensor(&self, device: &Device) -> Result<QTensor> {
        let blocks = self.k / QK8_0;
        let mut out = Vec::with_capacity(self.n * blocks * BLOCK_BYTES);
        for col in 0..self.n {
            let (t, c) = (col / TILE, col % TILE);
            for b in 0..blocks {
                out.extend_from_slice(&self.scales[t * blocks + b][c].to_le_bytes());
                for lane in 0..LANES {
                    for i in 0..4 {
                        let byte = match &self.values {
                            Values::Bytes(qs) => qs[t * blocks + b].0[lane][c * 4 + i],
                            Values::Five(qs) => qs[t * blocks + b].byte(lane, c * 4 + i),
                        };
                        out.push((byte as i16 - 128) as i8 as u8);
                    }
                }
            }
        }
        let storage = QStorage::from_data(std::borrow::Cow::Owned(out), device, GgmlDType::Q8_0)?;
        Ok(QTensor::new(storage, (self.n, self.k))?)
    }

    /// `x` `[m, k]` (f32) -> `[m, n]`. Each row's result depends on that row alone.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        let mut out = Self::matmul_many(&[self], x)?;
        out.pop()
            .ok_or_else(|| EngineError::Device("q8_0 tiles: no output".into()))
    }

    /// Several weights over the same input (q/k/v, gate/up): the input is quantized once and all
    /// their tiles run in one parallel region (one barrier instead of one per weight). Every
    /// output is the one `matmul` gives.
    pub fn matmul_many(weights: &[&Q8_0Tiles], x: &Tensor) -> Result<Vec<Tensor>> {
        let (m, k) = x.dims2()?;
        if let Some(w) = weights
            .iter()
            .find(|w| w.k != k || w.level != weights[0].level)
        {
            return Err(candle_core::Error::ShapeMismatchBinaryOp {
                lhs: x.shape().clone(),
                rhs: (w.n, w.k).into(),
                op: "q8_0 tiles matmul",
            }
            .into());
        }
        let lhs = x
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let acts = quantize_rows(&lhs, m, k);
        let mut dsts: Vec<Vec<f32>> = weights.iter().map(|w| vec![0f32; m * w.n]).collect();
        let parts: Vec<Part<'_>> = weights
            .iter()
            .zip(dsts.iter_mut())
            .map(|(w, dst)| {
                let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Part::new(w, m, dst, call)
            })
            .collect();
        let total: usize = parts.iter().map(|p| p.units).sum();
        candle_core::utils::barrier_pool().execute_chunked(total, |range| {
            for mut u in range {
                for part in &parts {
                    if u < part.units {
                        part.unit(u, &acts, m);
                        break;
                    }
                    u -= part.units;
                }
            }
        });
        dsts.into_iter()
            .zip(weights)
            .map(|(dst, w)| Ok(Tensor::from_vec(dst, (m, w.n), x.device())?))
            .collect()
    }
}

/// One weight's share of a parallel region: units are (tile, group of rows), tile-major, so one
/// worker's consecutive units reuse a tile from L1 for every group of rows.
struct Part<'a> {
    weight: &'a Q8_0Tiles,
    group: usize,
    groups: usize,
    units: usize,
    /// The output `[m, n]`, written through a raw pointer by the units.
    dst: usize,
    /// Which parallel region (and weight in it) this is: keys a worker's widened tile.
    call: u64,
}

impl<'a> Part<'a> {
    fn new(weight: &'a Q8_0Tiles, m: usize, dst: &mut [f32], call: u64) -> Part<'a> {
        let group = match weight.level {
            Level::Avx512Vnni => GROUP_512,
            Level::Avx2 => 1,
        };
        let groups = m.div_ceil(group);
        Part {
            weight,
            group,
            groups,
            units: weight.n.div_ceil(TILE) * groups,
            dst: dst.as_mut_ptr() as usize,
            call,
        }
    }

    fn unit(&self, u: usize, acts: &[ActBlock], m: usize) {
        let w = self.weight;
        let blocks = w.k / QK8_0;
        let (t, g) = (u / self.groups, u % self.groups);
        let rows = g * self.group..(g * self.group + self.group).min(m);
        let range = t * blocks..(t + 1) * blocks;
        let run = |values: TileValues<'_>| {
            let job = TileJob {
                values,
                scales: &w.scales[range.clone()],
                blocks,
                columns: (w.n - t * TILE).min(TILE),
            };
            // SAFETY: each (row, column) of dst is written by exactly one unit; dst holds m * n
            // f32 and outlives the pool call; the level was detected on this CPU.
            unsafe {
                let out = (self.dst as *mut f32).add(t * TILE);
                job.rows(w.level, acts, rows.clone(), out, w.n);
            }
        };
        match &w.values {
            Values::Bytes(qs) => run(TileValues::Bytes(&qs[range.clone()])),
            Values::Five(qs) if self.groups >= WIDEN_FROM_GROUPS => WIDENED.with(|cell| {
                let mut cache = cell.borrow_mut();
                if cache.0 != (self.call, t) {
                    cache.1.clear();
                    // SAFETY: 5-bit tiles are only built where AVX-512 VNNI was detected (`pack`).
                    let widen = |t: &TileQ5| unsafe { x86::widen_tile(t) };
                    cache.1.extend(qs[range.clone()].iter().map(widen));
                    cache.0 = (self.call, t);
                }
                run(TileValues::Bytes(&cache.1));
            }),
            Values::Five(qs) => run(TileValues::Five(&qs[range.clone()])),
        }
    }
}

/// From this many row groups on (prefill), a worker widens a 5-bit tile to bytes once and runs
/// the byte kernel over it (the same bytes, so the same results) instead of widening per group.
const WIDEN_FROM_GROUPS: usize = 4;

/// Each `matmul_many` call's number, so a worker's widened tile is never one of another call.
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// The last 5-bit tile this worker widened: ((call, tile), its blocks as bytes).
    static WIDENED: std::cell::RefCell<((u64, usize), Vec<TileQs>)> =
        const { std::cell::RefCell::new(((u64::MAX, 0), Vec::new())) };
}

/// Quantizes rows as candle's Q8_0 path does and lays each block out for the kernels.
fn quantize_rows(lhs: &[f32], m: usize, k: usize) -> Vec<ActBlock> {
    let blocks = k / QK8_0;
    let mut q = vec![BlockQ8_0::zeros(); blocks];
    let mut acts = Vec::with_capacity(m * blocks);
    for row in lhs.chunks_exact(k).take(m) {
        BlockQ8_0::from_float(row, &mut q);
        // SAFETY: BlockQ8_0 is repr(C) { d: f16, qs: [i8; 32] }, 34 bytes (candle asserts it),
        // the same layout as a GGUF block; its fields are not public.
        let bytes =
            unsafe { std::slice::from_raw_parts(q.as_ptr().cast::<u8>(), blocks * BLOCK_BYTES) };
        for block in bytes.chunks_exact(BLOCK_BYTES) {
            let mut act = ActBlock {
                quads: [0; LANES],
                offset: [0; LANES],
                offset5: [0; LANES],
                d: f16::from_le_bytes([block[0], block[1]]).to_f32(),
            };
            for (lane, quad) in block[2..].chunks_exact(4).enumerate() {
                act.quads[lane] = i32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]);
                let sum = quad.iter().map(|&v| v as i8 as i32).sum::<i32>();
                act.offset[lane] = -128 * sum;
                act.offset5[lane] = -16 * sum;
            }
            acts.push(act);
        }
    }
    acts
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == BLOCK_BYTES);

/// One tile's blocks, multiplied into some rows.
struct TileJob<'a> {
    values: TileValues<'a>,
    scales: &'a [[f16; TILE]],
    blocks: usize,
    /// Real columns in this tile (16 but in the last tile).
    columns: usize,
}

#[derive(Clone, Copy)]
enum TileValues<'a> {
    Bytes(&'a [TileQs]),
    Five(&'a [TileQ5]),
}

impl TileJob<'_> {
    /// Writes `dst[row * stride + c]` for the tile's columns `c` of each row in `rows`.
    ///
    /// # Safety
    /// `level` must be supported by this CPU; `dst` must be valid for those writes.
    unsafe fn rows(
        &self,
        level: Level,
        acts: &[ActBlock],
        rows: std::ops::Range<usize>,
        dst: *mut f32,
        stride: usize,
    ) {
        let mut sums = [[0f32; TILE]; GROUP_512];
        let acts_of = |row: usize| &acts[row * self.blocks..(row + 1) * self.blocks];
        #[cfg(target_arch = "x86_64")]
        match (self.values, level) {
            // 5-bit tiles exist only where AVX-512 VNNI was detected (`pack`).
            (TileValues::Five(five), _) => {
                self.rows_512(&[], five, &acts_of, rows.clone(), &mut sums)
            }
            (TileValues::Bytes(bytes), Level::Avx512Vnni) => {
                self.rows_512(bytes, &[], &acts_of, rows.clone(), &mut sums)
            }
            (TileValues::Bytes(bytes), Level::Avx2) => {
                for (i, row) in rows.clone().enumerate() {
                    x86::row_256(self, bytes, acts_of(row), &mut sums[i]);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (level, acts_of);
        for (i, row) in rows.enumerate() {
            for (c, &v) in sums[i][..self.columns].iter().enumerate() {
                *dst.add(row * stride + c) = v;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl TileJob<'_> {
    /// The AVX-512 kernel over 1-3 rows, from byte tiles or (`bytes` empty) 5-bit ones.
    ///
    /// # Safety
    /// AVX-512 VNNI must be available.
    unsafe fn rows_512<'a>(
        &self,
        bytes: &[TileQs],
        five: &[TileQ5],
        acts_of: &dyn Fn(usize) -> &'a [ActBlock],
        rows: std::ops::Range<usize>,
        sums: &mut [[f32; TILE]; GROUP_512],
    ) {
        if five.is_empty() {
            self.rows_512_of::<false>(bytes, five, acts_of, rows, sums)
        } else {
            self.rows_512_of::<true>(bytes, five, acts_of, rows, sums)
        }
    }

    /// # Safety
    /// AVX-512 VNNI must be available.
    unsafe fn rows_512_of<'a, const FIVE: bool>(
        &self,
        bytes: &[TileQs],
        five: &[TileQ5],
        acts_of: &dyn Fn(usize) -> &'a [ActBlock],
        rows: std::ops::Range<usize>,
        sums: &mut [[f32; TILE]; GROUP_512],
    ) {
        let r = rows.start;
        match rows.len() {
            3 => x86::rows_512::<3, FIVE>(
                self,
                bytes,
                five,
                [acts_of(r), acts_of(r + 1), acts_of(r + 2)],
                sums,
            ),
            2 => x86::rows_512::<2, FIVE>(self, bytes, five, [acts_of(r), acts_of(r + 1)], sums),
            _ => x86::rows_512::<1, FIVE>(self, bytes, five, [acts_of(r)], sums),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use super::{ActBlock, TileJob, TileQ5, TileQs, GROUP_512, LANES, TILE};

    /// Lane `lane` of a 5-bit block widened to `q + 16` bytes: nibbles split and placed, then 16
    /// added where the fifth bit is set.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn widen_five(t: &TileQ5, lane: usize) -> __m512i {
        let m4 = _mm256_set1_epi8(15);
        // SAFETY: 32 bytes of the lane, 32-byte aligned inside the 64-byte aligned tile.
        let x = unsafe { _mm256_load_si256(t.nibbles[lane].as_ptr() as *const __m256i) };
        let low = _mm256_and_si256(x, m4);
        let high = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
        let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(low), high);
        _mm512_mask_add_epi8(v, t.high[lane], v, _mm512_set1_epi8(16))
    }

    /// candle's `hsum_float_8` order for each column: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
    #[inline(always)]
    fn hsum_lanes(l: [[f32; TILE]; LANES], out: &mut [f32; TILE]) {
        *out = std::array::from_fn(|c| {
            let s: [f32; 4] = std::array::from_fn(|i| l[i + 4][c] + l[i][c]);
            (s[0] + s[2]) + (s[1] + s[3])
        });
    }

    /// A whole 5-bit block widened to the byte layout.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn widen_tile(t: &TileQ5) -> TileQs {
        let mut out = TileQs([[0; TILE * 4]; LANES]);
        for (lane, row) in out.0.iter_mut().enumerate() {
            // `q + 16` -> `q + 128`, the byte layout's offset.
            let bytes = _mm512_add_epi8(widen_five(t, lane), _mm512_set1_epi8(112));
            // SAFETY: a 64-byte aligned row of 64 bytes.
            unsafe { _mm512_store_si512(row.as_mut_ptr() as *mut __m512i, bytes) };
        }
        out
    }

    /// `R` rows against one tile: per lane, `s = dpbusd(offset, w + 128, x)` is the exact
    /// integer sum of the lane's four products, and `acc = fma(d_w * d_x, s, acc)`.
    // A lane indexes the tile, the activation block and the accumulators in step.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn rows_512<const R: usize, const FIVE: bool>(
        job: &TileJob<'_>,
        bytes: &[TileQs],
        five: &[TileQ5],
        acts: [&[ActBlock]; R],
        sums: &mut [[f32; TILE]; GROUP_512],
    ) {
        let mut acc = [[_mm512_setzero_ps(); LANES]; R];
        for (b, scales) in job.scales.iter().enumerate() {
            // SAFETY: 16 f16 scales of the block are in bounds.
            let dw =
                _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(scales.as_ptr() as *const __m256i) });
            let d: [__m512; R] =
                std::array::from_fn(|r| _mm512_mul_ps(dw, _mm512_set1_ps(acts[r][b].d)));
            for lane in 0..LANES {
                let w = if FIVE {
                    widen_five(&five[b], lane)
                } else {
                    // SAFETY: a 64-byte aligned row of 64 bytes.
                    unsafe { _mm512_load_si512(bytes[b].0[lane].as_ptr() as *const __m512i) }
                };
                for r in 0..R {
                    let a = &acts[r][b];
                    let offset = if FIVE {
                        a.offset5[lane]
                    } else {
                        a.offset[lane]
                    };
                    let s = _mm512_dpbusd_epi32(
                        _mm512_set1_epi32(offset),
                        w,
                        _mm512_set1_epi32(a.quads[lane]),
                    );
                    acc[r][lane] = _mm512_fmadd_ps(d[r], _mm512_cvtepi32_ps(s), acc[r][lane]);
                }
            }
        }
        for (acc, sums) in acc.iter().zip(sums.iter_mut()) {
            let mut lanes = [[0f32; TILE]; LANES];
            for (out, v) in lanes.iter_mut().zip(acc) {
                // SAFETY: 16 f32 fit the array.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr(), *v) };
            }
            hsum_lanes(lanes, sums);
        }
    }

    /// One row against one tile, 8 columns at a time: `maddubs(|w|, sign(x, w))` then `madd`
    /// with ones gives each lane's exact four-product sum, as candle's AVX2 kernel does.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn row_256(
        job: &TileJob<'_>,
        bytes: &[TileQs],
        acts: &[ActBlock],
        sums: &mut [f32; TILE],
    ) {
        let flip = _mm256_set1_epi8(-128);
        let ones = _mm256_set1_epi16(1);
        let mut lanes = [[0f32; TILE]; LANES];
        for half in 0..2 {
            let mut acc = [_mm256_setzero_ps(); LANES];
            for (b, a) in acts.iter().enumerate().take(job.blocks) {
                // SAFETY: 8 f16 scales of this half are in bounds.
                let dw = _mm256_cvtph_ps(unsafe {
                    _mm_loadu_si128(job.scales[b][half * 8..].as_ptr() as *const __m128i)
                });
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(a.d));
                let tile = &bytes[b].0;
                for lane in 0..LANES {
                    // SAFETY: 32 bytes of the lane's 64 are in bounds.
                    let w = unsafe {
                        _mm256_loadu_si256(tile[lane][half * 32..].as_ptr() as *const __m256i)
                    };
                    let w = _mm256_xor_si256(w, flip);
                    let x = _mm256_set1_epi32(a.quads[lane]);
                    let dot = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
                    let s = _mm256_madd_epi16(dot, ones);
                    acc[lane] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[lane]);
                }
            }
            for lane in 0..LANES {
                // SAFETY: 8 f32 at offset half * 8 fit the 16-wide array.
                unsafe { _mm256_storeu_ps(lanes[lane][half * 8..].as_mut_ptr(), acc[lane]) };
            }
        }
        hsum_lanes(lanes, sums);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::Module;

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    /// Q8_0 block bytes for `n x k` values drawn from `-span..span` with random f16 scales.
    fn blocks(n: usize, k: usize, span: i32, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as i32
        };
        let mut out = Vec::new();
        for _ in 0..n * k / QK8_0 {
            let d = f16::from_f32(0.001 + (next() % 1000) as f32 * 1e-5);
            out.extend_from_slice(&d.to_le_bytes());
            out.extend((0..QK8_0).map(|_| (next().rem_euclid(2 * span) - span) as i8 as u8));
        }
        out
    }

    fn qtensor(data: &[u8], n: usize, k: usize) -> QTensor {
        let storage = QStorage::from_data(
            std::borrow::Cow::Owned(data.to_vec()),
            &Device::Cpu,
            GgmlDType::Q8_0,
        )
        .unwrap();
        QTensor::new(storage, (n, k)).unwrap()
    }

    /// Every kernel this CPU has equals candle's per-row Q8_0 path bit for bit, for K a multiple
    /// of 32 only, odd N (a padded last tile), every batch size 1..8 (row groups of 1-3) and 12, 17
    /// (5-bit tiles widened once per worker), full
    /// 8-bit values and values that fit 5 bits (Q5_0 widened, kept in 5-bit tiles under AVX-512);
    /// the blocks come back from the tiles unchanged.
    #[test]
    fn equals_candle_bit_for_bit() {
        let Some(best) = Level::detect() else {
            eprintln!("SKIPPED: this CPU has no AVX2 or AVX-512 VNNI; the kernels do not run");
            return;
        };
        let levels: Vec<Level> = if best == Level::Avx512Vnni {
            vec![Level::Avx512Vnni, Level::Avx2]
        } else {
            eprintln!("PARTLY SKIPPED: no AVX-512 VNNI here; the AVX2 kernel is checked, 5-bit tiles are not");
            vec![Level::Avx2]
        };
        for (n, k) in [(64, 896), (37, 96), (16, 32), (130, 4864 + 32)] {
            for span in [127, 16] {
                let data = blocks(n, k, span, (n * k) as u64 + span as u64);
                let reference = QMatMul::from_qtensor(qtensor(&data, n, k)).unwrap();
                for &level in &levels {
                    let tiles = Q8_0Tiles::pack(&data, n, k, level);
                    let five = matches!(tiles.values, Values::Five(_));
                    assert_eq!(
                        five,
                        span == 16 && level == Level::Avx512Vnni,
                        "{level:?} span {span}"
                    );
                    let back = tiles.to_qtensor(&Device::Cpu).unwrap();
                    assert!(
                        back.data().unwrap().as_ref() == data.as_slice(),
                        "{level:?} span {span}"
                    );
                    for m in (1..=8).chain([12, 17]) {
                        let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
                        let want = reference.forward(&x).unwrap();
                        let got = tiles.matmul(&x).unwrap();
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "{level:?} span {span} n={n} k={k} m={m}"
                        );
                    }
                }
            }
        }
    }
}
