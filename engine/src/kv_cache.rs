//! Per-sequence key/value cache: one preallocated buffer per layer, written in place with
//! `slice_set`, grown in chunks (amortised) instead of concatenated every step.

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};

/// Capacity grows in steps of this many positions. Linear growth keeps the slack (and so memory) to
/// at most one step per sequence; the copies it costs are small next to the forward passes.
const GROWTH_STEP: usize = 512;

/// The positions one sequence's cache allocates to hold `positions` (it grows in steps, up to its
/// context `limit`): what a memory budget must count per sequence.
pub fn allocated_positions(positions: usize, limit: usize) -> usize {
    positions
        .div_ceil(GROWTH_STEP)
        .saturating_mul(GROWTH_STEP)
        .min(limit)
}

/// What the cache stores keys and values as.
pub(crate) const KV_DTYPE: DType = DType::F32;

#[derive(Debug)]
struct LayerKv {
    /// `[kv_heads, capacity, head_dim]`
    k: Tensor,
    v: Tensor,
}

/// The cache of ONE sequence. Sequences of a decoding batch each own one, so a batch can fork from
/// a prefilled prompt and drop finished members freely.
#[derive(Debug)]
pub(crate) struct SequenceCache {
    layers: Vec<LayerKv>,
    len: usize,
    capacity: usize,
    limit: usize,
    kv_heads: usize,
    head_dim: usize,
    device: Device,
}

impl SequenceCache {
    pub fn new(
        n_layer: usize,
        kv_heads: usize,
        head_dim: usize,
        limit: usize,
        device: &Device,
    ) -> Result<Self> {
        // Buffers start empty and grow on first use (`reserve`), so an idle session costs nothing.
        let layers = (0..n_layer)
            .map(|_| {
                Ok(LayerKv {
                    k: Tensor::zeros((kv_heads, 0, head_dim), KV_DTYPE, device)?,
                    v: Tensor::zeros((kv_heads, 0, head_dim), KV_DTYPE, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            len: 0,
            capacity: 0,
            limit,
            kv_heads,
            head_dim,
            device: device.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Makes room for `extra` more positions, or reports a context overflow.
    pub fn reserve(&mut self, extra: usize) -> Result<()> {
        let needed = self.len + extra;
        if needed > self.limit {
            return Err(EngineError::ContextOverflow {
                needed,
                limit: self.limit,
            });
        }
        if needed <= self.capacity {
            return Ok(());
        }
        let grown = allocated_positions(needed, self.limit);
        for layer in &mut self.layers {
            let shape = (self.kv_heads, grown, self.head_dim);
            let k = Tensor::zeros(shape, KV_DTYPE, &self.device)?;
            let v = Tensor::zeros(shape, KV_DTYPE, &self.device)?;
            if self.len > 0 {
                k.slice_set(&layer.k.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                v.slice_set(&layer.v.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
            }
            layer.k = k;
            layer.v = v;
        }
        self.capacity = grown;
        Ok(())
    }

    /// Writes `k`, `v` (`[kv_heads, seq, head_dim]`) of `layer` at the current end (after `reserve`)
    /// and returns views of the whole valid cache including them.
    pub fn write(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let seq = k.dim(1)?;
        let entry = &self.layers[layer];
        entry.k.slice_set(&k.contiguous()?, 1, self.len)?;
        entry.v.slice_set(&v.contiguous()?, 1, self.len)?;
        let total = self.len + seq;
        Ok((entry.k.narrow(1, 0, total)?, entry.v.narrow(1, 0, total)?))
    }

    /// Commits `seq` positions written to every layer.
    pub fn advance(&mut self, seq: usize) {
        self.len += seq;
    }

    /// Forgets every position from `len` on (rejected speculative tokens); their slots are
    /// overwritten by the next write. A `len` past the end changes nothing.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// An independent deep copy (its own buffers).
    pub fn fork(&self) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(LayerKv {
                    k: l.k.copy()?,
                    v: l.v.copy()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            len: self.len,
            capacity: self.capacity,
            limit: self.limit,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            device: self.device.clone(),
        })
    }
}

/// The cache of one sequence across tensor-parallel ranks: rank r's `SequenceCache` holds the KV
/// heads rank r computes. With one rank it is just that sequence's cache.
#[derive(Debug)]
pub(crate) struct ShardedCache {
    shards: Vec<SequenceCache>,
}

impl ShardedCache {
    pub fn new(shards: Vec<SequenceCache>) -> Result<Self> {
        if shards.is_empty() {
            return Err(EngineError::InvalidRequest("a cache needs a shard".into()));
        }
        Ok(Self { shards })
    }

    /// Positions held (the same on every rank).
    pub fn len(&self) -> usize {
        self.shards.first().map_or(0, SequenceCache::len)
    }

    pub fn limit(&self) -> usize {
        self.shards.first().map_or(0, SequenceCache::limit)
    }

    /// Shards (ranks) it holds: none once taken.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Moves the cache out (to the engine loop, which gives it back), leaving an empty one that
    /// holds no positions and that no forward pass accepts.
    pub fn take(&mut self) -> ShardedCache {
        std::mem::replace(self, ShardedCache { shards: Vec::new() })
    }

    pub fn reserve(&mut self, extra: usize) -> Result<()> {
        self.shards.iter_mut().try_for_each(|s| s.reserve(extra))
    }

    pub fn truncate(&mut self, len: usize) {
        self.shards.iter_mut().for_each(|s| s.truncate(len));
    }

    pub fn shards_mut(&mut self) -> &mut [SequenceCache] {
        &mut self.shards
    }

    /// An independent deep copy of every shard.
    pub fn fork(&self) -> Result<Self> {
        Ok(Self {
            shards: self
                .shards
                .iter()
                .map(SequenceCache::fork)
                .collect::<Result<_>>()?,
        })
    }
}
