//! `load-bench`: requests/s and latency under concurrent clients on a real local cluster (one draft
//! node, one target node, the coordinator; default models), for each node `--max-concurrent` given:
//! 1 is one job at a time per node (what the nodes did before continuous batching), more lets the
//! jobs' sequences decode together. Every cell is a closed loop: `clients` clients each send their
//! next request when the last one answered, `max(--requests, clients)` requests in all.
//!
//! Requests are the same in every run (same problems, same seeds), and the engine's batched steps
//! are bit-identical to single ones, so every answer must equal the first run's: the last column
//! counts those that do not.
//!
//! Prints one markdown table row per (max-concurrent, mode, clients). Each node computes on one
//! thread (`RAYON_NUM_THREADS=1` unless set), as if on its own machine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use scot::cluster::{ClusterSpec, LocalCluster};
use scot::local_bench::{percentile_secs, run_local_bench};
use scot_client::{status_text, SolveClient};
use scot_proto::{SolveMode, SolveOptions, SolveRequest};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "load-bench",
    about = "Requests/s and latency against concurrent clients, per node --max-concurrent"
)]
struct Cli {
    /// Node `--max-concurrent` values, one cluster each (the first is the reference for answers).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    max_concurrent: Vec<usize>,
    /// Concurrent clients per cell.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Modes: scot, target-only.
    #[arg(long, value_delimiter = ',', default_value = "scot,target-only")]
    modes: Vec<String>,
    /// Requests per cell (at least one per client).
    #[arg(long, default_value_t = 8)]
    requests: usize,
    /// Drafts per request (scot).
    #[arg(long, default_value_t = 5)]
    n: u32,
    /// Draft / target thinking / answer caps, tokens.
    #[arg(long, default_value_t = 48)]
    draft_max_tokens: u32,
    #[arg(long, default_value_t = 48)]
    thinking_max_tokens: u32,
    #[arg(long, default_value_t = 32)]
    answer_max_tokens: u32,
    /// Models (default: the default pair from the model cache).
    #[arg(long)]
    draft_model: Option<PathBuf>,
    #[arg(long)]
    target_model: Option<PathBuf>,
    /// Each request's deadline, seconds.
    #[arg(long, default_value_t = 1800)]
    deadline_secs: u64,
}

fn mode(name: &str) -> anyhow::Result<SolveMode> {
    Ok(match name {
        "scot" => SolveMode::Scot,
        "target-only" => SolveMode::TargetOnly,
        other => bail!("unknown mode {other:?} (scot, target-only)"),
    })
}

fn problem(i: usize) -> String {
    format!(
        "A shop sells {} apples in the morning and {} apples in the afternoon, then gets {} more \
         from a farm. How many apples did it sell in all, and how many did it get?",
        12 + i % 37,
        5 + i % 23,
        40 + i % 11
    )
}

struct Outcome {
    index: usize,
    wall: Duration,
    answer: Result<String, String>,
}

async fn solve(client: SolveClient, cli: &Cli, mode: SolveMode, i: usize) -> Outcome {
    let request = SolveRequest {
        request_id: format!("load-{i}"),
        problem: problem(i),
        options: Some(SolveOptions {
            mode: mode as i32,
            n: Some(cli.n),
            draft_max_tokens: Some(cli.draft_max_tokens),
            thinking_max_tokens: Some(cli.thinking_max_tokens),
            answer_max_tokens: Some(cli.answer_max_tokens),
            seed: Some(i as u64),
            ..Default::default()
        }),
    };
    let started = Instant::now();
    let result = client
        .solve(
            request,
            Some(Duration::from_secs(cli.deadline_secs)),
            |_| {},
        )
        .await;
    Outcome {
        index: i,
        wall: started.elapsed(),
        answer: result
            .map(|r| format!("{}\n{}", r.reasoning, r.answer))
            .map_err(|s| status_text(&s)),
    }
}

/// `requests` requests from `clients` closed-loop clients; returns the outcomes and the wall time.
async fn drive(
    client: &SolveClient,
    cli: &Cli,
    mode: SolveMode,
    clients: usize,
    requests: usize,
) -> anyhow::Result<(Vec<Outcome>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (client, cli, next, outcomes) =
            (client.clone(), cli.clone(), next.clone(), outcomes.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= requests {
                    break;
                }
                let outcome = solve(client.clone(), &cli, mode, i).await;
                outcomes.lock().unwrap().push(outcome);
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let wall = started.elapsed();
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    Ok((outcomes, wall))
}

async fn cluster(cli: &Cli, max_concurrent: usize) -> anyhow::Result<LocalCluster> {
    let (draft, target) = match (&cli.draft_model, &cli.target_model) {
        (Some(d), Some(t)) => (d.clone(), t.clone()),
        _ => scot::models::default_models().context("the default models")?,
    };
    let exe = std::env::current_exe()?;
    let scot_exe = exe.with_file_name(format!("scot{}", std::env::consts::EXE_SUFFIX));
    let mut spec = ClusterSpec::beside(&scot_exe, draft, target);
    spec.tls = false;
    spec.node_args = vec!["--max-concurrent".into(), max_concurrent.to_string()];
    // Room for every client's request at the coordinator and in its per-node limits.
    spec.coordinator_args = vec![
        "--max-concurrent-requests".into(),
        "1024".into(),
        "--queue-timeout-ms".into(),
        (cli.deadline_secs * 1000).to_string(),
    ];
    Ok(LocalCluster::start(&spec).await?)
}

type Answers = HashMap<(String, usize), Result<String, String>>;

fn main() -> anyhow::Result<()> {
    // Two model processes share the machine: one compute thread each, as if each had its own.
    run_local_bench(run(Cli::parse()))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut reference: Option<Answers> = None;
    for &max_concurrent in &cli.max_concurrent {
        eprintln!("load-bench: nodes at --max-concurrent {max_concurrent}: starting the cluster");
        let cluster = cluster(&cli, max_concurrent).await?;
        let client = SolveClient::connect(cluster.coordinator_url(), cluster.client_tls()).await?;
        // One request first, so no cell pays a first call's set-up.
        let warm = solve(client.clone(), &cli, SolveMode::Scot, usize::MAX / 2).await;
        if let Err(e) = warm.answer {
            bail!("the warm-up request failed: {e}");
        }
        let mut answers = Answers::new();
        for name in &cli.modes {
            let mode = mode(name)?;
            for &clients in &cli.clients {
                let requests = cli.requests.max(clients);
                eprintln!("load-bench: {name}, {clients} clients, {requests} requests ...");
                let (outcomes, wall) = drive(&client, &cli, mode, clients, requests).await?;
                let failed = outcomes.iter().filter(|o| o.answer.is_err()).count();
                let mut walls: Vec<Duration> = outcomes
                    .iter()
                    .filter(|o| o.answer.is_ok())
                    .map(|o| o.wall)
                    .collect();
                let mut differ = 0;
                for o in &outcomes {
                    let key = (format!("{name}/{clients}"), o.index);
                    if let Some(Some(first)) = reference.as_ref().map(|r| r.get(&key)) {
                        if first != &o.answer {
                            differ += 1;
                        }
                    }
                    answers.insert(key, o.answer.clone());
                }
                for o in outcomes.iter().filter(|o| o.answer.is_err()) {
                    eprintln!("  request {} failed: {:?}", o.index, o.answer);
                }
                let row = format!(
                    "| {max_concurrent} | {name} | {clients} | {requests} | {failed} | {:.3} | {:.1} | {:.1} | {} |",
                    (requests - failed) as f64 / wall.as_secs_f64(),
                    percentile_secs(&mut walls, 0.5),
                    percentile_secs(&mut walls, 0.99),
                    if reference.is_some() {
                        differ.to_string()
                    } else {
                        "(reference)".into()
                    }
                );
                eprintln!("{row}");
                rows.push(row);
            }
        }
        if reference.is_none() {
            reference = Some(answers);
        }
        drop(client);
        drop(cluster);
        // The nodes' processes end with the cluster; give the OS a moment to reclaim them.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "| node --max-concurrent | mode | clients | requests | failed | requests/s | p50 s | p99 s | answers differing from the first run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
