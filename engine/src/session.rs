//! A conversation state on one model: its own KV cache, extended by prompts and by generation.

use std::time::Instant;

use crate::error::{EngineError, Result};
use crate::generation::{
    CancelToken, FinishReason, SamplingParams, SequenceOutput, StopCriteria, TokenEvent,
};
use crate::kv_cache::ShardedCache;
use crate::linear::Rows;
use crate::model::Model;
use crate::sampling::Sampler;
use crate::step_loop::Stepper;
use crate::stop::SequenceRun;
use crate::transformer::log_softmax;

mod speculative;

use speculative::Drafter;
pub use speculative::{SpeculationStats, Speculator, MAX_SPECULATIVE_TOKENS};

/// Prompts are prefilled in chunks of this many tokens, bounding the attention score buffers.
pub(crate) const PREFILL_CHUNK: usize = 512;

pub struct Session<'m> {
    model: &'m Model,
    /// Where its forward passes go (the model's engine loop).
    stepper: Stepper<'m>,
    cache: ShardedCache,
    logits: Option<Vec<f32>>,
    /// Speculative decoding's draft, when the session was made with one (dropped once its context
    /// is full).
    drafter: Option<Box<Drafter<'m>>>,
    /// What speculation did (None: a plain session).
    speculation: Option<SpeculationStats>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("len", &self.cache.len())
            .field("limit", &self.cache.limit())
            .finish()
    }
}

impl<'m> Session<'m> {
    pub(crate) fn new(model: &'m Model) -> Result<Self> {
        Ok(Self {
            model,
            stepper: model.stepper(),
            cache: model.ranks().new_cache(model.info().context_length)?,
            logits: None,
            drafter: None,
            speculation: None,
        })
    }

    /// A session whose `generate` lets `speculator`'s draft propose tokens for this model to verify.
    pub(crate) fn speculative(model: &'m Model, speculator: &'m Speculator) -> Result<Self> {
        let mut session = Self::new(model)?;
        session.drafter = Some(Box::new(Drafter::new(speculator)?));
        session.speculation = Some(SpeculationStats::default());
        Ok(session)
    }

    /// What speculative decoding did so far (None: a plain session).
    pub fn speculation(&self) -> Option<SpeculationStats> {
        self.speculation
    }

    /// Tokens in the cache.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.len() == 0
    }

    /// Context positions this session may hold.
    pub fn context_limit(&self) -> usize {
        self.cache.limit()
    }

    /// Prefills/appends `tokens`, keeping the last position's logits. Fails up front with
    /// `ContextOverflow` (cache unchanged) when they do not fit.
    pub fn extend(&mut self, tokens: &[u32]) -> Result<()> {
        self.extend_cancellable(tokens, &CancelToken::new())
    }

    /// [`Session::extend`] that checks `cancel` between prefill chunks and stops with `Cancelled`
    /// (the cache then holds the chunks done: drop the session).
    pub fn extend_cancellable(&mut self, tokens: &[u32], cancel: &CancelToken) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        let needed = self.cache.len() + tokens.len();
        if needed > self.cache.limit() {
            return Err(EngineError::ContextOverflow {
                needed,
                limit: self.cache.limit(),
            });
        }
        let chunks: Vec<&[u32]> = tokens.chunks(PREFILL_CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let last = i + 1 == chunks.len();
            let logits =
                self.stepper
                    .forward(chunk, &mut [&mut self.cache], Rows::SameSequence, last)?;
            if let Some(logits) = logits {
                self.logits = Some(logits.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        if let Some(drafter) = &mut self.drafter {
            match drafter.follow(tokens, cancel) {
                Ok(()) => {}
                // A draft model with a shorter context: plain decoding from here.
                Err(EngineError::ContextOverflow { .. }) => self.drafter = None,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Logits after the last extended or generated token.
    pub fn last_logits(&self) -> Result<Vec<f32>> {
        self.logits.clone().ok_or_else(|| {
            EngineError::InvalidRequest("the session has no tokens yet: extend it first".into())
        })
    }

    /// Log-softmax over the full vocabulary at the last position, for each candidate token.
    pub fn logprobs_of(&self, candidates: &[u32]) -> Result<Vec<f32>> {
        let logits = self.logits.as_ref().ok_or_else(|| {
            EngineError::InvalidRequest("the session has no tokens yet: extend it first".into())
        })?;
        let logprobs = log_softmax(logits);
        candidates
            .iter()
            .map(|&c| {
                logprobs.get(c as usize).copied().ok_or_else(|| {
                    EngineError::InvalidRequest(format!(
                        "candidate token {c} is outside the vocabulary (size {})",
                        logprobs.len()
                    ))
                })
            })
            .collect()
    }

    /// An independent copy of this session (its own cache).
    pub fn fork(&self) -> Result<Session<'m>> {
        Ok(Session {
            model: self.model,
            stepper: self.model.stepper(),
            cache: self.cache.fork()?,
            logits: self.logits.clone(),
            drafter: match &self.drafter {
                Some(d) => Some(Box::new(d.fork()?)),
                None => None,
            },
            speculation: self.speculation,
        })
    }

    /// Decodes one sequence from the current state. Every returned token, including a matched stop
    /// string or EOS, is left in the cache, so the caller can `extend` more text and generate again.
    /// Reaching the context limit ends the sequence with `FinishReason::Length`.
    pub fn generate(
        &mut self,
        sampling: &SamplingParams,
        stop: &StopCriteria,
        on_token: &mut dyn FnMut(&TokenEvent),
        cancel: &CancelToken,
    ) -> Result<SequenceOutput> {
        if self.drafter.is_some() {
            return speculative::generate(self, sampling, stop, on_token, cancel);
        }
        let mut sampler = Sampler::new(sampling)?;
        let mut run = self.sequence_run(stop);
        if run.exhausted() {
            return run.finish(FinishReason::Length);
        }
        let mut logits = self.last_logits()?;
        loop {
            if cancel.is_cancelled() {
                return run.finish(FinishReason::Cancelled);
            }
            if self.cache.len() >= self.cache.limit() {
                return run.finish(FinishReason::Length);
            }
            let token = sampler.sample(&logits)?;
            let (event, finished) = run.accept(token)?;
            on_token(&event);
            logits = self.step(token)?;
            if let Some(reason) = finished {
                return run.finish(reason);
            }
        }
    }

    /// The bookkeeping of one sequence generated from here, its clock started now.
    pub(crate) fn sequence_run<'a>(&self, stop: &'a StopCriteria) -> SequenceRun<'a>
    where
        'm: 'a,
    {
        SequenceRun::new(
            self.model.tokenizer(),
            stop,
            &self.model.info().eos_token_ids,
            Instant::now(),
        )
    }

    /// One decoding step of `token` (a single row, as plain decoding): returns and keeps its logits.
    /// The drafter, if any, is not told (speculative decoding keeps it in step itself).
    pub(crate) fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        let logits = self.forward_rows(&[token], Rows::Independent)?;
        let logits = logits.flatten_all()?.to_vec1::<f32>()?;
        self.logits = Some(logits.clone());
        Ok(logits)
    }

    /// Appends `tokens` to the cache and returns the logits `rows` asks for.
    pub(crate) fn forward_rows(
        &mut self,
        tokens: &[u32],
        rows: Rows,
    ) -> Result<candle_core::Tensor> {
        self.stepper
            .forward(tokens, &mut [&mut self.cache], rows, true)?
            .ok_or_else(|| EngineError::InvalidRequest("no logits".into()))
    }

    /// Forgets the positions from `len` on (the logits are then the caller's to set).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.cache.truncate(len);
    }

    pub(crate) fn set_logits(&mut self, logits: Vec<f32>) {
        self.logits = Some(logits);
    }

    pub(crate) fn drafter_mut(&mut self) -> Option<&mut Drafter<'m>> {
        self.drafter.as_deref_mut()
    }

    pub(crate) fn speculation_mut(&mut self) -> Option<&mut SpeculationStats> {
        self.speculation.as_mut()
    }

    pub(crate) fn drop_drafter(&mut self) {
        self.drafter = None;
    }

    pub(crate) fn into_parts(self) -> (ShardedCache, Option<Vec<f32>>) {
        (self.cache, self.logits)
    }
}
