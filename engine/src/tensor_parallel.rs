//! Runs the decoder on one rank, or sharded over several tensor-parallel ranks (Megatron layout).
//!
//! With one rank, `forward` is exactly the plain decoder: no threads, no collective. With N ranks,
//! each forward pass runs rank 0 on the calling thread and ranks 1..N on scoped threads (a spawn
//! costs microseconds against a step of tens of milliseconds), each on its own shard of the
//! weights and of every sequence's KV cache, combining partial results through the `Collective`.
//! A rank that fails (error or panic) aborts the collective, so no rank waits for it; the model is
//! then poisoned and every later call fails fast with `EngineError::RankFailed`.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{Device, Tensor};

use crate::collective::Collective;
use crate::config::Hyperparams;
use crate::error::{EngineError, Result};
use crate::kv_cache::{SequenceCache, ShardedCache};
use crate::linear::Rows;
use crate::rope::Rope;
use crate::shard::{block_ranges, head_plan, quantized_on, scale_ranges};
use crate::transformer::{check_positions, Block, Fault, RankContext, TokenEmbedding, Transformer};

/// No fault injected.
const NO_FAULT: usize = usize::MAX;

#[derive(Debug)]
struct Sharded {
    collective: Arc<dyn Collective>,
    /// Collective calls of concurrent forward passes must not interleave.
    forward_lock: Mutex<()>,
    /// The first rank failure; once set the model refuses all work.
    failure: OnceLock<(usize, String)>,
    /// Forward passes started, for the fault-injection hook.
    calls: AtomicUsize,
    fault_call: AtomicUsize,
    fault_rank: AtomicUsize,
    fault_panics: AtomicBool,
}

/// The model's decoder on its rank(s).
#[derive(Debug)]
pub(crate) struct Ranks {
    shards: Vec<Transformer>,
    sharded: Option<Sharded>,
}

impl Ranks {
    /// The whole decoder on one device: today's single-rank path.
    pub fn single(transformer: Transformer) -> Self {
        Self {
            shards: vec![transformer],
            sharded: None,
        }
    }

    /// Shards `full` over `devices.len()` ranks (rank r on `devices[r]`) sharing `collective`.
    pub fn sharded(
        full: Transformer,
        devices: &[Device],
        collective: Arc<dyn Collective>,
    ) -> Result<Self> {
        if devices.len() != collective.world_size() {
            return Err(EngineError::InvalidRequest(format!(
                "{} devices for a collective of {} ranks",
                devices.len(),
                collective.world_size()
            )));
        }
        let shards = shard_transformer(full, devices)?;
        Ok(Self {
            shards,
            sharded: Some(Sharded {
                collective,
                forward_lock: Mutex::new(()),
                failure: OnceLock::new(),
                calls: AtomicUsize::new(0),
                fault_call: AtomicUsize::new(NO_FAULT),
                fault_rank: AtomicUsize::new(0),
                fault_panics: AtomicBool::new(false),
            }),
        })
    }

    /// The whole decoder, when it is not sharded.
    pub fn whole(&self) -> Option<&Transformer> {
        match (&self.sharded, self.shards.as_slice()) {
            (None, [one]) => Some(one),
            _ => None,
        }
    }

    pub fn world_size(&self) -> usize {
        self.shards.len()
    }

    /// Why the model stopped working, if a rank failed.
    pub fn failure(&self) -> Option<(usize, String)> {
        self.sharded.as_ref()?.failure.get().cloned()
    }

    /// Test hook: `rank` fails (an error, or a panic) in the forward pass that starts after
    /// `forward_calls` more passes. No effect with one rank.
    pub fn inject_fault(&self, rank: usize, forward_calls: usize, panics: bool) {
        if let Some(s) = &self.sharded {
            s.fault_rank.store(rank, Ordering::SeqCst);
            s.fault_panics.store(panics, Ordering::SeqCst);
            let at = s.calls.load(Ordering::SeqCst).saturating_add(forward_calls);
            s.fault_call.store(at, Ordering::SeqCst);
        }
    }

    /// An empty cache (one shard per rank) holding up to `limit` positions.
    pub fn new_cache(&self, limit: usize) -> Result<ShardedCache> {
        ShardedCache::new(
            self.shards
                .iter()
                .map(|t| t.new_cache(limit))
                .collect::<Result<_>>()?,
        )
    }

    /// Whether one decoding step of `tokens` (one per cache) can join a batch: the tokens are in
    /// the vocabulary and every cache is whole and has room for one more position.
    pub fn step_fits(&self, tokens: &[u32], caches: &[ShardedCache]) -> bool {
        self.shards[0].check_tokens(tokens, caches.len()).is_ok()
            && caches
                .iter()
                .all(|c| c.shard_count() == self.world_size() && c.len() < c.limit())
    }

    /// `Transformer::forward` over every rank; see there. Returns rank 0's (complete) logits.
    pub fn forward(
        &self,
        tokens: &[u32],
        caches: &mut [&mut ShardedCache],
        rows: Rows,
        want_logits: bool,
    ) -> Result<Option<Tensor>> {
        if caches.iter().any(|c| c.shard_count() != self.world_size()) {
            return Err(EngineError::EngineLoop(
                "a sequence's cache was lost in an earlier failed pass".into(),
            ));
        }
        let Some(sharded) = &self.sharded else {
            let mut single: Vec<&mut SequenceCache> =
                caches.iter_mut().map(|c| &mut c.shards_mut()[0]).collect();
            return self.shards[0].forward(tokens, &mut single, rows, want_logits, None);
        };
        if let Some((rank, reason)) = sharded.failure.get() {
            return Err(EngineError::RankFailed {
                rank: *rank,
                reason: reason.clone(),
            });
        }
        // Everything a request can get wrong is checked here, before any rank starts: a rank
        // that fails after this is a broken rank, not a bad request.
        let batch = caches.len();
        self.shards[0].check_tokens(tokens, batch)?;
        let seq = tokens.len() / batch;
        let positions: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        check_positions(&positions, seq)?;
        for cache in caches.iter_mut() {
            cache.reserve(seq)?;
        }
        let _serial = sharded
            .forward_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let call = sharded.calls.fetch_add(1, Ordering::Relaxed);
        let fault = (call == sharded.fault_call.load(Ordering::Relaxed)).then(|| {
            let mode = if sharded.fault_panics.load(Ordering::Relaxed) {
                Fault::Panic
            } else {
                Fault::Error
            };
            (sharded.fault_rank.load(Ordering::Relaxed), mode)
        });

        let world = self.shards.len();
        let mut per_rank: Vec<Vec<&mut SequenceCache>> =
            (0..world).map(|_| Vec::with_capacity(batch)).collect();
        for cache in caches.iter_mut() {
            for (rank, shard) in cache.shards_mut().iter_mut().enumerate() {
                per_rank[rank].push(shard);
            }
        }
        let collective = sharded.collective.as_ref();
        let run = |rank: usize, caches: &mut Vec<&mut SequenceCache>| {
            let ctx = RankContext {
                rank,
                collective,
                fault: fault.filter(|f| f.0 == rank).map(|f| f.1),
            };
            run_rank(&self.shards[rank], ctx, tokens, caches, rows, want_logits)
        };
        let results: Vec<Result<Option<Tensor>>> = std::thread::scope(|scope| {
            let mut ranks = per_rank.into_iter().enumerate();
            let mut first = ranks.next().map(|(_, c)| c).unwrap_or_default();
            let mut handles = Vec::with_capacity(world - 1);
            for (rank, mut caches) in ranks {
                let spawned = std::thread::Builder::new()
                    .name(format!("scot-tp-rank-{rank}"))
                    .spawn_scoped(scope, move || run(rank, &mut caches));
                match spawned {
                    Ok(handle) => handles.push((rank, handle)),
                    Err(e) => {
                        // The ranks already started would wait for this one: release them.
                        let reason = format!("cannot start the rank thread: {e}");
                        collective.abort(rank, &reason);
                        handles.clear();
                        return vec![Err(EngineError::RankFailed { rank, reason })];
                    }
                }
            }
            let mut results = vec![run(0, &mut first)];
            for (rank, handle) in handles {
                // `run_rank` catches panics, so a join error is not expected; map it anyway.
                results.push(handle.join().unwrap_or_else(|_| {
                    Err(EngineError::RankFailed {
                        rank,
                        reason: "the rank thread panicked".into(),
                    })
                }));
            }
            results
        });
        if results.iter().all(Result::is_ok) {
            return results.into_iter().next().unwrap_or(Ok(None));
        }
        // The root cause: the first rank that failed on its own (not by the collective's abort),
        // else the failure the aborted collective reported.
        let mut own = None;
        let mut aborted = None;
        for (rank, result) in results.into_iter().enumerate() {
            match result {
                Err(EngineError::RankFailed {
                    rank: failed,
                    reason,
                }) => {
                    tracing::error!(rank, failed, %reason, "tensor-parallel rank stopped");
                    aborted.get_or_insert((failed, reason));
                }
                Err(e) => {
                    tracing::error!(rank, error = %e, "tensor-parallel rank failed");
                    own.get_or_insert((rank, e.to_string()));
                }
                Ok(_) => {}
            }
        }
        let (rank, reason) = own
            .or(aborted)
            .unwrap_or_else(|| (0, "a rank failed without a reason".to_string()));
        let (rank, reason) = sharded.failure.get_or_init(|| (rank, reason)).clone();
        Err(EngineError::RankFailed { rank, reason })
    }
}

/// One rank's forward pass. Whatever way it fails, it aborts the collective before returning,
/// so the other ranks never wait for it.
fn run_rank(
    transformer: &Transformer,
    ctx: RankContext<'_>,
    tokens: &[u32],
    caches: &mut [&mut SequenceCache],
    rows: Rows,
    want_logits: bool,
) -> Result<Option<Tensor>> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        transformer.forward(tokens, caches, rows, want_logits, Some(ctx))
    }));
    match outcome {
        Ok(Ok(logits)) => Ok(logits),
        Ok(Err(e)) => {
            if !matches!(e, EngineError::RankFailed { .. }) {
                ctx.collective.abort(ctx.rank, &e.to_string());
            }
            Err(e)
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let reason = format!("panicked: {message}");
            ctx.collective.abort(ctx.rank, &reason);
            Err(EngineError::RankFailed {
                rank: ctx.rank,
                reason,
            })
        }
    }
}

/// Cuts the whole decoder into one shard per device: q/k/v by heads and o by the matching input
/// columns, gate/up by FFN rows and down by the matching columns (on down's quantization blocks),
/// the LM head by vocabulary rows; norms, embedding and RoPE tables replicated.
fn shard_transformer(full: Transformer, devices: &[Device]) -> Result<Vec<Transformer>> {
    let tp = devices.len();
    let hp = full.hp.clone();
    let plan = head_plan(hp.n_head, hp.n_kv_head, tp)?;
    let q_cols = scale_ranges(&plan.heads, hp.head_dim);
    let kv_rows = scale_ranges(&plan.kv_heads, hp.head_dim);
    let vocab = block_ranges(hp.vocab_size, 1, tp)?;
    let refuse = |layer: usize, what: &str, why: String| {
        EngineError::InvalidRequest(format!(
            "tensor parallelism {tp} is not possible for this model: layer {layer} {what}: {why}"
        ))
    };
    let mut ranks = Vec::with_capacity(tp);
    for (rank, device) in devices.iter().enumerate() {
        ranks.push(Transformer {
            hp: Hyperparams {
                n_head: plan.heads[rank].len(),
                n_kv_head: plan.kv_heads[rank].len(),
                ..hp.clone()
            },
            embedding: match &full.embedding {
                TokenEmbedding::Quantized(q) => TokenEmbedding::Quantized(quantized_on(q, device)?),
                TokenEmbedding::Dense(t) => TokenEmbedding::Dense(t.to_device(device)?),
            },
            blocks: Vec::with_capacity(hp.n_layer),
            norm: full.norm.to_device(device)?,
            output: full.output.rows(vocab[rank].clone(), device)?,
            rope: if device.is_cpu() {
                full.rope.clone()
            } else {
                Rope::new(
                    hp.head_dim,
                    hp.rope_theta,
                    full.rope.max_len(),
                    hp.rope_interleaved,
                    device,
                )?
            },
            device: device.clone(),
        });
    }
    // Layer by layer, dropping each whole layer once cut, so the peak is the model plus one layer.
    for (layer, block) in full.blocks.into_iter().enumerate() {
        let o_block = block.o.block_size();
        if let Some(bad) = q_cols.iter().find(|r| !r.start.is_multiple_of(o_block)) {
            return Err(refuse(
                layer,
                "attn_output",
                format!(
                    "a rank's heads start at column {} (head_dim {}), not on a quantization \
                     block boundary (block size {o_block})",
                    bad.start, hp.head_dim
                ),
            ));
        }
        let ff: Vec<Range<usize>> = block_ranges(hp.intermediate, block.down.block_size(), tp)
            .map_err(|e| refuse(layer, "ffn_down", e.to_string()))?;
        for (rank, device) in devices.iter().enumerate() {
            let first = rank == 0;
            ranks[rank].blocks.push(Block {
                attn_norm: block.attn_norm.to_device(device)?,
                q: block.q.rows(q_cols[rank].clone(), device)?,
                k: block.k.rows(kv_rows[rank].clone(), device)?,
                v: block.v.rows(kv_rows[rank].clone(), device)?,
                o: block.o.cols(q_cols[rank].clone(), first, device)?,
                ffn_norm: block.ffn_norm.to_device(device)?,
                gate: block.gate.rows(ff[rank].clone(), device)?,
                up: block.up.rows(ff[rank].clone(), device)?,
                down: block.down.cols(ff[rank].clone(), first, device)?,
            });
        }
        if layer == 0 {
            for (rank, t) in ranks.iter_mut().enumerate() {
                t.hp.intermediate = ff[rank].len();
            }
        }
    }
    Ok(ranks)
}
