//! `scot eval` and `scot report`: the argument structs the `scot` binary mounts, and the two
//! entry points.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use scot_client::{SolveClient, SolveKnobs};
use serde::Serialize;

use crate::dataset::{dataset_name, load_problems, select_window};
use crate::error::EvalError;
use crate::report::ReportSummary;
use crate::results::{completed_ids, ResultWriter};
use crate::runner::{solve_one, RequestTemplate};

/// Send a data set through a running cluster and append one graded JSON line per problem.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// JSONL data set with `id`, `problem`, `answer` per line (e.g. ../shared/data/gsm8k.jsonl).
    #[arg(long)]
    pub data: PathBuf,
    /// Coordinator gRPC endpoint.
    #[arg(
        long,
        env = "SCOT_COORDINATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub coordinator: String,
    /// Result file (appended; rerunning skips ids already answered). Default:
    /// results/<dataset>-<mode>.jsonl.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Data set name written to each line. Default: the data file's stem.
    #[arg(long)]
    pub dataset_name: Option<String>,
    /// Run at most this many problems (after --offset).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Skip this many problems from the start of the file.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Sampling seed sent with every request (draft i uses seed + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Per-request deadline in seconds; a problem past it gets an error line (retried on a rerun).
    #[arg(long, default_value_t = 1800)]
    pub timeout_secs: u64,
    // --mode (which system answers) and the knobs every request carries.
    #[command(flatten)]
    pub knobs: SolveKnobs,
    /// No progress bar (logs only).
    #[arg(long)]
    pub no_progress: bool,
    /// mTLS towards the coordinator (`scot up` prints its cluster's).
    #[command(flatten)]
    pub tls: scot_tls::TlsArgs,
}

/// What a `scot eval` run did.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    pub dataset: String,
    pub mode: String,
    pub out: PathBuf,
    /// Problems in the selected window.
    pub selected: usize,
    /// Skipped because an earlier run already answered them.
    pub skipped: usize,
    pub attempted: usize,
    pub errors: usize,
    pub correct: usize,
    /// Correct / answered (errors excluded) in this run.
    pub accuracy: f64,
    /// Mean coordinator-reported end-to-end latency of this run's answered problems.
    pub mean_latency_ms: f64,
}

/// Runs `scot eval`.
pub async fn run_eval(args: EvalArgs) -> Result<EvalSummary, EvalError> {
    if args.concurrency == 0 {
        return Err(EvalError::InvalidArgument(
            "--concurrency must be at least 1".into(),
        ));
    }
    let dataset = args
        .dataset_name
        .clone()
        .unwrap_or_else(|| dataset_name(&args.data));
    let problems = select_window(load_problems(&args.data)?, args.offset, args.limit);
    if problems.is_empty() {
        return Err(EvalError::EmptyDataset { path: args.data });
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "results/{dataset}-{}.jsonl",
            args.knobs.mode.name()
        ))
    });
    let done = completed_ids(&out)?;
    let selected = problems.len();
    let todo: Vec<_> = problems
        .into_iter()
        .filter(|p| !done.contains(&p.id))
        .collect();
    let mut summary = EvalSummary {
        dataset: dataset.clone(),
        mode: args.knobs.mode.name().to_string(),
        out: out.clone(),
        selected,
        skipped: selected - todo.len(),
        attempted: 0,
        errors: 0,
        correct: 0,
        accuracy: 0.0,
        mean_latency_ms: 0.0,
    };
    if todo.is_empty() {
        tracing::info!(out = %out.display(), "every selected problem is already answered");
        return Ok(summary);
    }

    let tls = args
        .tls
        .load()
        .map_err(|e| EvalError::InvalidArgument(e.to_string()))?;
    let client = SolveClient::connect(&args.coordinator, tls.as_ref()).await?;
    let mut writer = ResultWriter::open(&out)?;
    let template = RequestTemplate {
        dataset,
        mode: args.knobs.mode,
        options: args.knobs.options(Some(args.seed)),
        deadline: Duration::from_secs(args.timeout_secs.max(1)),
    };
    let bar = progress_bar(todo.len(), args.no_progress);
    let mut latency_sum = 0.0;
    let mut answered = 0usize;
    let mut results = futures::stream::iter(todo.iter())
        .map(|problem| solve_one(&client, &template, problem))
        .buffer_unordered(args.concurrency);
    while let Some(line) = results.next().await {
        writer.append(&line)?;
        summary.attempted += 1;
        match &line.error {
            Some(error) => {
                summary.errors += 1;
                tracing::warn!(id = %line.id, %error, "problem failed (retried on a rerun)");
            }
            None => {
                answered += 1;
                latency_sum += line.total_ms;
                summary.correct += usize::from(line.correct);
            }
        }
        if answered > 0 {
            summary.accuracy = summary.correct as f64 / answered as f64;
            summary.mean_latency_ms = latency_sum / answered as f64;
        }
        bar.set_message(format!(
            "acc {:.1}% | mean {:.1}s | errors {}",
            100.0 * summary.accuracy,
            summary.mean_latency_ms / 1e3,
            summary.errors
        ));
        bar.inc(1);
    }
    bar.finish();
    Ok(summary)
}

fn progress_bar(len: usize, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta}] {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// Turn result files into markdown tables and PNG plots.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Result files or folders of `*.jsonl` result files.
    #[arg(long = "results", required = true, num_args = 1..)]
    pub results: Vec<PathBuf>,
    /// Where report.md and the PNGs go.
    #[arg(long, default_value = "reports")]
    pub out_dir: PathBuf,
    /// TrueType font for the plots (no system font library is used).
    #[arg(long, default_value = crate::plots::DEFAULT_FONT)]
    pub font: PathBuf,
    /// Per-token costs of both models and the deployment (JSON, see docs/cost-model.md): adds the
    /// cost model's prediction beside each data set's measured scot and target-only phases.
    #[arg(long)]
    pub costs: Option<PathBuf>,
    /// Re-decide every stored scot problem under selection policies and parameters (offline; see
    /// `--replay-setting`), with a table per data set and an accuracy-latency frontier plot.
    #[arg(long)]
    pub replay: bool,
    /// A setting to replay, `policy[:min_votes=N][:tau=X][:prior=on|off]` (repeatable). Default: a
    /// grid over every policy.
    #[arg(long = "replay-setting", requires = "replay")]
    pub replay_settings: Vec<crate::replay::ReplaySetting>,
    /// Selection prior files (`scot calibrate`) to debias lines whose target had none.
    #[arg(long = "prior", requires = "replay")]
    pub priors: Vec<PathBuf>,
    /// A trained selector's option probabilities per problem (`scot train selection` writes
    /// `<out>/selector-probs.jsonl`): the replay decides with them in place of the stored target's,
    /// as if the target node had served with that adapter (problems without one are left out).
    #[arg(long, requires = "replay")]
    pub selector_probs: Option<PathBuf>,
}

/// Runs `scot report`.
pub fn run_report(args: ReportArgs) -> Result<ReportSummary, EvalError> {
    let costs = args
        .costs
        .as_deref()
        .map(crate::cost_check::MeasuredCosts::from_file)
        .transpose()?;
    let replay = if args.replay {
        Some(crate::report::ReplayOptions {
            settings: if args.replay_settings.is_empty() {
                crate::replay::ReplaySetting::default_grid()
            } else {
                args.replay_settings.clone()
            },
            priors: crate::replay::load_priors(&args.priors)?,
            selector: args
                .selector_probs
                .as_deref()
                .map(|path| {
                    scot_selection::read_selector_probs(path)
                        .map_err(|e| EvalError::InvalidArgument(e.to_string()))
                })
                .transpose()?,
        })
    } else {
        None
    };
    crate::report::write_report(
        &args.results,
        &args.out_dir,
        &args.font,
        costs.as_ref(),
        replay.as_ref(),
    )
}
