//! `scale-bench`: the SIMULATED scale benchmark of the real coordinator. Starts simulated draft and
//! target nodes in this process (no model; timing from measured per-token costs), the real coordinator
//! binary as a child process, drives concurrent Solve requests through it, and prints markdown tables:
//! (a) one configuration in detail (default 64 draft + 8 target nodes, 1000 concurrent requests), and
//! (b) throughput against the draft-pool size (1, 2, 4, ... 64) at a fixed load.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use scot_simulation::report_table::{detail_table, gap_table, sweep_header, sweep_row};
use scot_simulation::{run_scale, ScaleConfig, SimulatedCostProfile};

#[derive(Parser, Debug)]
#[command(
    name = "scale-bench",
    about = "SIMULATED scale benchmark: simulated nodes (no model) behind the real coordinator"
)]
struct Cli {
    /// Cost profile: cpu-measured (BENCHMARKS.md engine run) or gpu-paper (docs/cost-model.md).
    #[arg(long, default_value = "cpu-measured")]
    profile: String,
    /// Wall time per unit of model time (0.01: 100 s of simulated model time take 1 s).
    #[arg(long, default_value_t = 0.01)]
    time_scale: f64,
    #[arg(long, default_value_t = 64)]
    draft_nodes: usize,
    #[arg(long, default_value_t = 8)]
    target_nodes: usize,
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// HTTP/2 connections the load is spread over (independent clients).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Drafts per request.
    #[arg(long, default_value_t = 5)]
    n: u32,
    /// Draft-pool sizes of table (b), comma-separated; 0 = skip table (b).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    sweep: Vec<usize>,
    /// Requests per configuration of table (b).
    #[arg(long, default_value_t = 500)]
    sweep_requests: usize,
    /// Concurrency of table (b).
    #[arg(long, default_value_t = 250)]
    sweep_concurrency: usize,
    /// Skip table (a).
    #[arg(long)]
    skip_detail: bool,
    /// RUST_LOG of the coordinator.
    #[arg(long, default_value = "info")]
    coordinator_log: String,
    /// Extra coordinator flag (repeatable), e.g. --coordinator-arg=--health-timeout-ms=5000.
    #[arg(long = "coordinator-arg", allow_hyphen_values = true)]
    coordinator_args: Vec<String>,
    /// Where the coordinator logs go.
    #[arg(long, default_value = "/tmp/scot-scale-bench")]
    log_dir: PathBuf,
    #[arg(long, default_value_t = 16)]
    warmup_requests: usize,
    /// Coordinator --draft-node-capacity (drafts in flight per node); default: the profile's max batch.
    #[arg(long)]
    draft_node_capacity: Option<usize>,
    /// Coordinator --target-node-capacity (requests in flight per target node).
    #[arg(long, default_value_t = 128)]
    target_node_capacity: usize,
    /// Also run table (a)'s load with no coordinator (the driver calls the nodes itself): the
    /// baseline of "latency added".
    #[arg(long)]
    direct_baseline: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let profile = SimulatedCostProfile::by_name(&cli.profile).with_context(|| {
        format!(
            "unknown --profile {} (cpu-measured, gpu-paper)",
            cli.profile
        )
    })?;
    let fd_limit = scot_simulation::raise_fd_limit().context("raising the open-file limit")?;
    let binary = scot_simulation::coordinator_process::coordinator_binary()?;
    println!("# SIMULATED scale benchmark (simulated nodes, no model; real coordinator)\n");
    println!(
        "profile `{}` ({}); time scale {} (1 s of simulated model time = {} ms wall); n = {}; \
         open-file limit {fd_limit}; coordinator {}; coordinator RUST_LOG={}; extra flags {:?}\n",
        profile.name,
        profile.source,
        cli.time_scale,
        cli.time_scale * 1000.0,
        cli.n,
        binary.display(),
        cli.coordinator_log,
        cli.coordinator_args
    );
    println!(
        "costs: draft prefill {:.3} ms/token, step {:.2} ms at batch 1, {:.2} at 5, {:.2} at 64 (max batch {}); \
         target prefill {:.3} ms/token, step {:.2} / {:.2} / {:.2} ms (max batch {})\n",
        profile.draft.prefill_ms_per_token,
        profile.draft.decode_step_ms(1),
        profile.draft.decode_step_ms(5),
        profile.draft.decode_step_ms(64),
        profile.draft.max_batch,
        profile.target.prefill_ms_per_token,
        profile.target.decode_step_ms(1),
        profile.target.decode_step_ms(5),
        profile.target.decode_step_ms(64),
        profile.target.max_batch,
    );
    let draft_node_capacity = cli.draft_node_capacity.unwrap_or(profile.draft.max_batch);
    let base = ScaleConfig {
        draft_node_capacity,
        target_node_capacity: cli.target_node_capacity,
        direct_baseline: false,
        draft_nodes: cli.draft_nodes,
        target_nodes: cli.target_nodes,
        profile,
        time_scale: cli.time_scale,
        requests: cli.requests,
        concurrency: cli.concurrency,
        connections: cli.connections,
        n: cli.n,
        coordinator_log_filter: cli.coordinator_log.clone(),
        coordinator_args: cli.coordinator_args.clone(),
        log_dir: cli.log_dir.clone(),
        warmup_requests: cli.warmup_requests,
    };
    if !cli.skip_detail {
        let report = run_scale(&base).await.context("table (a) run")?;
        println!(
            "## (a) {} simulated draft + {} simulated target nodes, {} requests at concurrency {}\n",
            base.draft_nodes, base.target_nodes, base.requests, base.concurrency
        );
        println!("coordinator: `{}`\n", report.coordinator_command);
        println!("{}", detail_table(&report));
        println!("{}", gap_table(&report));
        print_errors(&report);
    }
    if cli.direct_baseline {
        let config = ScaleConfig {
            direct_baseline: true,
            ..base.clone()
        };
        let report = run_scale(&config).await.context("direct baseline run")?;
        println!(
            "## (a, baseline) the same load with NO coordinator: the driver calls the simulated nodes itself\n"
        );
        println!("{}", detail_table(&report));
        println!("{}", gap_table(&report));
        print_errors(&report);
    }
    let sweep: Vec<usize> = cli.sweep.iter().copied().filter(|&k| k > 0).collect();
    if !sweep.is_empty() {
        println!(
            "## (b) throughput against draft-pool size ({} simulated targets, {} requests at concurrency {})\n",
            base.target_nodes, cli.sweep_requests, cli.sweep_concurrency
        );
        println!("{}", sweep_header().trim_end());
        for k in sweep {
            let config = ScaleConfig {
                draft_nodes: k,
                requests: cli.sweep_requests,
                concurrency: cli.sweep_concurrency,
                ..base.clone()
            };
            let report = run_scale(&config)
                .await
                .with_context(|| format!("table (b) run with {k} draft nodes"))?;
            print!("{}", sweep_row(&report));
            print_errors(&report);
        }
    }
    Ok(())
}

fn print_errors(report: &scot_simulation::ScaleReport) {
    let errors = report.errors();
    if let Some(first) = errors.first() {
        eprintln!("{} requests failed; first error: {first}", errors.len());
    }
}
