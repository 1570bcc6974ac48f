//! Drafting: one prompt prefilled once, forked into n sequences that decode together as one batch,
//! each with its own sampler and stop conditions.

use std::time::Instant;

use candle_core::Tensor;

use crate::error::{EngineError, Result};
use crate::generation::{
    BatchEvent, CancelToken, FinishReason, SamplingParams, SequenceOutput, StopCriteria,
};
use crate::kv_cache::ShardedCache;
use crate::linear::Rows;
use crate::model::Model;
use crate::sampling::Sampler;
use crate::session::PREFILL_CHUNK;
use crate::stop::SequenceRun;

struct Member<'a> {
    seq: usize,
    cache: ShardedCache,
    sampler: Sampler,
    run: SequenceRun<'a>,
    logits: Vec<f32>,
}

pub(crate) fn generate_batch(
    model: &Model,
    prompt: &[u32],
    sequences: &[SamplingParams],
    stop: &StopCriteria,
    on_event: &mut dyn FnMut(BatchEvent),
    cancel: &CancelToken,
) -> Result<Vec<SequenceOutput>> {
    let started = Instant::now();
    if prompt.is_empty() {
        return Err(EngineError::InvalidRequest("the prompt is empty".into()));
    }
    if sequences.is_empty() {
        return Ok(Vec::new());
    }
    let samplers = sequences
        .iter()
        .map(Sampler::new)
        .collect::<Result<Vec<_>>>()?;

    let mut session = model.session()?;
    if prompt.len() > session.context_limit() {
        return Err(EngineError::ContextOverflow {
            needed: prompt.len(),
            limit: session.context_limit(),
        });
    }
    // Chunk by chunk, so a long prompt's prefill can be cancelled too.
    for chunk in prompt.chunks(PREFILL_CHUNK) {
        if cancel.is_cancelled() {
            return sequences
                .iter()
                .enumerate()
                .map(|(seq, _)| {
                    let run = SequenceRun::new(
                        model.tokenizer(),
                        stop,
                        &model.info().eos_token_ids,
                        started,
                    );
                    let output = run.finish(FinishReason::Cancelled)?;
                    on_event(BatchEvent::Finished {
                        seq,
                        output: output.clone(),
                    });
                    Ok(output)
                })
                .collect();
        }
        session.extend(chunk)?;
    }
    on_event(BatchEvent::Prefilled {
        prompt_tokens: prompt.len(),
        elapsed: started.elapsed(),
    });
    let (cache, logits) = session.into_parts();
    let logits =
        logits.ok_or_else(|| EngineError::InvalidRequest("prefill gave no logits".into()))?;

    let eos = &model.info().eos_token_ids;
    let mut outputs: Vec<Option<SequenceOutput>> = vec![None; sequences.len()];
    let mut members = Vec::with_capacity(sequences.len());
    let mut shared = Some(cache);
    for (seq, sampler) in samplers.into_iter().enumerate() {
        // The last member takes the prefilled cache itself; the others get copies.
        let cache = if seq + 1 == sequences.len() {
            shared
                .take()
                .ok_or_else(|| EngineError::InvalidRequest("cache already taken".into()))?
        } else {
            shared
                .as_ref()
                .ok_or_else(|| EngineError::InvalidRequest("cache already taken".into()))?
                .fork()?
        };
        members.push(Member {
            seq,
            cache,
            sampler,
            run: SequenceRun::new(model.tokenizer(), stop, eos, started),
            logits: logits.clone(),
        });
    }

    let mut stepper = model.stepper();
    let mut finish =
        |m: Member<'_>, reason: FinishReason, on_event: &mut dyn FnMut(BatchEvent)| -> Result<()> {
            let output = m.run.finish(reason)?;
            on_event(BatchEvent::Finished {
                seq: m.seq,
                output: output.clone(),
            });
            outputs[m.seq] = Some(output);
            Ok(())
        };

    while !members.is_empty() {
        let cancelled = cancel.is_cancelled();
        let mut next = Vec::with_capacity(members.len());
        let mut tokens = Vec::with_capacity(members.len());
        let draws = draw_tokens(&mut members, cancelled)?;
        for (mut m, draw) in members.drain(..).zip(draws) {
            let token = match draw {
                Draw::Token(token) => token,
                Draw::Stop(reason) => {
                    finish(m, reason, on_event)?;
                    continue;
                }
            };
            let (event, finished) = m.run.accept(token)?;
            on_event(BatchEvent::Token { seq: m.seq, event });
            match finished {
                Some(reason) => finish(m, reason, on_event)?,
                None => {
                    tokens.push(token);
                    next.push(m);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        let mut caches: Vec<&mut ShardedCache> = next.iter_mut().map(|m| &mut m.cache).collect();
        let logits = stepper
            .forward(&tokens, &mut caches, Rows::Independent, true)?
            .ok_or_else(|| EngineError::InvalidRequest("no logits".into()))?;
        for (i, m) in next.iter_mut().enumerate() {
            m.logits = row(&logits, i)?;
        }
        members = next;
    }
    outputs
        .into_iter()
        .map(|o| {
            o.ok_or_else(|| EngineError::InvalidRequest("a sequence produced no output".into()))
        })
        .collect()
}

/// One member's draw, done on any thread.
struct SampleJob<'a> {
    sampler: &'a mut Sampler,
    logits: &'a [f32],
    out: &'a mut Option<Result<Draw>>,
}

/// What a member does this step: take a token, or stop before sampling.
enum Draw {
    Token(u32),
    Stop(FinishReason),
}

/// Every member's next token, the samplers spread over the engine's threads: each has its own
/// random stream and logits, so the draws equal drawing one after another (a full-vocabulary
/// softmax per row is a visible share of a small model's step).
fn draw_tokens(members: &mut [Member<'_>], cancelled: bool) -> Result<Vec<Draw>> {
    let stop = |m: &Member<'_>| {
        if cancelled {
            Some(FinishReason::Cancelled)
        } else if m.run.exhausted() || m.cache.len() >= m.cache.limit() {
            Some(FinishReason::Length)
        } else {
            None
        }
    };
    let mut draws: Vec<Option<Result<Draw>>> = members
        .iter()
        .map(|m| stop(m).map(|reason| Ok(Draw::Stop(reason))))
        .collect();
    let mut work: Vec<SampleJob<'_>> = members
        .iter_mut()
        .zip(draws.iter_mut())
        .filter(|(_, d)| d.is_none())
        .map(|(m, out)| SampleJob {
            sampler: &mut m.sampler,
            logits: &m.logits,
            out,
        })
        .collect();
    let threads = candle_core::utils::get_num_threads().clamp(1, work.len().max(1));
    let per_thread = work.len().div_ceil(threads).max(1);
    let draw = |part: &mut [SampleJob<'_>]| {
        for job in part {
            *job.out = Some(job.sampler.sample(job.logits).map(Draw::Token));
        }
    };
    std::thread::scope(|scope| {
        let mut parts = work.chunks_mut(per_thread);
        let first = parts.next();
        for part in parts {
            scope.spawn(move || draw(part));
        }
        if let Some(part) = first {
            draw(part);
        }
    });
    draws
        .into_iter()
        .map(|d| {
            d.unwrap_or_else(|| {
                Err(EngineError::InvalidRequest(
                    "a member was not sampled".into(),
                ))
            })
        })
        .collect()
}

fn row(logits: &Tensor, i: usize) -> Result<Vec<f32>> {
    Ok(logits.get(i)?.to_vec1::<f32>()?)
}
