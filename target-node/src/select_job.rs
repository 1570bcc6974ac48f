//! Select as an engine job: one prefill of the selection prompt per cyclic order of the drafts (one by
//! default), the option numbers' scores read from each, averaged per draft, and divided by the
//! target's position prior where the node has one for this number of drafts.

use std::sync::Arc;
use std::time::Instant;

use scot_engine::{CancelToken, Model, Session};
use scot_node_support::{engine_status, template_status, KvNeed, NodeModel};
use scot_proto::request_checks::check_select_request;
use scot_proto::{SelectRequest, SelectResponse};
use scot_selection::{rotate, SelectionPrior};
use tonic::Status;

use crate::selection::{option_labels, score_options, OptionScorer};
use crate::selection_prior::{prompt_digest, SelectionPriors};

/// The prompt of one cyclic order: position i shows draft (i + shift) mod n.
pub struct Ordering {
    pub shift: usize,
    pub prompt: Vec<u32>,
    /// The rendered text (the order given only; kept for render-only requests).
    pub text: String,
}

pub struct SelectJob {
    /// The first is the order given.
    pub orders: Vec<Ordering>,
    /// Token sequence of each option number 1..=drafts+1.
    pub options: Vec<Vec<u32>>,
    pub prior: Option<Arc<SelectionPrior>>,
    pub model_fingerprint: String,
    pub prompt_digest: String,
    pub template_set: String,
}

impl SelectJob {
    /// Orders run one after another; each holds its prompt and, where an option is more than one token
    /// (10+ options), a fork of it while the later tokens are scored.
    pub fn kv_need(&self) -> KvNeed {
        let longest_option = self.options.iter().map(Vec::len).max().unwrap_or(0);
        KvNeed {
            sequences: if longest_option > 1 { 2 } else { 1 },
            positions: self
                .orders
                .iter()
                .map(|o| o.prompt.len())
                .max()
                .unwrap_or(0)
                + longest_option,
        }
    }
}

/// The cyclic shifts of `k` orders of n drafts, evenly spaced (k = n: every order once).
pub fn shifts(n: usize, k: usize) -> Vec<usize> {
    let k = k.clamp(1, n.max(1));
    (0..k).map(|j| j * n / k).collect()
}

pub fn prepare(
    node: &NodeModel,
    priors: &SelectionPriors,
    request: &SelectRequest,
) -> Result<SelectJob, Status> {
    check_select_request(request)?;
    let n = request.drafts.len();
    // The selection prompt opens no thinking, so Select carries no end marker.
    let prompts = node.prompts(&request.template, "")?;
    let mut orders = Vec::new();
    for shift in shifts(n, request.permutations as usize) {
        let text = prompts
            .layout()
            .select_prompt(&request.problem, &rotate(&request.drafts, shift))
            .map_err(template_status)?;
        let prompt = prompts.fit(&text, 2, |tokens, context| {
            format!(
                "the selection prompt is {tokens} tokens but the target's context is {context}: shorten the problem or the drafts (fewer drafts, lower draft_max_tokens)"
            )
        })?;
        orders.push(Ordering {
            shift,
            prompt: prompt.tokens,
            text: if shift == 0 {
                text.text().to_string()
            } else {
                String::new()
            },
        });
    }
    let mut options = Vec::new();
    for label in option_labels(n + 1) {
        let tokens = prompts.encode(&label)?;
        if tokens.is_empty() {
            return Err(Status::internal(format!(
                "the tokenizer encodes option {label} to no tokens"
            )));
        }
        options.push(tokens);
    }
    let set = prompts.set().name();
    Ok(SelectJob {
        orders,
        options,
        prior: priors.get(set, n),
        model_fingerprint: node.fingerprint.clone(),
        prompt_digest: prompt_digest(&prompts, n)?,
        template_set: set.to_string(),
    })
}

/// The response to a render-only request: the prompt as rendered and tokenized, nothing scored.
/// Options of several tokens (10+ drafts) cannot be one token each, so they are refused.
pub fn rendered(job: SelectJob) -> Result<SelectResponse, Status> {
    let mut option_token_ids = Vec::with_capacity(job.options.len());
    for (i, tokens) in job.options.iter().enumerate() {
        match tokens.as_slice() {
            [one] => option_token_ids.push(*one),
            _ => {
                return Err(Status::invalid_argument(format!(
                "option {} is {} tokens; render_only needs one token per option (at most 8 drafts)",
                i + 1,
                tokens.len()
            )))
            }
        }
    }
    let first = job
        .orders
        .into_iter()
        .next()
        .ok_or_else(|| Status::internal("no selection prompt rendered"))?;
    Ok(SelectResponse {
        prompt_tokens: first.prompt.len() as u32,
        prompt_text: first.text,
        prompt_token_ids: first.prompt,
        option_token_ids,
        model_fingerprint: job.model_fingerprint,
        prompt_digest: job.prompt_digest,
        template_set: job.template_set,
        ..Default::default()
    })
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

/// Scores every order of the drafts; `cancel` is checked before each order's prefill (a single prefill
/// itself runs to its end).
pub fn run(model: &Model, job: SelectJob, cancel: &CancelToken) -> Result<SelectResponse, Status> {
    let started = Instant::now();
    let n = job.options.len() - 1;
    let k = job.orders.len() as f32;
    let mut probs = vec![0.0f32; n + 1];
    let mut debiased = job.prior.as_ref().map(|_| vec![0.0f32; n + 1]);
    let mut logprobs = Vec::new();
    let mut prompt_tokens = 0;
    for order in &job.orders {
        if cancel.is_cancelled() {
            return Err(Status::cancelled("selection cancelled"));
        }
        let mut root = model.session().map_err(engine_status)?;
        root.extend_cancellable(&order.prompt, cancel)
            .map_err(engine_status)?;
        let mut scorer = SessionScorer { root };
        let scores = score_options(&job.options, &mut scorer).map_err(engine_status)?;
        if order.shift == 0 {
            logprobs = scores.logprobs.clone();
        }
        prompt_tokens += order.prompt.len();
        let shown_debiased = job.prior.as_ref().and_then(|p| p.debias(&scores.probs));
        // Position i showed draft (i + shift) mod n; "all wrong" stays last.
        for i in 0..=n {
            let option = if i == n { n } else { (i + order.shift) % n };
            probs[option] += scores.probs[i] / k;
            if let (Some(out), Some(shown)) = (debiased.as_mut(), shown_debiased.as_ref()) {
                out[option] += shown[i] / k;
            }
        }
    }
    let chosen = (0..probs.len())
        .reduce(|a, b| if probs[b] > probs[a] { b } else { a })
        .unwrap_or(0) as u32
        + 1;
    Ok(SelectResponse {
        chosen,
        none_correct: chosen as usize == n + 1,
        option_probs: probs,
        option_logprobs: logprobs,
        prompt_tokens: prompt_tokens as u32,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        debiased_probs: debiased.unwrap_or_default(),
        model_fingerprint: job.model_fingerprint,
        prompt_digest: job.prompt_digest,
        template_set: job.template_set,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_spread_evenly_and_capped_at_n() {
        assert_eq!(shifts(5, 1), vec![0]);
        assert_eq!(shifts(5, 0), vec![0]);
        assert_eq!(shifts(5, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(shifts(6, 3), vec![0, 2, 4]);
        assert_eq!(shifts(3, 9), vec![0, 1, 2]);
    }
}
