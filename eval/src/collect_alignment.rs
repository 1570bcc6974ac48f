//! `scot collect alignment`: the target's chains of thought, for the draft to learn to think like
//! the target (the paper's thinking-behaviour alignment), through a running target and draft node.
//!
//! For each problem of a window of a data set: the target thinks from scratch and answers (greedy,
//! as it serves), its answer is graded against the gold one, and the draft prompt is rendered by
//! the draft node exactly as it drafts from (a render-only Draft: nothing decoded). One
//! [`AlignmentExample`] line per problem, appended, so a rerun resumes.

use std::path::PathBuf;

use scot_answers::{answers_equal, extract_answer};
use scot_proto::limits::DEFAULT_THINK_END;
use scot_proto::paper_defaults::{ANSWER_MAX_TOKENS, THINKING_MAX_TOKENS};
use scot_proto::{DraftRequest, FinishReason, GenerateRequest};
use scot_selection::{read_alignment_examples, AlignmentExample};
use serde::Serialize;

use crate::dataset::{load_problems, select_window};
use crate::error::EvalError;
use crate::node_calls::{draft_client, render_draft_prompt, target_client, think_from_scratch};
use crate::training_file::TrainingFile;

/// Collect alignment data (see README, Training).
#[derive(Debug, Clone, clap::Args)]
pub struct CollectAlignmentArgs {
    /// The target node's gRPC endpoint: it writes the chains.
    #[arg(long)]
    pub target_node: String,
    /// The draft node's gRPC endpoint: it renders the draft prompts (nothing is decoded).
    #[arg(long)]
    pub draft_node: String,
    /// JSONL data set. Train on problems the evaluation does not use (GSM8K 500-999: --offset 500).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Problems (at most).
    #[arg(long)]
    pub limit: Option<usize>,
    /// The target's thinking cap (tokens).
    #[arg(long, default_value_t = THINKING_MAX_TOKENS)]
    pub thinking_max_tokens: u32,
    /// The target's answer cap (tokens).
    #[arg(long, default_value_t = ANSWER_MAX_TOKENS)]
    pub answer_max_tokens: u32,
    /// Template set (empty = the nodes' default).
    #[arg(long, default_value = "")]
    pub template: String,
    /// End-of-thinking marker the target closes its thinking with and the draft learns to write.
    #[arg(long, default_value = DEFAULT_THINK_END)]
    pub think_end: String,
    /// The alignment data file: appended to; problems already in it are skipped.
    #[arg(long)]
    pub out: PathBuf,
    /// mTLS towards the nodes.
    #[command(flatten)]
    pub tls: scot_tls::TlsArgs,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectAlignmentSummary {
    pub out: PathBuf,
    /// Lines written by this run.
    pub written: usize,
    /// Problems already in the file.
    pub already_there: usize,
    /// Of the lines written: the target answered right, and ended its thinking itself.
    pub correct: usize,
    pub chains_ended: usize,
    pub chain_tokens: u64,
}

pub async fn run_collect_alignment(
    args: CollectAlignmentArgs,
) -> Result<CollectAlignmentSummary, EvalError> {
    let mut summary = CollectAlignmentSummary {
        out: args.out.clone(),
        ..Default::default()
    };
    let mut out = TrainingFile::open(&args.out, read_alignment_examples, |e| e.id)?;
    let mut target = target_client(&args.target_node, &args.tls).await?;
    let mut draft = draft_client(&args.draft_node, &args.tls).await?;
    let problems = select_window(load_problems(&args.data)?, args.offset, args.limit);
    for problem in problems {
        if out.done.contains(&problem.id) {
            summary.already_there += 1;
            continue;
        }
        let prompt = render_draft_prompt(
            &mut draft,
            &problem.id,
            DraftRequest {
                request_id: format!("collect-align-render-{}", problem.id),
                problem: problem.problem.clone(),
                draft_indices: vec![0],
                max_tokens: 1,
                template: args.template.clone(),
                think_end: args.think_end.clone(),
                render_only: true,
                ..Default::default()
            },
        )
        .await?;
        // Greedy from scratch, as the target serves a request whose drafts it rejected.
        let result = think_from_scratch(
            &mut target,
            &problem.id,
            GenerateRequest {
                request_id: format!("collect-align-{}", problem.id),
                problem: problem.problem.clone(),
                accepted_draft: None,
                max_thinking_tokens: args.thinking_max_tokens,
                max_answer_tokens: args.answer_max_tokens,
                temperature: 0.0,
                template: args.template.clone(),
                think_end: args.think_end.clone(),
                ..Default::default()
            },
        )
        .await?;
        let correct =
            extract_answer(&result.answer).is_some_and(|a| answers_equal(&a, &problem.answer));
        let chain_ended = FinishReason::try_from(result.thinking_finish)
            .unwrap_or_default()
            .ended_on_its_own();
        let example = AlignmentExample {
            id: problem.id,
            problem: problem.problem,
            gold: problem.answer,
            chain: result.thinking.trim_end().to_string(),
            chain_ended,
            think_end: args.think_end.clone(),
            answer: result.answer,
            correct,
            target_model: result.model,
            prompt_text: prompt.text,
            prompt_token_ids: prompt.token_ids,
            model_fingerprint: prompt.model_fingerprint,
            template_set: prompt.template_set,
        };
        if let Err(reason) = example.check() {
            // A target that wrote no thinking has nothing to teach; the problem is left out.
            tracing::warn!(id = %example.id, %reason, "problem left out");
            continue;
        }
        out.append(&example.id, &example)?;
        summary.written += 1;
        summary.correct += usize::from(correct);
        summary.chains_ended += usize::from(chain_ended);
        summary.chain_tokens += u64::from(result.thinking_tokens);
        tracing::info!(id = %example.id, correct, chain_ended, tokens = result.thinking_tokens, "alignment example written");
    }
    Ok(summary)
}
