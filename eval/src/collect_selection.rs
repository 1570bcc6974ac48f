//! `scot collect selection`: selection training data through a running draft and target node.
//!
//! For each problem: n drafts (written by the draft node for a window of a data set, or read from
//! stored `scot eval` result lines), each draft's answer graded against the gold answer, and the
//! selection prompt exactly as the target node renders and tokenizes it (a render-only Select:
//! nothing is scored). One [`SelectionExample`] line per problem, appended, so a rerun resumes.

use std::path::PathBuf;

use scot_answers::answers_equal;
use scot_client::Mode;
use scot_proto::{FinishReason, SelectRequest};
use scot_selection::{draft_answer, read_examples, SelectionExample, TrainingDraft};
use serde::Serialize;

use crate::dataset::{load_problems, select_window};
use crate::error::EvalError;
use crate::node_calls::{draft_client, refusal, target_client, write_drafts, DraftSettings};
use crate::results::read_lines;
use crate::training_file::TrainingFile;

/// Collect selection training data (see README, Training).
#[derive(Debug, Clone, clap::Args)]
pub struct CollectSelectionArgs {
    /// The target node's gRPC endpoint: it renders the selection prompts (nothing is scored).
    #[arg(long)]
    pub target_node: String,
    /// A draft node's gRPC endpoint that writes n drafts for each problem of --data.
    #[arg(long, requires = "data", conflicts_with = "from_results")]
    pub draft_node: Option<String>,
    /// JSONL data set for --draft-node. Train on problems the evaluation does not use (GSM8K
    /// 500-999, as the paper did: --offset 500).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Or: `scot eval` result files (scot mode) whose lines keep n drafts with their texts, e.g. to
    /// measure a trained selector on the evaluation's own drafts.
    #[arg(long, num_args = 1..)]
    pub from_results: Vec<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Problems (at most).
    #[arg(long)]
    pub limit: Option<usize>,
    /// --n at most 8: each option must be one token.
    #[command(flatten)]
    pub drafting: DraftSettings,
    /// The selection data file: appended to; problems already in it are skipped.
    #[arg(long)]
    pub out: PathBuf,
    /// mTLS towards the nodes.
    #[command(flatten)]
    pub tls: scot_tls::TlsArgs,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectSummary {
    pub out: PathBuf,
    /// Lines written by this run.
    pub written: usize,
    /// Problems already in the file.
    pub already_there: usize,
    /// Problems without n drafts.
    pub incomplete: usize,
    /// Of the lines written: with at least one correct draft, and how many drafts were correct.
    pub with_a_correct_draft: usize,
    pub correct_drafts: usize,
    pub drafts: usize,
}

/// A problem with its drafts, before grading.
struct Drafted {
    id: String,
    problem: String,
    gold: String,
    /// (text, ended on its own)
    drafts: Vec<(String, bool)>,
}

pub async fn run_collect_selection(
    args: CollectSelectionArgs,
) -> Result<CollectSummary, EvalError> {
    if !(1..=8).contains(&args.drafting.n) {
        return Err(EvalError::InvalidArgument(
            "--n must be 1..=8: each option must be a single token".into(),
        ));
    }
    if args.draft_node.is_none() && args.from_results.is_empty() {
        return Err(EvalError::InvalidArgument(
            "pass --draft-node with --data, or --from-results".into(),
        ));
    }
    let mut summary = CollectSummary {
        out: args.out.clone(),
        ..Default::default()
    };
    let mut out = TrainingFile::open(&args.out, read_examples, |e| e.id)?;
    let done = out.done.clone();
    let mut target = target_client(&args.target_node, &args.tls).await?;
    let n = args.drafting.n as usize;
    let handle = |drafted: Drafted, summary: &mut CollectSummary| -> Option<Drafted> {
        if done.contains(&drafted.id) {
            summary.already_there += 1;
            return None;
        }
        if drafted.drafts.len() != n {
            summary.incomplete += 1;
            return None;
        }
        Some(drafted)
    };
    let pending: Vec<Drafted> = if let Some(endpoint) = &args.draft_node {
        // Drafting is the expensive part: draft each problem only when it is not done yet.
        let data = args.data.clone().unwrap_or_default();
        let problems = select_window(load_problems(&data)?, args.offset, args.limit);
        let mut client = draft_client(endpoint, &args.tls).await?;
        for problem in problems {
            if done.contains(&problem.id) {
                summary.already_there += 1;
                continue;
            }
            let request = args
                .drafting
                .request(format!("collect-{}", problem.id), &problem.problem);
            let drafts = write_drafts(&mut client, request).await?;
            let drafted = Drafted {
                id: problem.id,
                problem: problem.problem,
                gold: problem.answer,
                drafts: drafts
                    .into_iter()
                    .map(|d| {
                        let finish = FinishReason::try_from(d.finish_reason).unwrap_or_default();
                        (d.text, finish.ended_on_its_own())
                    })
                    .collect(),
            };
            if let Some(drafted) = handle(drafted, &mut summary) {
                let example = render(&mut target, &args, drafted).await?;
                append(&mut out, &example, &mut summary)?;
            }
        }
        Vec::new()
    } else {
        stored(&args)?
            .into_iter()
            .filter_map(|d| handle(d, &mut summary))
            .collect()
    };
    for drafted in pending {
        let example = render(&mut target, &args, drafted).await?;
        append(&mut out, &example, &mut summary)?;
    }
    Ok(summary)
}

/// Scot-mode lines with n offered drafts with text, in the window.
fn stored(args: &CollectSelectionArgs) -> Result<Vec<Drafted>, EvalError> {
    let mut all = Vec::new();
    for path in &args.from_results {
        for line in read_lines(path)? {
            if !line.is_mode(Mode::Scot) || !line.succeeded() || line.problem.is_empty() {
                continue;
            }
            all.push(Drafted {
                id: line.id.clone(),
                problem: line.problem.clone(),
                gold: line.gold.clone(),
                drafts: line
                    .drafts
                    .iter()
                    .filter(|d| d.offered && !d.text.is_empty())
                    .map(|d| (d.text.clone(), d.ended_on_its_own()))
                    .collect(),
            });
        }
    }
    Ok(all
        .into_iter()
        .skip(args.offset)
        .take(args.limit.unwrap_or(usize::MAX))
        .collect())
}

async fn render(
    target: &mut scot_proto::target_service_client::TargetServiceClient<tonic::transport::Channel>,
    args: &CollectSelectionArgs,
    drafted: Drafted,
) -> Result<SelectionExample, EvalError> {
    let drafts: Vec<TrainingDraft> = drafted
        .drafts
        .into_iter()
        .map(|(text, ended)| {
            let answer = draft_answer(&text, ended);
            let correct = answer
                .as_deref()
                .is_some_and(|a| answers_equal(a, &drafted.gold));
            TrainingDraft {
                text,
                answer,
                correct,
            }
        })
        .collect();
    let response = target
        .select(SelectRequest {
            request_id: format!("collect-select-{}", drafted.id),
            problem: drafted.problem.clone(),
            drafts: drafts.iter().map(|d| d.text.clone()).collect(),
            template: args.drafting.template.clone(),
            permutations: 0,
            render_only: true,
        })
        .await
        .map_err(refusal(format!(
            "the target node refused to render problem {}",
            drafted.id
        )))?
        .into_inner();
    let example = SelectionExample {
        id: drafted.id,
        problem: drafted.problem,
        gold: drafted.gold,
        labels: SelectionExample::labels_for(&drafts),
        drafts,
        prompt_text: response.prompt_text,
        prompt_token_ids: response.prompt_token_ids,
        option_token_ids: response.option_token_ids,
        model_fingerprint: response.model_fingerprint,
        template_set: response.template_set,
        prompt_digest: response.prompt_digest,
    };
    example
        .check()
        .map_err(|e| EvalError::InvalidArgument(format!("{}: {e}", example.id)))?;
    Ok(example)
}

fn append(
    out: &mut TrainingFile,
    example: &SelectionExample,
    summary: &mut CollectSummary,
) -> Result<(), EvalError> {
    out.append(&example.id, example)?;
    let correct = example.drafts.iter().filter(|d| d.correct).count();
    summary.written += 1;
    summary.drafts += example.drafts.len();
    summary.correct_drafts += correct;
    summary.with_a_correct_draft += usize::from(correct > 0);
    tracing::info!(id = %example.id, correct, labels = ?example.labels, "selection example written");
    Ok(())
}
