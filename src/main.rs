//! `scot`: run the whole system on this machine, talk to a running coordinator, evaluate.
//!
//!   scot run "What is 17*23?"          start coordinator + draft node + target node, solve, print, stop
//!   scot up                            start them and keep them up (Ctrl-C stops)
//!   scot solve --coordinator URL "…"   send a problem to a running coordinator
//!   scot eval / scot report            evaluation harness (scot-eval)
//!   scot calibrate                     the target's selection prior (for the debiased/hybrid policies)
//!   scot collect selection             selection training data through running nodes
//!   scot collect alignment             the target's chains, for the draft to learn
//!   scot train selection               the target's selection adapter (LoRA) from that data
//!   scot train alignment               the draft's alignment adapter (LoRA) from the chains

mod server_command;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use scot::cluster::{ClusterSpec, LocalCluster};
use scot::report::{describe_event, render};
use scot::solve_args::SolveArgs;
use scot_proto::SolveRequest;

#[derive(Parser)]
#[command(name = "scot", version, about = "Speculative Chain-of-Thought serving")]
struct Cli {
    #[command(subcommand)]
    invocation: Invocation,
}

/// The tools run in one runtime with logs on stderr; a server runs as its own binary would.
#[derive(Subcommand)]
enum Invocation {
    #[command(flatten)]
    Tool(Box<Command>),
    #[command(flatten)]
    Server(Box<server_command::ServerCommand>),
}

#[derive(Subcommand)]
enum Command {
    /// Start a coordinator, draft node(s) and a target node on loopback, solve one problem, stop.
    Run {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        solve: SolveArgs,
        /// Print only the result (no phase events on stderr).
        #[arg(long)]
        quiet: bool,
        /// The problem to solve.
        problem: String,
    },
    /// Start the cluster on loopback and keep it up until Ctrl-C; prints the coordinator's address.
    Up {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Send a problem to a running coordinator.
    Solve {
        /// Coordinator address.
        #[arg(
            long,
            env = "SCOT_COORDINATOR",
            default_value = "http://127.0.0.1:50051"
        )]
        coordinator: String,
        #[command(flatten)]
        solve: SolveArgs,
        /// mTLS towards the coordinator (`scot up` prints its cluster's).
        #[command(flatten)]
        tls: scot_tls::TlsArgs,
        #[arg(long)]
        quiet: bool,
        problem: String,
    },
    /// Send a data set through a running coordinator and grade the answers (prints a JSON summary).
    Eval(scot_eval::EvalArgs),
    /// Markdown tables and plots from eval result files (prints a JSON summary).
    Report(scot_eval::ReportArgs),
    /// Measure a target node's prior over option positions and write it as a selection prior file
    /// (load it with `target-node --selection-prior`, or `scot up --selection-prior`).
    Calibrate(scot_eval::CalibrateArgs),
    /// Collect training data through running nodes (resumable JSONL).
    #[command(subcommand)]
    Collect(CollectCommand),
    /// Train LoRA adapters (PEFT format) from collected data.
    #[command(subcommand)]
    Train(TrainCommand),
}

#[derive(Subcommand)]
enum TrainCommand {
    /// The selection adapter of a target model (load it with `target-node --lora`).
    Selection(scot_trainer::TrainSelectionArgs),
    /// The draft fitted on the target's chains (load it with `draft-node --lora`).
    Alignment(scot_trainer::TrainAlignmentArgs),
}

#[derive(Subcommand)]
enum CollectCommand {
    /// Selection data: n drafts per problem, which are right, and the selection prompt as the
    /// target node renders it (for `scot train selection`).
    Selection(scot_eval::CollectSelectionArgs),
    /// Alignment data: the target's chain of thought per problem and the draft prompt as the
    /// draft node renders it (for `scot train alignment`).
    Alignment(scot_eval::CollectAlignmentArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct ClusterArgs {
    /// Draft model (.gguf or HF folder); default: the cached Qwen2.5-Coder-0.5B (fetched if missing).
    #[arg(long, env = "SCOT_DRAFT_MODEL")]
    draft_model: Option<PathBuf>,
    /// Target model; default: the cached Qwen2.5-Coder-1.5B (fetched if missing).
    #[arg(long, env = "SCOT_TARGET_MODEL")]
    target_model: Option<PathBuf>,
    /// How many draft node processes to start.
    #[arg(long, default_value_t = 1)]
    draft_nodes: usize,
    /// How many target node processes to start (a target lost mid-answer hands it to another).
    #[arg(long, default_value_t = 1)]
    target_nodes: usize,
    /// Extra flags for every node, e.g. `--node-arg=--max-concurrent=2`.
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    node_args: Vec<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Folder of template sets (see templates/README.md).
    #[arg(long)]
    templates_dir: Option<PathBuf>,
    #[arg(long)]
    max_context: Option<usize>,
    /// Coordinator port (0 = a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Log filter of the node processes when RUST_LOG is unset.
    #[arg(long)]
    node_log: Option<String>,
    /// Selection prior files for the target node (`scot calibrate`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    selection_prior: Vec<PathBuf>,
    /// A LoRA adapter (PEFT folder) for the target node only, e.g. a selection adapter made by
    /// `scot train selection`.
    #[arg(long)]
    target_lora: Option<PathBuf>,
    /// A LoRA adapter (PEFT folder) for the draft nodes only, e.g. an alignment adapter made by
    /// `scot train alignment`.
    #[arg(long)]
    draft_lora: Option<PathBuf>,
    /// Token-level speculative decoding in the target node, with the draft model proposing
    /// `--speculative-tokens` tokens per round (greedy output unchanged).
    #[arg(long)]
    speculative: bool,
    /// Tokens the draft proposes per round with `--speculative`.
    #[arg(long, default_value_t = scot_node_support::DEFAULT_SPECULATIVE_TOKENS)]
    speculative_tokens: usize,
    /// Extra coordinator flags, e.g. `--coordinator-arg=--default-selection-policy=vote`.
    #[arg(long = "coordinator-arg", allow_hyphen_values = true)]
    coordinator_args: Vec<String>,
    /// No TLS between the local processes. By default every gRPC hop runs mTLS under a CA made
    /// for this cluster and gone with it (`scot up` prints the client flags).
    #[arg(long)]
    plaintext: bool,
}

impl ClusterArgs {
    fn spec(&self, default_log: &str) -> anyhow::Result<ClusterSpec> {
        let (draft, target) = match (&self.draft_model, &self.target_model) {
            (Some(d), Some(t)) => (d.clone(), t.clone()),
            (d, t) => {
                let (default_draft, default_target) = scot::models::default_models()?;
                (
                    d.clone().unwrap_or(default_draft),
                    t.clone().unwrap_or(default_target),
                )
            }
        };
        let exe = std::env::current_exe().context("cannot locate the scot executable")?;
        let mut spec = ClusterSpec::beside(&exe, draft, target);
        spec.draft_nodes = self.draft_nodes;
        spec.target_nodes = self.target_nodes;
        spec.node_args = self.node_args.clone();
        spec.device = self.device.clone();
        spec.templates_dir = self.templates_dir.clone();
        spec.max_context = self.max_context;
        spec.coordinator_port = self.port;
        spec.selection_priors = self.selection_prior.clone();
        spec.target_lora = self.target_lora.clone();
        spec.draft_lora = self.draft_lora.clone();
        spec.target_speculation = self.speculative.then_some(self.speculative_tokens);
        spec.coordinator_args = self.coordinator_args.clone();
        spec.tls = !self.plaintext;
        spec.log_filter = self
            .node_log
            .clone()
            .unwrap_or_else(|| default_log.to_string());
        Ok(spec)
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().invocation {
        Invocation::Server(server) => server.run(),
        Invocation::Tool(command) => tokio::runtime::Runtime::new()?.block_on(run_tool(*command)),
    }
}

async fn run_tool(command: Command) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match command {
        Command::Run {
            cluster,
            solve,
            quiet,
            problem,
        } => run(cluster, solve, quiet, problem).await,
        Command::Up { cluster } => up(cluster).await,
        Command::Solve {
            coordinator,
            solve,
            tls,
            quiet,
            problem,
        } => solve_once(&coordinator, tls.load()?.as_ref(), &solve, quiet, problem).await,
        Command::Eval(args) => {
            let summary = scot_eval::run_eval(args).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Report(args) => {
            let summary = scot_eval::run_report(args)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Calibrate(args) => {
            let summary = scot_eval::run_calibrate(args).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Collect(CollectCommand::Selection(args)) => {
            let summary = scot_eval::run_collect_selection(args).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Collect(CollectCommand::Alignment(args)) => {
            let summary = scot_eval::run_collect_alignment(args).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Train(TrainCommand::Alignment(args)) => {
            let summary =
                tokio::task::spawn_blocking(move || scot_trainer::run_train_alignment(args))
                    .await??;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Command::Train(TrainCommand::Selection(args)) => {
            // Training is compute-bound work of its own: off the async runtime.
            let summary =
                tokio::task::spawn_blocking(move || scot_trainer::run_train_selection(args))
                    .await??;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
    }
}

async fn start_cluster(args: &ClusterArgs, default_log: &str) -> anyhow::Result<LocalCluster> {
    let spec = args.spec(default_log)?;
    eprintln!(
        "scot: starting coordinator, {} draft node(s) ({}) and {} target node(s) ({}) ...",
        spec.draft_nodes,
        spec.draft_model.display(),
        spec.target_nodes,
        spec.target_model.display()
    );
    let cluster = tokio::select! {
        cluster = LocalCluster::start(&spec) => cluster?,
        _ = scot_node_support::shutdown_signal() => bail!("interrupted during start-up"),
    };
    eprintln!(
        "scot: cluster up; coordinator at {} (target nodes {}, draft nodes {})",
        cluster.coordinator_url(),
        cluster
            .targets
            .iter()
            .map(|t| t.url.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cluster
            .drafts
            .iter()
            .map(|d| d.url.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(cluster)
}

async fn run(
    cluster_args: ClusterArgs,
    solve: SolveArgs,
    quiet: bool,
    problem: String,
) -> anyhow::Result<()> {
    let cluster = start_cluster(&cluster_args, "warn").await?;
    let url = cluster.coordinator_url().to_string();
    let tls = cluster.client_tls().cloned();
    let outcome = tokio::select! {
        outcome = solve_once(&url, tls.as_ref(), &solve, quiet, problem) => outcome,
        _ = scot_node_support::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    drop(cluster); // kills the nodes
    outcome
}

async fn up(cluster_args: ClusterArgs) -> anyhow::Result<()> {
    let mut cluster = start_cluster(&cluster_args, "info").await?;
    println!("{}", cluster.coordinator_url());
    let mut client_flags = cluster.client_tls_args().to_args().join(" ");
    if !client_flags.is_empty() {
        client_flags.push(' ');
    }
    eprintln!(
        "scot: send problems with `scot solve --coordinator {} {client_flags}\"...\"` (the same flags for \
         `scot eval`); Ctrl-C or SIGTERM stops the cluster and removes its certificates",
        cluster.coordinator_url()
    );
    // Ctrl-C or SIGTERM: either way the nodes are killed when `cluster` drops.
    let stop = scot_node_support::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if !cluster.all_running() {
                    bail!("a node process exited; stopping the cluster");
                }
            }
        }
    }
    eprintln!("scot: stopping");
    Ok(())
}

async fn solve_once(
    coordinator: &str,
    tls: Option<&scot_tls::Tls>,
    args: &SolveArgs,
    quiet: bool,
    problem: String,
) -> anyhow::Result<()> {
    let request = SolveRequest {
        request_id: String::new(),
        problem,
        options: Some(args.options()),
    };
    let client = scot_client::SolveClient::connect(coordinator, tls).await?;
    let result = client
        .solve(request, args.deadline(), |event| {
            if !quiet {
                if let Some(line) = describe_event(event) {
                    eprintln!("scot: {line}");
                }
            }
        })
        .await
        .map_err(|status| anyhow::anyhow!(scot_client::status_text(&status)))?;
    print!("{}", render(&result));
    Ok(())
}
