//! One Draft call as an engine job: check the request, build and tokenize the draft prompt, decode the
//! drafts as one batch and report progress, each draft and a summary.

use std::time::Instant;

use scot_engine::{BatchEvent, CancelToken, Model, SamplingParams, StopCriteria};
use scot_node_support::{
    engine_status, finish_reason, template_status, JobSender, KvNeed, NodeModel,
};
use scot_proto::draft_event::Event;
use scot_proto::request_checks::check_draft_request;
use scot_proto::{Draft, DraftEvent, DraftProgress, DraftPrompt, DraftRequest, DraftSummary};
use tonic::Status;

/// A progress message goes out every this many tokens of a draft.
pub const PROGRESS_EVERY: usize = 16;

/// A checked Draft call, ready for the engine.
#[derive(Debug, Clone)]
pub struct DraftJob {
    pub indices: Vec<u32>,
    pub prompt: Vec<u32>,
    pub sampling: Vec<SamplingParams>,
    pub stop: StopCriteria,
    /// The rendered prompt and its template set (render-only calls return them).
    pub prompt_text: String,
    pub template_set: String,
}

impl DraftJob {
    /// One sequence per draft (the last takes the prefilled prompt itself), each up to prompt + cap.
    pub fn kv_need(&self) -> KvNeed {
        KvNeed {
            sequences: self.indices.len(),
            positions: self.prompt.len() + self.stop.max_new_tokens,
        }
    }
}

/// Draft i samples with seed + i, so a draft does not depend on which node writes it.
pub fn sampling_for(request: &DraftRequest) -> Vec<SamplingParams> {
    let top_p = if request.top_p <= 0.0 {
        1.0
    } else {
        request.top_p
    };
    request
        .draft_indices
        .iter()
        .map(|&index| SamplingParams {
            temperature: request.temperature,
            top_p,
            top_k: request.top_k as usize,
            seed: request.seed.wrapping_add(u64::from(index)),
        })
        .collect()
}

/// Checks the request and builds the job (prompt from the template set, tokenized, fitted to the
/// model's context).
pub fn prepare(node: &NodeModel, request: &DraftRequest) -> Result<DraftJob, Status> {
    check_draft_request(request)?;
    let prompts = node.prompts(&request.template, &request.think_end)?;
    let text = prompts
        .layout()
        .draft_prompt(&request.problem)
        .map_err(template_status)?;
    let prompt = prompts.fit(&text, 1, |tokens, context| {
        format!(
            "the problem is too long for the draft model: the prompt is {tokens} tokens and the context is {context}; shorten the problem"
        )
    })?;
    let max_new_tokens = (request.max_tokens as usize).min(prompt.room);
    let stop_strings = if request.include_answer {
        Vec::new()
    } else {
        vec![prompts.markers().end.clone()]
    };
    Ok(DraftJob {
        indices: request.draft_indices.clone(),
        prompt: prompt.tokens,
        sampling: sampling_for(request),
        stop: StopCriteria {
            max_new_tokens,
            stop_strings,
            stop_at_eos: true,
        },
        prompt_text: text.text().to_string(),
        template_set: prompts.set().name().to_string(),
    })
}

/// The answer to a render-only call: the prompt as rendered and tokenized, nothing decoded.
pub fn rendered(job: DraftJob, model_fingerprint: &str) -> DraftEvent {
    DraftEvent {
        event: Some(Event::Prompt(DraftPrompt {
            text: job.prompt_text,
            token_ids: job.prompt,
            model_fingerprint: model_fingerprint.to_string(),
            template_set: job.template_set,
        })),
    }
}

/// Decodes the drafts as one batch, streaming progress, drafts and the summary.
pub fn run(
    model: &Model,
    job: DraftJob,
    cancel: &CancelToken,
    tx: &JobSender<DraftEvent>,
) -> Result<(), Status> {
    let started = Instant::now();
    let mut prefill_ms = 0.0;
    let send = |event: Event| {
        tx.send(Ok(DraftEvent { event: Some(event) }));
    };
    let indices = job.indices.clone();
    let mut on_event = |event: BatchEvent| match event {
        BatchEvent::Prefilled { elapsed, .. } => prefill_ms = elapsed.as_secs_f64() * 1000.0,
        BatchEvent::Token { seq, event } => {
            if (event.index + 1) % PROGRESS_EVERY == 0 {
                if let Some(&index) = indices.get(seq) {
                    send(Event::Progress(DraftProgress {
                        index,
                        tokens: (event.index + 1) as u32,
                    }));
                }
            }
        }
        BatchEvent::Finished { seq, output } => {
            if let Some(&index) = indices.get(seq) {
                send(Event::Draft(Draft {
                    index,
                    text: output.text.trim_end().to_string(),
                    token_count: output.tokens.len() as u32,
                    finish_reason: finish_reason(&output.finish_reason) as i32,
                    elapsed_ms: output.elapsed.as_secs_f64() * 1000.0,
                }));
            }
        }
    };
    model
        .generate_batch(&job.prompt, &job.sampling, &job.stop, &mut on_event, cancel)
        .map_err(engine_status)?;
    send(Event::Summary(DraftSummary {
        model: model.info().name.clone(),
        prompt_tokens: job.prompt.len() as u32,
        prefill_ms,
        total_ms: started.elapsed().as_secs_f64() * 1000.0,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> DraftRequest {
        DraftRequest {
            request_id: "r".into(),
            problem: "What is 2+2?".into(),
            draft_indices: vec![0, 3],
            temperature: 0.6,
            top_p: 0.0,
            top_k: 0,
            max_tokens: 100,
            seed: 10,
            template: String::new(),
            think_end: String::new(),
            include_answer: false,
            render_only: false,
        }
    }

    #[test]
    fn draft_i_uses_seed_plus_i() {
        let sampling = sampling_for(&request());
        assert_eq!(sampling.len(), 2);
        assert_eq!(sampling[0].seed, 10);
        assert_eq!(sampling[1].seed, 13);
        assert_eq!(sampling[0].top_p, 1.0, "unset top_p means off");
    }
}
