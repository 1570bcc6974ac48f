//! `scot calibrate`: the target's prior over option positions for one (model, template set, n), made
//! by scoring the same drafts in every cyclic order on calibration problems (PriDe), written as the
//! file the target node loads with `--selection-prior`.
//!
//! Drafts come from `scot eval` result lines (`--drafts`, scot mode: lines keep each draft's text) or
//! are written by a draft node for a window of a data set (`--draft-node`, `--data`). Every problem
//! costs n selection prefills on the target node.

use std::path::PathBuf;

use scot_client::Mode;
use scot_proto::{SelectRequest, SelectResponse};
use scot_selection::{estimate_prior, rotate, SelectionPrior, PRIOR_FORMAT};
use serde::Serialize;

use crate::dataset::{load_problems, select_window};
use crate::error::EvalError;
use crate::node_calls::{draft_client, refusal, target_client, write_drafts, DraftSettings};
use crate::results::read_lines;

/// Make a selection prior for a target node (see docs: README, Selection).
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    /// The target node's gRPC endpoint (not the coordinator's).
    #[arg(long)]
    pub target_node: String,
    /// `scot eval` result files (scot mode) whose lines hold n drafts with their texts.
    #[arg(long, num_args = 1.., conflicts_with = "draft_node")]
    pub drafts: Vec<PathBuf>,
    /// Or: a draft node's gRPC endpoint that writes n drafts for each problem of --data.
    #[arg(long, requires = "data")]
    pub draft_node: Option<String>,
    /// JSONL data set for --draft-node (use problems the evaluation does not, e.g. GSM8K 500+).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Calibration problems (at most).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// The prior is for requests that offer --n drafts.
    #[command(flatten)]
    pub drafting: DraftSettings,
    /// Where the prior goes.
    #[arg(long)]
    pub out: PathBuf,
    /// mTLS towards the nodes (their certificates must name the endpoints' hosts).
    #[command(flatten)]
    pub tls: scot_tls::TlsArgs,
}

/// What a calibration did.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrateSummary {
    pub out: PathBuf,
    pub problems: usize,
    /// Problems left out: fewer than n drafts with text.
    pub skipped: usize,
    pub prior: Vec<f64>,
    pub model: String,
    pub template_set: String,
}

/// One calibration problem: its text and n drafts.
struct Sample {
    problem: String,
    drafts: Vec<String>,
}

pub async fn run_calibrate(args: CalibrateArgs) -> Result<CalibrateSummary, EvalError> {
    let n = args.drafting.n as usize;
    if n < 2 {
        return Err(EvalError::InvalidArgument(
            "--n must be at least 2: a position prior needs two positions".into(),
        ));
    }
    let (samples, skipped) = match &args.draft_node {
        Some(endpoint) => draft_samples(&args, endpoint).await?,
        None => stored_samples(&args)?,
    };
    if samples.is_empty() {
        return Err(EvalError::InvalidArgument(format!(
            "no calibration problem with {n} drafts ({skipped} skipped): pass scot-mode result files with draft texts, or --draft-node and --data"
        )));
    }
    let mut target = target_client(&args.target_node, &args.tls).await?;
    let mut problems = Vec::with_capacity(samples.len());
    let mut identity: Option<SelectResponse> = None;
    for (p, sample) in samples.iter().enumerate() {
        let mut orders = Vec::with_capacity(n);
        for shift in 0..n {
            let response = target
                .select(SelectRequest {
                    request_id: format!("calibrate-{p}-{shift}"),
                    problem: sample.problem.clone(),
                    drafts: rotate(&sample.drafts, shift),
                    template: args.drafting.template.clone(),
                    permutations: 0,
                    render_only: false,
                })
                .await
                .map_err(refusal(format!(
                    "the target node refused calibration problem {p}"
                )))?
                .into_inner();
            orders.push(response.option_logprobs.clone());
            identity.get_or_insert(response);
        }
        tracing::info!(
            problem = p + 1,
            of = samples.len(),
            "calibration problem scored"
        );
        problems.push(orders);
    }
    let identity = identity.unwrap_or_default();
    let prior =
        estimate_prior(&problems, n).map_err(|e| EvalError::InvalidArgument(e.to_string()))?;
    let file = SelectionPrior {
        format: PRIOR_FORMAT.to_string(),
        model: identity.model_fingerprint.clone(),
        model_name: String::new(),
        template_set: identity.template_set.clone(),
        prompt_digest: identity.prompt_digest.clone(),
        n: args.drafting.n,
        prior: prior.clone(),
        problems: problems.len() as u32,
        source: match &args.draft_node {
            Some(_) => format!(
                "drafts written by a draft node for {} problems {}..{} (seed {}, cap {})",
                args.data
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                args.offset,
                args.offset + args.limit,
                args.drafting.seed,
                args.drafting.draft_max_tokens
            ),
            None => format!(
                "drafts stored in {}",
                args.drafts
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    file.save(&args.out)
        .map_err(|e| EvalError::InvalidArgument(e.to_string()))?;
    Ok(CalibrateSummary {
        out: args.out,
        problems: problems.len(),
        skipped,
        prior,
        model: identity.model_fingerprint,
        template_set: identity.template_set,
    })
}

/// Problems whose scot-mode lines hold n offered drafts with text (in draft order).
fn stored_samples(args: &CalibrateArgs) -> Result<(Vec<Sample>, usize), EvalError> {
    let mut samples = Vec::new();
    let mut skipped = 0;
    for path in &args.drafts {
        for line in read_lines(path)? {
            if !line.is_mode(Mode::Scot) || !line.succeeded() || line.drafts.is_empty() {
                continue;
            }
            let drafts: Vec<String> = line
                .drafts
                .iter()
                .filter(|d| d.offered && !d.text.is_empty())
                .map(|d| d.text.clone())
                .collect();
            if drafts.len() != args.drafting.n as usize || line.problem.is_empty() {
                skipped += 1;
                continue;
            }
            samples.push(Sample {
                problem: line.problem.clone(),
                drafts,
            });
        }
    }
    samples.truncate(args.limit);
    Ok((samples, skipped))
}

/// n drafts per problem of the data window, written by the draft node.
async fn draft_samples(
    args: &CalibrateArgs,
    endpoint: &str,
) -> Result<(Vec<Sample>, usize), EvalError> {
    let data = args.data.clone().unwrap_or_default();
    let problems = select_window(load_problems(&data)?, args.offset, Some(args.limit));
    let mut client = draft_client(endpoint, &args.tls).await?;
    let mut samples = Vec::new();
    let mut skipped = 0;
    for problem in problems {
        let request = args
            .drafting
            .request(format!("calibrate-draft-{}", problem.id), &problem.problem);
        let drafts = write_drafts(&mut client, request).await?;
        if drafts.len() != args.drafting.n as usize {
            skipped += 1;
            continue;
        }
        tracing::info!(id = %problem.id, "calibration drafts written");
        samples.push(Sample {
            problem: problem.problem,
            drafts: drafts.into_iter().map(|d| d.text).collect(),
        });
    }
    Ok((samples, skipped))
}
