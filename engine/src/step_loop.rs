//! Continuous batching: ONE loop thread per model runs every forward pass of every session on it.
//!
//! Each pass a session (or a drafting batch) asks for is a piece of [`Work`] that moves the
//! sequences' caches to the loop and gets them back with the logits. Single-token decoding steps of
//! all sessions waiting at that moment run together as one batch, each sequence at its own position
//! and bit-identical to a step alone (`Rows::Independent`), so a request's output does not depend
//! on what else runs. Anything else (a prefill chunk, a speculative verification) runs alone, in
//! arrival order, between batches: a running decode waits at most one prefill chunk, and a new
//! request's prefill at most one decoding step.
//!
//! After a batch the loop waits briefly for the sequences it just served to come back with their
//! next token (they sample in their own threads), up to a quarter of the batch's own time, so
//! sessions stepping together stay in one batch instead of alternating; a session that does not
//! come back (it finished, or its caller reads slowly) costs the others at most that wait.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::Tensor;

use crate::error::{EngineError, Result};
use crate::kv_cache::ShardedCache;
use crate::linear::Rows;
use crate::tensor_parallel::Ranks;

/// Bounds of the wait for the sequences of the last batch (see the module's notes).
const MIN_GATHER_WAIT: Duration = Duration::from_millis(1);
const MAX_GATHER_WAIT: Duration = Duration::from_millis(50);

/// What the loop has run since the model was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepStats {
    /// Decoding batches run (one forward pass each).
    pub decode_batches: u64,
    /// Sequences stepped in them: `decode_rows / decode_batches` is the mean batch size.
    pub decode_rows: u64,
    /// The largest decoding batch.
    pub max_decode_rows: u64,
    /// Passes run alone (prefill chunks, speculative verifications).
    pub other_passes: u64,
}

#[derive(Default)]
struct Counters {
    decode_batches: AtomicU64,
    decode_rows: AtomicU64,
    max_decode_rows: AtomicU64,
    other_passes: AtomicU64,
}

/// One forward pass asked for: `tokens` over `caches` as `Transformer::forward` takes them.
struct Work {
    tokens: Vec<u32>,
    caches: Vec<ShardedCache>,
    rows: Rows,
    want_logits: bool,
    /// The rows of an earlier batch this submission brings back (see `Stepper`).
    returning: Option<Returning>,
    reply: mpsc::SyncSender<Reply>,
}

impl Work {
    /// One token per sequence: it may share a decoding batch.
    fn is_step(&self) -> bool {
        self.tokens.len() == self.caches.len()
    }
}

struct Reply {
    caches: Vec<ShardedCache>,
    result: Result<Option<Tensor>>,
    /// Set when the work ran in decoding batch `batch`: the submitter owes its rows back.
    batch: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Returning {
    batch: u64,
    rows: usize,
}

#[derive(Default)]
struct State {
    steps: Vec<Work>,
    others: VecDeque<Work>,
    /// The last decoding batch, and its rows not yet back.
    last_batch: u64,
    awaited: usize,
    /// Until when the loop waits for them.
    gather_until: Option<Instant>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The loop never panics while holding the lock (passes run outside it).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bring_back(state: &mut State, returning: Option<Returning>) {
        if let Some(r) = returning {
            if r.batch == state.last_batch {
                state.awaited = state.awaited.saturating_sub(r.rows);
            }
        }
    }
}

/// The model's loop thread; stops (after the work it holds) when dropped.
pub(crate) struct StepLoop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StepLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepLoop")
            .field("stats", &self.stats())
            .finish()
    }
}

impl StepLoop {
    pub fn start(ranks: Arc<Ranks>) -> Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            counters: Counters::default(),
        });
        let thread = std::thread::Builder::new()
            .name("scot-step-loop".into())
            .spawn({
                let shared = shared.clone();
                move || run(&shared, &ranks)
            })
            .map_err(|e| {
                EngineError::Device(format!("cannot start the engine loop thread: {e}"))
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    pub fn stats(&self) -> StepStats {
        let c = &self.shared.counters;
        StepStats {
            decode_batches: c.decode_batches.load(Ordering::Relaxed),
            decode_rows: c.decode_rows.load(Ordering::Relaxed),
            max_decode_rows: c.max_decode_rows.load(Ordering::Relaxed),
            other_passes: c.other_passes.load(Ordering::Relaxed),
        }
    }

    /// A participant: what one session (or drafting batch) submits through.
    pub fn stepper(&self) -> Stepper<'_> {
        Stepper {
            owner: self,
            owed: None,
        }
    }

    fn submit(&self, work: Work) {
        let mut state = self.shared.lock();
        Shared::bring_back(&mut state, work.returning);
        if work.is_step() {
            state.steps.push(work);
        } else {
            state.others.push_back(work);
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    fn leave(&self, returning: Returning) {
        let mut state = self.shared.lock();
        Shared::bring_back(&mut state, Some(returning));
        drop(state);
        self.shared.wake.notify_one();
    }
}

impl Drop for StepLoop {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One participant of the loop. Its forward passes block until the loop has run them; between
/// decoding steps it owes the loop its rows, which it pays by its next submission or when dropped.
pub(crate) struct Stepper<'l> {
    owner: &'l StepLoop,
    owed: Option<Returning>,
}

impl Stepper<'_> {
    /// `Transformer::forward` over `caches`, run by the loop (batched with other sessions' steps
    /// when each cache gets one token).
    pub fn forward(
        &mut self,
        tokens: &[u32],
        caches: &mut [&mut ShardedCache],
        rows: Rows,
        want_logits: bool,
    ) -> Result<Option<Tensor>> {
        let (reply, answer) = mpsc::sync_channel(1);
        let work = Work {
            tokens: tokens.to_vec(),
            caches: caches.iter_mut().map(|c| c.take()).collect(),
            rows,
            want_logits,
            returning: self.owed.take(),
            reply,
        };
        self.owner.submit(work);
        let Reply {
            caches: back,
            result,
            batch,
        } = answer.recv().map_err(|_| {
            EngineError::EngineLoop("the engine loop stopped before running the pass".into())
        })?;
        for (slot, cache) in caches.iter_mut().zip(back) {
            **slot = cache;
        }
        self.owed = batch.map(|batch| Returning {
            batch,
            rows: tokens.len(),
        });
        result
    }
}

impl Drop for Stepper<'_> {
    fn drop(&mut self) {
        if let Some(owed) = self.owed.take() {
            self.owner.leave(owed);
        }
    }
}

/// What the loop runs next.
enum Next {
    Steps(Vec<Work>),
    Other(Work),
    Stop,
}

fn run(shared: &Shared, ranks: &Ranks) {
    loop {
        match next(shared) {
            Next::Stop => return,
            Next::Other(work) => {
                shared.counters.other_passes.fetch_add(1, Ordering::Relaxed);
                run_alone(ranks, work);
            }
            Next::Steps(steps) => {
                let started = Instant::now();
                let batch = {
                    let mut state = shared.lock();
                    state.last_batch += 1;
                    state.last_batch
                };
                let (rows, replies) = run_steps(ranks, steps, batch);
                let took = started.elapsed();
                let c = &shared.counters;
                c.decode_batches.fetch_add(1, Ordering::Relaxed);
                c.decode_rows.fetch_add(rows as u64, Ordering::Relaxed);
                c.max_decode_rows.fetch_max(rows as u64, Ordering::Relaxed);
                // Counted before any reply goes out, so a row that comes back at once is seen.
                {
                    let mut state = shared.lock();
                    state.awaited = rows;
                    state.gather_until =
                        Some(Instant::now() + (took / 4).clamp(MIN_GATHER_WAIT, MAX_GATHER_WAIT));
                }
                for (to, reply) in replies {
                    let _ = to.send(reply);
                }
            }
        }
    }
}

/// Waits for work and takes what runs next: the waiting steps once the last batch's rows are back
/// (or the wait for them is over), else the oldest other pass (which runs while they come back).
fn next(shared: &Shared) -> Next {
    let mut state = shared.lock();
    loop {
        let gathered = state.awaited == 0 || state.gather_until.is_none_or(|t| Instant::now() >= t);
        if !state.steps.is_empty() && gathered {
            state.gather_until = None;
            return Next::Steps(std::mem::take(&mut state.steps));
        }
        if let Some(work) = state.others.pop_front() {
            return Next::Other(work);
        }
        if state.closed && state.steps.is_empty() {
            return Next::Stop;
        }
        state = match (state.steps.is_empty(), state.gather_until) {
            (false, Some(until)) => {
                let wait = until.saturating_duration_since(Instant::now());
                shared
                    .wake
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            _ => shared.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

type Replies = Vec<(mpsc::SyncSender<Reply>, Reply)>;

/// Runs the steps of several submitters as one batch (those whose tokens or caches would fail it
/// run alone, so one request's error stays its own). Returns the rows stepped together and the
/// replies to send.
fn run_steps(ranks: &Ranks, steps: Vec<Work>, batch: u64) -> (usize, Replies) {
    let (mut fit, alone): (Vec<Work>, Vec<Work>) = steps
        .into_iter()
        .partition(|w| ranks.step_fits(&w.tokens, &w.caches));
    for work in alone {
        run_alone(ranks, work);
    }
    if fit.is_empty() {
        return (0, Vec::new());
    }
    let tokens: Vec<u32> = fit.iter().flat_map(|w| w.tokens.iter().copied()).collect();
    let want_logits = fit.iter().any(|w| w.want_logits);
    let result = {
        let mut caches: Vec<&mut ShardedCache> =
            fit.iter_mut().flat_map(|w| w.caches.iter_mut()).collect();
        guarded(|| ranks.forward(&tokens, &mut caches, Rows::Independent, want_logits))
    };
    let rows = if result.is_ok() { tokens.len() } else { 0 };
    let mut first = 0;
    let mut replies = Vec::with_capacity(fit.len());
    for work in fit {
        let n = work.tokens.len();
        let (result, batch) = match &result {
            Ok(Some(logits)) if work.want_logits => (
                logits.narrow(0, first, n).map(Some).map_err(Into::into),
                Some(batch),
            ),
            Ok(_) => (Ok(None), Some(batch)),
            Err(e) => (Err(shared_error(e)), None),
        };
        first += n;
        replies.push((
            work.reply,
            Reply {
                caches: work.caches,
                result,
                batch,
            },
        ));
    }
    (rows, replies)
}

fn run_alone(ranks: &Ranks, mut work: Work) {
    let result = {
        let mut caches: Vec<&mut ShardedCache> = work.caches.iter_mut().collect();
        guarded(|| ranks.forward(&work.tokens, &mut caches, work.rows, work.want_logits))
    };
    let _ = work.reply.send(Reply {
        caches: work.caches,
        result,
        batch: None,
    });
}

/// A pass that panics fails only the work in it, never the loop.
fn guarded(pass: impl FnOnce() -> Result<Option<Tensor>>) -> Result<Option<Tensor>> {
    catch_unwind(AssertUnwindSafe(pass)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(panic = %what, "a forward pass panicked");
        Err(EngineError::EngineLoop(format!(
            "the forward pass failed unexpectedly: {what}"
        )))
    })
}

/// The error of a batch, for each of its submitters.
fn shared_error(error: &EngineError) -> EngineError {
    match error {
        EngineError::RankFailed { rank, reason } => EngineError::RankFailed {
            rank: *rank,
            reason: reason.clone(),
        },
        EngineError::ContextOverflow { needed, limit } => EngineError::ContextOverflow {
            needed: *needed,
            limit: *limit,
        },
        EngineError::InvalidRequest(m) => EngineError::InvalidRequest(m.clone()),
        other => EngineError::EngineLoop(other.to_string()),
    }
}
