//! `scot collect alignment`: the target's chains of thought, for the draft to learn to think like
//! the target (the paper's thinking-behaviour alignment), through a running target and draft node.
//!
//! For each problem of a window of a data set: the target thinks from scratch and answers (greedy,
//! as it serves), its answer is graded against the gold one, and the draft prompt is rendered by
//! the draft node exactly as it drafts from (a render-only Draft: nothing decoded). One
//! [`AlignmentExample`] line per problem, appended, so a rerun resumes.

use std::path::PathBuf;

use futures::StreamExt;
use scot_answers::{answers_equal, extract_answer};
use scot_proto::draft_event::Event as DraftEventKind;
use scot_proto::generate_event::Event as GenerateEventKind;
use scot_proto::paper_defaults::{ANSWER_MAX_TOKENS, THINKING_MAX_TOKENS};
use scot_proto::{DraftPrompt, DraftRequest, FinishReason, GenerateRequest, GenerateResult};
use scot_selection::{read_alignment_examples, AlignmentExample};
use serde::Serialize;

use crate::dataset::{load_problems, select_window, Problem};
use crate::error::EvalError;
use crate::node_calls::{draft_client, target_client};
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
    /// End-of-thinking marker (empty = `</think>`).
    #[arg(long, default_value = "")]
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
        let prompt = render_draft_prompt(&mut draft, &args, &problem).await?;
        let result = think(&mut target, &args, &problem).await?;
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
            think_end: if args.think_end.is_empty() {
                scot_proto::limits::DEFAULT_THINK_END.to_string()
            } else {
                args.think_end.clone()
            },
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

async fn render_draft_prompt(
    client: &mut scot_proto::draft_service_client::DraftServiceClient<tonic::transport::Channel>,
    args: &CollectAlignmentArgs,
    problem: &Problem,
) -> Result<DraftPrompt, EvalError> {
    let refused = |s: tonic::Status| {
        EvalError::InvalidArgument(format!(
            "the draft node refused to render problem {}: {:?}: {}",
            problem.id,
            s.code(),
            s.message()
        ))
    };
    let request = DraftRequest {
        request_id: format!("collect-align-render-{}", problem.id),
        problem: problem.problem.clone(),
        draft_indices: vec![0],
        max_tokens: 1,
        template: args.template.clone(),
        think_end: args.think_end.clone(),
        render_only: true,
        ..Default::default()
    };
    let mut stream = client.draft(request).await.map_err(refused)?.into_inner();
    while let Some(event) = stream.next().await {
        if let Some(DraftEventKind::Prompt(prompt)) = event.map_err(refused)?.event {
            return Ok(prompt);
        }
    }
    Err(EvalError::InvalidArgument(format!(
        "the draft node rendered no prompt for problem {} (is it older than render-only calls?)",
        problem.id
    )))
}

/// The target thinking from scratch, then answering: greedy, as it serves a rejected request.
async fn think(
    client: &mut scot_proto::target_service_client::TargetServiceClient<tonic::transport::Channel>,
    args: &CollectAlignmentArgs,
    problem: &Problem,
) -> Result<GenerateResult, EvalError> {
    let refused = |s: tonic::Status| {
        EvalError::InvalidArgument(format!(
            "the target node failed on problem {}: {:?}: {}",
            problem.id,
            s.code(),
            s.message()
        ))
    };
    let request = GenerateRequest {
        request_id: format!("collect-align-{}", problem.id),
        problem: problem.problem.clone(),
        accepted_draft: None,
        max_thinking_tokens: args.thinking_max_tokens,
        max_answer_tokens: args.answer_max_tokens,
        temperature: 0.0,
        template: args.template.clone(),
        think_end: args.think_end.clone(),
        ..Default::default()
    };
    let mut stream = client
        .generate(request)
        .await
        .map_err(refused)?
        .into_inner();
    while let Some(event) = stream.next().await {
        if let Some(GenerateEventKind::Result(result)) = event.map_err(refused)?.event {
            return Ok(result);
        }
    }
    Err(EvalError::InvalidArgument(format!(
        "the target node's stream for problem {} ended without a result",
        problem.id
    )))
}
