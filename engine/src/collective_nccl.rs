//! `NcclCollective`: the collective operations between GPU ranks of one process, through NCCL.
//!
//! One process drives all GPUs of a node, one rank thread per GPU; `new` makes one communicator per
//! GPU in one `ncclCommInitAll`. A collective is enqueued on the stream of the tensor's own candle
//! device, so it is ordered with the kernels before and after it and the calling thread does not
//! wait for it (only reading a result back to the host does). Each communicator sits behind a mutex
//! held only while enqueueing, never while waiting for the GPU, so `abort` can always take it and
//! `ncclCommAbort` it: NCCL kernels waiting for a dead peer then end, and every later call returns
//! `EngineError::RankFailed` instead of hanging (the failure mode users report as NCCL hangs).
//!
//! Compiled by CI (`scripts/build-cuda.sh`) but only ever run on a GPU machine: no GPU here.

use std::ffi::c_void;
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut, DeviceRepr};
use candle_core::cuda_backend::cudarc::nccl::{result as nccl, sys as nccl_sys, NcclType};
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::collective::Collective;
use crate::error::{EngineError, Result};

/// How long `abort` waits for a rank that is inside an enqueue before leaving that rank's
/// communicator to the rank itself (it aborts its own communicator when the enqueue returns).
const ABORT_LOCK_WAIT: Duration = Duration::from_secs(2);

/// An NCCL communicator handle. NCCL allows a communicator to be used from any thread, one call at
/// a time; the mutex around it in `RankComm` provides the "one at a time".
#[derive(Debug)]
struct CommHandle(nccl_sys::ncclComm_t);

// SAFETY: ncclComm_t is an opaque handle NCCL lets any thread use; every use goes through the
// `RankComm` mutex, so no two threads touch it at once.
unsafe impl Send for CommHandle {}

impl CommHandle {
    fn abort(self) {
        // SAFETY: the handle came from ncclCommInitAll and is consumed here, so it is aborted once.
        if let Err(e) = unsafe { nccl::comm_abort(self.0) } {
            tracing::warn!(error = ?e.0, "ncclCommAbort failed");
        }
    }
}

#[derive(Debug)]
struct RankComm {
    /// CUDA ordinal of the GPU this rank runs on.
    ordinal: usize,
    /// `None` once aborted.
    handle: Mutex<Option<CommHandle>>,
}

impl RankComm {
    fn lock(&self) -> MutexGuard<'_, Option<CommHandle>> {
        self.handle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// NCCL collectives between the GPUs of one process; rank `i` runs on `ordinals[i]`.
#[derive(Debug)]
pub struct NcclCollective {
    ranks: Vec<RankComm>,
    /// The first failure: (failed rank, reason).
    failure: OnceLock<(usize, String)>,
}

impl NcclCollective {
    /// One NCCL communicator per GPU (`ncclCommInitAll`); rank `i` is `ordinals[i]`.
    pub fn new(ordinals: &[usize]) -> Result<NcclCollective> {
        if ordinals.is_empty() {
            return Err(EngineError::Device(
                "NCCL needs at least one GPU ordinal".into(),
            ));
        }
        for (i, o) in ordinals.iter().enumerate() {
            if ordinals[..i].contains(o) {
                return Err(EngineError::Device(format!(
                    "GPU {o} is listed twice in {ordinals:?}: NCCL needs one rank per GPU"
                )));
            }
        }
        let devlist = ordinals
            .iter()
            .map(|&o| std::ffi::c_int::try_from(o))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| EngineError::Device(format!("GPU ordinals out of range: {ordinals:?}")))?;
        let ndev = std::ffi::c_int::try_from(ordinals.len())
            .map_err(|_| EngineError::Device(format!("too many GPUs: {}", ordinals.len())))?;
        let mut comms: Vec<nccl_sys::ncclComm_t> = vec![std::ptr::null_mut(); ordinals.len()];
        // SAFETY: `comms` has room for `ndev` handles and `devlist` holds `ndev` ordinals.
        unsafe { nccl::comm_init_all(comms.as_mut_ptr(), ndev, devlist.as_ptr()) }.map_err(
            |e| EngineError::Device(format!("ncclCommInitAll on GPUs {ordinals:?}: {:?}", e.0)),
        )?;
        tracing::info!(?ordinals, "NCCL communicators ready");
        Ok(NcclCollective {
            ranks: ordinals
                .iter()
                .zip(comms)
                .map(|(&ordinal, comm)| RankComm {
                    ordinal,
                    handle: Mutex::new(Some(CommHandle(comm))),
                })
                .collect(),
            failure: OnceLock::new(),
        })
    }

    /// CUDA ordinal of each rank's GPU, in rank order.
    pub fn ordinals(&self) -> Vec<usize> {
        self.ranks.iter().map(|r| r.ordinal).collect()
    }

    fn failed_error(&self) -> Option<EngineError> {
        self.failure
            .get()
            .map(|(rank, reason)| EngineError::RankFailed {
                rank: *rank,
                reason: reason.clone(),
            })
    }

    /// Runs `enqueue` with `rank`'s communicator, under its lock. `enqueue` must only enqueue work
    /// on a stream, never wait for the GPU: `abort` needs the lock to end a hung collective.
    fn with_comm<R>(
        &self,
        rank: usize,
        enqueue: impl FnOnce(nccl_sys::ncclComm_t, usize) -> Result<R>,
    ) -> Result<R> {
        let rank_comm = self.ranks.get(rank).ok_or_else(|| {
            EngineError::InvalidRequest(format!(
                "rank {rank} out of range for {} NCCL ranks",
                self.ranks.len()
            ))
        })?;
        let mut guard = rank_comm.lock();
        if let Some(err) = self.failed_error() {
            return Err(err);
        }
        let Some(handle) = guard.as_ref() else {
            return Err(EngineError::RankFailed {
                rank,
                reason: "NCCL communicator already aborted".into(),
            });
        };
        let result = enqueue(handle.0, rank_comm.ordinal);
        // `abort` may have given up waiting for this lock while we were enqueueing: abort our own
        // communicator now, or our kernel would wait for peers that are gone.
        if let Some(err) = self.failed_error() {
            if let Some(handle) = guard.take() {
                handle.abort();
            }
            return Err(err);
        }
        result
    }
}

impl Drop for NcclCollective {
    fn drop(&mut self) {
        // Abort rather than destroy: destroy waits for outstanding work, which may never finish if
        // a peer failed.
        for rank in &mut self.ranks {
            let slot = rank
                .handle
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(handle) = slot.take() {
                handle.abort();
            }
        }
    }
}

impl Collective for NcclCollective {
    fn world_size(&self) -> usize {
        self.ranks.len()
    }

    fn all_reduce_sum(&self, rank: usize, t: &Tensor) -> Result<Tensor> {
        if t.elem_count() == 0 {
            return Ok(t.clone());
        }
        self.with_comm(rank, |comm, ordinal| {
            Ok(t.apply_op1_no_bwd(&AllReduceSum { comm, ordinal })?)
        })
    }

    fn all_gather(&self, rank: usize, t: &Tensor, dim: usize) -> Result<Tensor> {
        if dim >= t.rank() {
            return Err(EngineError::InvalidRequest(format!(
                "all_gather along dim {dim} of a rank-{} tensor",
                t.rank()
            )));
        }
        // Gather along dim 0 of a contiguous tensor, where each rank's part is one block of memory.
        let x = if dim == 0 {
            t.contiguous()?
        } else {
            t.transpose(0, dim)?.contiguous()?
        };
        let rows = self.exchange_rows(rank, &x)?;
        if rows.iter().all(|&r| r == 0) {
            return Ok(t.clone());
        }
        let inner: usize = x.dims()[1..].iter().product();
        let gathered = self.with_comm(rank, |comm, ordinal| {
            Ok(x.apply_op1_no_bwd(&GatherRows {
                comm,
                ordinal,
                rows: rows.clone(),
                inner,
            })?)
        })?;
        Ok(if dim == 0 {
            gathered
        } else {
            gathered.transpose(0, dim)?.contiguous()?
        })
    }

    fn abort(&self, failed_rank: usize, reason: &str) {
        if self.failure.set((failed_rank, reason.to_string())).is_err() {
            return; // already aborted
        }
        tracing::error!(failed_rank, reason, "aborting NCCL communicators");
        for rank_comm in &self.ranks {
            let deadline = Instant::now() + ABORT_LOCK_WAIT;
            loop {
                match rank_comm.handle.try_lock() {
                    Ok(mut slot) => {
                        if let Some(handle) = slot.take() {
                            handle.abort();
                        }
                        break;
                    }
                    Err(TryLockError::Poisoned(poisoned)) => {
                        let mut slot = poisoned.into_inner();
                        if let Some(handle) = slot.take() {
                            handle.abort();
                        }
                        break;
                    }
                    Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(TryLockError::WouldBlock) => {
                        // Its rank is stuck enqueueing; `with_comm` aborts it when it returns.
                        tracing::warn!(
                            ordinal = rank_comm.ordinal,
                            "NCCL rank busy; it aborts itself"
                        );
                        break;
                    }
                }
            }
        }
    }
}

impl NcclCollective {
    /// Every rank's length along dim 0 of `x` (ranks may hold uneven vocab shards).
    fn exchange_rows(&self, rank: usize, x: &Tensor) -> Result<Vec<usize>> {
        let device = x.device().as_cuda_device()?.clone();
        let world = self.ranks.len();
        let local = device.clone_htod([x.dim(0)? as u64].as_slice())?;
        // SAFETY: every element is written by the all-gather before it is read.
        let mut all = unsafe { device.alloc::<u64>(world)? };
        self.with_comm(rank, |comm, ordinal| {
            let stream = device.cuda_stream();
            check_ordinal(stream.context().ordinal(), ordinal)?;
            let (src, _src_sync) = local.device_ptr(&stream);
            let (dst, _dst_sync) = all.device_ptr_mut(&stream);
            // SAFETY: `local` holds 1 element, `all` holds one per rank, both on this stream's device.
            unsafe {
                nccl::all_gather(
                    src as *const c_void,
                    dst as *mut c_void,
                    1,
                    u64::as_nccl_type(),
                    comm,
                    stream.cu_stream() as nccl_sys::cudaStream_t,
                )
            }
            .map_err(|e| EngineError::Device(format!("ncclAllGather (sizes): {:?}", e.0)))?;
            Ok(())
        })?;
        // Waits for the GPU, outside the communicator's lock.
        let rows = device.clone_dtoh(&all)?;
        Ok(rows.into_iter().map(|r| r as usize).collect())
    }
}

fn check_ordinal(actual: usize, expected: usize) -> candle_core::Result<()> {
    if actual != expected {
        candle_core::bail!("tensor is on GPU {actual} but this NCCL rank runs on GPU {expected}");
    }
    Ok(())
}

fn nccl_error(call: &str, e: nccl::NcclError) -> candle_core::Error {
    candle_core::Error::Msg(format!("{call}: {:?}", e.0))
}

/// The contiguous device memory of a tensor's storage, as a typed view.
fn contiguous_view<'a, T: CudaDType>(
    s: &'a CudaStorage,
    l: &Layout,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>> {
    let (start, end) = l.contiguous_offsets().ok_or_else(|| {
        candle_core::Error::Msg("NCCL collectives need contiguous tensors".into())
    })?;
    Ok(s.as_cuda_slice::<T>()?.slice(start..end))
}

/// Dispatches on the storage's dtype to the NCCL data types candle and NCCL share.
macro_rules! with_nccl_dtype {
    ($storage:expr, $f:ident, $($arg:expr),*) => {
        match $storage.dtype() {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F16 => $f::<half::f16>($($arg),*),
            DType::BF16 => $f::<half::bf16>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
            DType::U8 => $f::<u8>($($arg),*),
            DType::U32 => $f::<u32>($($arg),*),
            DType::I32 => $f::<i32>($($arg),*),
            DType::I64 => $f::<i64>($($arg),*),
            other => candle_core::bail!("NCCL collectives do not support {other:?} tensors"),
        }
    };
}

/// Element-wise sum over all ranks (ncclAllReduce), on the tensor's own stream.
struct AllReduceSum {
    comm: nccl_sys::ncclComm_t,
    ordinal: usize,
}

impl CustomOp1 for AllReduceSum {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the NCCL collective needs tensors on a CUDA device")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let out = with_nccl_dtype!(s, all_reduce_typed, self, s, l)?;
        Ok((out, l.shape().clone()))
    }
}

fn all_reduce_typed<T: CudaDType + NcclType + DeviceRepr>(
    op: &AllReduceSum,
    s: &CudaStorage,
    l: &Layout,
) -> candle_core::Result<CudaStorage> {
    let device = &s.device;
    let stream = device.cuda_stream();
    check_ordinal(stream.context().ordinal(), op.ordinal)?;
    let src = contiguous_view::<T>(s, l)?;
    let count = src.len();
    // SAFETY: the all-reduce writes every element before anything reads it.
    let mut dst = unsafe { device.alloc::<T>(count)? };
    {
        let (src_ptr, _src_sync) = src.device_ptr(&stream);
        let (dst_ptr, _dst_sync) = dst.device_ptr_mut(&stream);
        // SAFETY: both buffers hold `count` elements of T on this stream's device.
        unsafe {
            nccl::all_reduce(
                src_ptr as *const c_void,
                dst_ptr as *mut c_void,
                count,
                T::as_nccl_type(),
                nccl_sys::ncclRedOp_t::ncclSum,
                op.comm,
                stream.cu_stream() as nccl_sys::cudaStream_t,
            )
        }
        .map_err(|e| nccl_error("ncclAllReduce", e))?;
    }
    Ok(CudaStorage::wrap_cuda_slice(dst, device.clone()))
}

/// Concatenation along dim 0 of every rank's rows, in rank order: one ncclAllGather when all ranks
/// hold the same number of rows, else one ncclBroadcast per rank into its offset (in one group).
struct GatherRows {
    comm: nccl_sys::ncclComm_t,
    ordinal: usize,
    /// Rows (dim 0 length) of every rank.
    rows: Vec<usize>,
    /// Elements per row.
    inner: usize,
}

impl CustomOp1 for GatherRows {
    fn name(&self) -> &'static str {
        "nccl-all-gather"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the NCCL collective needs tensors on a CUDA device")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let out = with_nccl_dtype!(s, gather_rows_typed, self, s, l)?;
        let mut dims = l.shape().dims().to_vec();
        if let Some(first) = dims.first_mut() {
            *first = self.rows.iter().sum();
        }
        Ok((out, Shape::from(dims)))
    }
}

fn gather_rows_typed<T: CudaDType + NcclType + DeviceRepr>(
    op: &GatherRows,
    s: &CudaStorage,
    l: &Layout,
) -> candle_core::Result<CudaStorage> {
    let device = &s.device;
    let stream = device.cuda_stream();
    check_ordinal(stream.context().ordinal(), op.ordinal)?;
    let src = contiguous_view::<T>(s, l)?;
    let total = op.rows.iter().sum::<usize>() * op.inner;
    // SAFETY: every element is written by the gather (the per-rank parts tile the buffer).
    let mut dst = unsafe { device.alloc::<T>(total)? };
    let uniform = op.rows.windows(2).all(|w| w[0] == w[1]);
    {
        let (src_ptr, _src_sync) = src.device_ptr(&stream);
        let (dst_ptr, _dst_sync) = dst.device_ptr_mut(&stream);
        let cu_stream = stream.cu_stream() as nccl_sys::cudaStream_t;
        if uniform {
            // SAFETY: `src` holds rows*inner elements and `dst` world times as many.
            unsafe {
                nccl::all_gather(
                    src_ptr as *const c_void,
                    dst_ptr as *mut c_void,
                    src.len(),
                    T::as_nccl_type(),
                    op.comm,
                    cu_stream,
                )
            }
            .map_err(|e| nccl_error("ncclAllGather", e))?;
        } else {
            nccl::group_start().map_err(|e| nccl_error("ncclGroupStart", e))?;
            let mut offset = 0usize;
            let mut first_error = None;
            for (root, &rows) in op.rows.iter().enumerate() {
                let count = rows * op.inner;
                let root = std::ffi::c_int::try_from(root)
                    .map_err(|_| candle_core::Error::Msg("too many NCCL ranks".into()))?;
                let part = dst_ptr + (offset * std::mem::size_of::<T>()) as u64;
                // SAFETY: `part` has room for `count` elements inside `dst`; the root's `src`
                // holds exactly `count` elements (the exchanged row counts), others' is unread.
                let sent = unsafe {
                    nccl::broadcast(
                        src_ptr as *const c_void,
                        part as *mut c_void,
                        count,
                        T::as_nccl_type(),
                        root,
                        op.comm,
                        cu_stream,
                    )
                };
                if let Err(e) = sent {
                    first_error.get_or_insert(nccl_error("ncclBroadcast", e));
                }
                offset += count;
            }
            // End the group even after an error, or this thread's next NCCL call would join it.
            let ended = nccl::group_end().map_err(|e| nccl_error("ncclGroupEnd", e));
            if let Some(e) = first_error {
                return Err(e);
            }
            ended?;
        }
    }
    Ok(CudaStorage::wrap_cuda_slice(dst, device.clone()))
}
