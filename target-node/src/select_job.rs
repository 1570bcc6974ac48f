//! Select as an engine job: one prefill of the selection prompt, then the option numbers' scores.

use std::time::Instant;

use scot_engine::{Model, Session};
use scot_node_support::{engine_status, status::template_status, EngineChat, NodeModel};
use scot_proto::{SelectRequest, SelectResponse};
use scot_templates::{Prompts, ThinkMarkers};
use tonic::Status;

use crate::selection::{option_labels, score_options, OptionScorer};

/// Most drafts one selection may weigh (options = drafts + 1).
pub const MAX_SELECT_DRAFTS: usize = 64;

pub struct SelectJob {
    pub prompt: Vec<u32>,
    /// Token sequence of each option number 1..=drafts+1.
    pub options: Vec<Vec<u32>>,
}

pub fn prepare(node: &NodeModel, request: &SelectRequest) -> Result<SelectJob, Status> {
    if request.problem.trim().is_empty() {
        return Err(Status::invalid_argument("problem is empty"));
    }
    if request.drafts.is_empty() || request.drafts.len() > MAX_SELECT_DRAFTS {
        return Err(Status::invalid_argument(format!(
            "drafts must hold 1 to {MAX_SELECT_DRAFTS} drafts, got {}",
            request.drafts.len()
        )));
    }
    let set = node
        .templates
        .get(&request.template)
        .map_err(template_status)?;
    let chat = EngineChat::new(&node.model);
    let prompts = Prompts::new(&set, &chat, node.native_thinking, ThinkMarkers::default());
    let text = prompts
        .select_prompt(&request.problem, &request.drafts)
        .map_err(template_status)?;
    let tokenizer = node.model.tokenizer();
    let prompt = tokenizer.encode(&text, false).map_err(engine_status)?;
    let context = node.model.info().context_length;
    if prompt.len() + 2 > context {
        return Err(Status::invalid_argument(format!(
            "the selection prompt is {} tokens but the target's context is {context}: shorten the problem or the drafts (fewer drafts, lower draft_max_tokens)",
            prompt.len()
        )));
    }
    let mut options = Vec::new();
    for label in option_labels(request.drafts.len() + 1) {
        let tokens = tokenizer.encode(&label, false).map_err(engine_status)?;
        if tokens.is_empty() {
            return Err(Status::internal(format!(
                "the tokenizer encodes option {label} to no tokens"
            )));
        }
        options.push(tokens);
    }
    Ok(SelectJob { prompt, options })
}

/// The prefilled selection prompt; forks for options that extend others.
struct SessionScorer<'m> {
    root: Session<'m>,
}

impl OptionScorer for SessionScorer<'_> {
    type Error = scot_engine::EngineError;

    fn logprobs_after(
        &mut self,
        prefix: &[u32],
        candidates: &[u32],
    ) -> Result<Vec<f32>, Self::Error> {
        if prefix.is_empty() {
            return self.root.logprobs_of(candidates);
        }
        let mut fork = self.root.fork()?;
        fork.extend(prefix)?;
        fork.logprobs_of(candidates)
    }
}

pub fn run(model: &Model, job: SelectJob) -> Result<SelectResponse, Status> {
    let started = Instant::now();
    let mut root = model.session().map_err(engine_status)?;
    root.extend(&job.prompt).map_err(engine_status)?;
    let mut scorer = SessionScorer { root };
    let scores = score_options(&job.options, &mut scorer).map_err(engine_status)?;
    let none_option = job.options.len() as u32;
    Ok(SelectResponse {
        chosen: scores.chosen,
        none_correct: scores.chosen == none_option,
        option_probs: scores.probs,
        option_logprobs: scores.logprobs,
        prompt_tokens: job.prompt.len() as u32,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}
