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
use crate::stop::SequenceRun;
use crate::transformer::log_softmax;

/// Prompts are prefilled in chunks of this many tokens, bounding the attention score buffers.
pub(crate) const PREFILL_CHUNK: usize = 512;

pub struct Session<'m> {
    model: &'m Model,
    cache: ShardedCache,
    logits: Option<Vec<f32>>,
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
            cache: model.ranks().new_cache(model.info().context_length)?,
            logits: None,
        })
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
            let logits = self.model.ranks().forward(
                chunk,
                &mut [&mut self.cache],
                Rows::SameSequence,
                last,
            )?;
            if let Some(logits) = logits {
                self.logits = Some(logits.flatten_all()?.to_vec1::<f32>()?);
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
            cache: self.cache.fork()?,
            logits: self.logits.clone(),
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
        let started = Instant::now();
        let mut sampler = Sampler::new(sampling)?;
        let model = self.model;
        let mut run = SequenceRun::new(
            model.tokenizer(),
            stop,
            &model.info().eos_token_ids,
            started,
        );
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
            let out = model
                .ranks()
                .forward(&[token], &mut [&mut self.cache], Rows::Independent, true)?
                .ok_or_else(|| EngineError::InvalidRequest("no logits".into()))?;
            logits = out.flatten_all()?.to_vec1::<f32>()?;
            self.logits = Some(logits.clone());
            if let Some(reason) = finished {
                return run.finish(reason);
            }
        }
    }

    pub(crate) fn into_parts(self) -> (ShardedCache, Option<Vec<f32>>) {
        (self.cache, self.logits)
    }
}
