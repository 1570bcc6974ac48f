//! Generate as an engine job, in ONE session: after an accepted draft, prefill question + draft +
//! "\n</think>\n\n" and decode the answer; otherwise think from scratch (stop at the end marker or the
//! cap), append "</think>\n\n" if missing, and decode the answer — extend + generate twice, no
//! re-prefill. A migrated call (`resume`) prefills the tokens another target streamed at the same
//! points and decodes only what follows, within what is left of each cap. Tokens stream in chunks as
//! the request's `chunking` asks.

use std::time::Instant;

use scot_engine::{
    CancelToken, FinishReason as EngineFinish, SamplingParams, Session, StopCriteria, TokenEvent,
};
use scot_node_support::{
    engine_status, finish_reason, record_speculation, template_status, ChunkPolicy, JobSender,
    KvNeed, NodeModel, TokenChunk, TokenChunker,
};
use scot_proto::generate_event::Event;
use scot_proto::request_checks::check_generate_request;
use scot_proto::{
    FinishReason, GenerateEvent, GeneratePhase, GenerateRequest, GenerateResult, GenerateToken,
};
use tonic::Status;

/// Context kept free for the answer when the target thinks first (at most the answer cap).
const ANSWER_RESERVE: usize = 256;

pub struct GenerateJob {
    pub prompt: Vec<u32>,
    /// Some(cap): think first, up to cap tokens. None: the prompt ends after an accepted draft.
    pub thinking_cap: Option<usize>,
    pub answer_cap: usize,
    pub sampling: SamplingParams,
    pub think_end: String,
    /// Appended after thinking that wrote the end marker itself / that did not.
    pub close_written: Vec<u32>,
    pub close_missing: Vec<u32>,
    /// How the answer begins (already in the prompt / the closing text); part of the returned answer.
    pub answer_start: String,
    /// What another target streamed before it failed (empty unless migrated).
    pub resume: Resumed,
    /// How streamed tokens are grouped into messages.
    pub chunking: ChunkPolicy,
}

impl GenerateJob {
    /// One sequence: the prompt, what a migration resumes, the thinking and its closing text, the
    /// answer.
    pub fn kv_need(&self) -> KvNeed {
        let resumed = self.resume.thinking.len() + self.resume.answer.len();
        let thinking = self.thinking_cap.map_or(0, |cap| {
            cap + self.close_missing.len().max(self.close_written.len())
        });
        KvNeed {
            sequences: 1,
            positions: self.prompt.len() + resumed + thinking + self.answer_cap,
        }
    }
}

/// A migration's starting point, read back from the failed target's token ids.
#[derive(Debug, Default)]
pub struct Resumed {
    pub thinking: Vec<u32>,
    pub answer_started: bool,
    pub answer: Vec<u32>,
}

pub fn prepare(node: &NodeModel, request: &GenerateRequest) -> Result<GenerateJob, Status> {
    check_generate_request(request)?;
    let prompts = node.prompts(&request.template, &request.think_end)?;
    let layout = prompts.layout();
    let text = match &request.accepted_draft {
        Some(draft) => layout.answer_after_draft(&request.problem, draft),
        None => layout.reasoning_prompt(&request.problem),
    }
    .map_err(template_status)?;
    let answer_start = layout.answer_start().to_string();
    let close_written =
        prompts.encode(&format!("{}{answer_start}", layout.close_thinking(true)))?;
    let close_missing =
        prompts.encode(&format!("{}{answer_start}", layout.close_thinking(false)))?;
    let answer_cap = request.max_answer_tokens as usize;
    // Thinking first needs room to close the thinking and start the answer, and a token to think.
    let reserve = match request.accepted_draft {
        Some(_) => None,
        None => Some(close_missing.len() + answer_cap.min(ANSWER_RESERVE)),
    };
    let prompt = prompts.fit(&text, reserve.map_or(1, |r| r + 1), |tokens, context| {
        format!(
            "the problem is too long for the target model: the prompt is {tokens} tokens and the context is {context}; shorten the problem"
        )
    })?;
    let thinking_cap = reserve.map(|r| (prompt.room - r).min(request.max_thinking_tokens as usize));
    let resume = resumed(node, request, prompt.tokens.len() + close_missing.len())?;
    Ok(GenerateJob {
        prompt: prompt.tokens,
        thinking_cap,
        answer_cap,
        sampling: SamplingParams {
            temperature: request.temperature,
            top_p: 1.0,
            top_k: 0,
            seed: request.seed,
        },
        think_end: prompts.markers().end.clone(),
        close_written,
        close_missing,
        answer_start,
        resume,
        chunking: ChunkPolicy::from_request(request.chunking.as_ref()),
    })
}

/// The request's `resume` as token ids this model has, refused when they (with the prompt and the
/// closing text) cannot fit its context.
fn resumed(node: &NodeModel, request: &GenerateRequest, fixed: usize) -> Result<Resumed, Status> {
    let Some(resume) = &request.resume else {
        return Ok(Resumed::default());
    };
    let vocab = node.model.info().vocab_size;
    let ids = resume.thinking_tokens.iter().chain(&resume.answer_tokens);
    if let Some(bad) = ids.into_iter().find(|&&id| id as usize >= vocab) {
        return Err(Status::invalid_argument(format!(
            "resume: token id {bad} is outside the model's vocabulary ({vocab})"
        )));
    }
    let context = node.model.info().context_length;
    let needed = fixed + resume.thinking_tokens.len() + resume.answer_tokens.len();
    if needed >= context {
        return Err(Status::invalid_argument(format!(
            "resume: the prompt and the {} tokens already streamed need {needed} tokens; the context is {context}",
            resume.thinking_tokens.len() + resume.answer_tokens.len()
        )));
    }
    Ok(Resumed {
        thinking: resume.thinking_tokens.clone(),
        answer_started: resume.answer_started,
        answer: resume.answer_tokens.clone(),
    })
}

/// Text up to (without) the end-of-thinking marker, or all of it.
fn before_marker<'t>(text: &'t str, marker: &str) -> (&'t str, bool) {
    match text.find(marker) {
        Some(at) => (&text[..at], true),
        None => (text, false),
    }
}

pub fn run(
    node: &NodeModel,
    job: GenerateJob,
    cancel: &CancelToken,
    tx: &JobSender<GenerateEvent>,
) -> Result<(), Status> {
    let started = Instant::now();
    let model = &node.model;
    let send = |phase: GeneratePhase, chunk: TokenChunk| {
        tx.send(Ok(GenerateEvent {
            event: Some(Event::Token(GenerateToken {
                text: chunk.text,
                phase: phase as i32,
                token_ids: chunk.token_ids,
            })),
        }));
    };
    // One phase's tokens, grouped as the request asks; whatever is held goes out when it ends.
    let generate_phase = |session: &mut Session<'_>, stop: &StopCriteria, phase: GeneratePhase| {
        let mut chunks = TokenChunker::new(job.chunking);
        let output = session.generate(
            &job.sampling,
            stop,
            &mut |event: &TokenEvent| {
                if let Some(chunk) = chunks.push(event.token, &event.text) {
                    send(phase, chunk);
                }
            },
            cancel,
        );
        if let Some(chunk) = chunks.flush() {
            send(phase, chunk);
        }
        output.map_err(engine_status)
    };
    let cancelled = || Status::cancelled("generation cancelled");
    let decode = |ids: &[u32]| model.tokenizer().decode(ids, true).map_err(engine_status);
    let resume = &job.resume;
    let mut session = node.session()?;
    session
        .extend_cancellable(&job.prompt, cancel)
        .map_err(engine_status)?;

    let mut thinking: Option<Thinking> = None;
    let mut thinking_ms = 0.0;
    if let Some(cap) = job.thinking_cap {
        if !resume.thinking.is_empty() {
            session
                .extend_cancellable(&resume.thinking, cancel)
                .map_err(engine_status)?;
        }
        let resumed_text = decode(&resume.thinking)?;
        let (_, resumed_closed) = before_marker(&resumed_text, &job.think_end);
        let done = resume.answer_started || resumed_closed;
        let output = if done {
            None
        } else {
            let stop = StopCriteria {
                max_new_tokens: cap.saturating_sub(resume.thinking.len()),
                stop_strings: vec![job.think_end.clone()],
                stop_at_eos: true,
            };
            let output = generate_phase(&mut session, &stop, GeneratePhase::Thinking)?;
            if output.finish_reason == EngineFinish::Cancelled {
                return Err(cancelled());
            }
            Some(output)
        };
        let text = format!(
            "{resumed_text}{}",
            output.as_ref().map_or("", |o| o.text.as_str())
        );
        let (text, marker_written) = before_marker(&text, &job.think_end);
        let close = if marker_written {
            &job.close_written
        } else {
            &job.close_missing
        };
        session.extend(close).map_err(engine_status)?;
        thinking_ms = started.elapsed().as_secs_f64() * 1000.0;
        thinking = Some(Thinking {
            text: text.trim().to_string(),
            tokens: resume.thinking.len() + output.as_ref().map_or(0, |o| o.tokens.len()),
            finish: match &output {
                Some(output) => output.finish_reason.clone(),
                None if marker_written => EngineFinish::StopString(job.think_end.clone()),
                None => EngineFinish::Length,
            },
        });
    }

    let answer_started = Instant::now();
    if !job.answer_start.is_empty() && !resume.answer_started {
        tx.send(Ok(GenerateEvent {
            event: Some(Event::Token(GenerateToken {
                text: job.answer_start.clone(),
                phase: GeneratePhase::Answer as i32,
                token_ids: Vec::new(),
            })),
        }));
    }
    if !resume.answer.is_empty() {
        session
            .extend_cancellable(&resume.answer, cancel)
            .map_err(engine_status)?;
    }
    let room = session.context_limit().saturating_sub(session.len());
    let left = job.answer_cap.saturating_sub(resume.answer.len());
    let stop = StopCriteria {
        // A fresh answer writes at least one token; a resumed one may already be complete.
        max_new_tokens: if resume.answer_started {
            left.min(room)
        } else {
            left.min(room).max(1)
        },
        stop_strings: Vec::new(),
        stop_at_eos: true,
    };
    let answer = generate_phase(&mut session, &stop, GeneratePhase::Answer)?;
    if answer.finish_reason == EngineFinish::Cancelled {
        return Err(cancelled());
    }
    let speculation = session.speculation().unwrap_or_default();
    record_speculation(&speculation);
    let answer_ms = if thinking.is_some() {
        answer_started.elapsed().as_secs_f64() * 1000.0
    } else {
        started.elapsed().as_secs_f64() * 1000.0
    };
    let result = GenerateResult {
        thinking: thinking
            .as_ref()
            .map(|t| t.text.clone())
            .unwrap_or_default(),
        answer: format!(
            "{}{}{}",
            job.answer_start,
            decode(&resume.answer)?,
            answer.text
        )
        .trim()
        .to_string(),
        prompt_tokens: job.prompt.len() as u32,
        thinking_tokens: thinking.as_ref().map_or(0, |t| t.tokens as u32),
        answer_tokens: (resume.answer.len() + answer.tokens.len()) as u32,
        thinking_ms,
        answer_ms,
        thinking_finish: thinking
            .as_ref()
            .map_or(FinishReason::Unspecified, |t| finish_reason(&t.finish))
            as i32,
        answer_finish: finish_reason(&answer.finish_reason) as i32,
        model: model.info().name.clone(),
        speculative_proposed_tokens: speculation.proposed as u32,
        speculative_accepted_tokens: speculation.accepted as u32,
    };
    tx.send(Ok(GenerateEvent {
        event: Some(Event::Result(result)),
    }));
    Ok(())
}

/// The thinking phase's outcome, resumed part included.
struct Thinking {
    text: String,
    tokens: usize,
    finish: EngineFinish,
}
