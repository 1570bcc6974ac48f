//! `chaos-bench`: what happens to requests when nodes die, stall, drain or are overrun, on a real local
//! cluster (node processes with real models on loopback, the coordinator as a process). Prints one
//! markdown table row per scenario: sent / completed / retried / migrated / replaced / lost / answered
//! by the target alone (no draft room or node), text checks and latency percentiles.
//!
//! Scenarios (each on a fresh cluster):
//! - `baseline`: the chaos scenario's cluster and load with no fault (the reference row).
//! - `chaos`: 3 draft + 2 target nodes, closed-loop load; mid-load kill -9 a draft node and a target
//!   node, SIGSTOP another draft node for `--stall-secs`.
//! - `overload`: a burst of 10x the coordinator's `--max-concurrent-requests`: the excess must be
//!   refused at once, the admitted ones complete; the coordinator's RSS before, at peak, after.
//! - `stall-target`: 3 draft + 2 target nodes, `--stall-target-requests` requests; SIGSTOP a target
//!   node for `--stall-secs` while answers stream (its open calls must fail over by keepalive, answers
//!   mid-stream migrate), then SIGCONT (it must come back into routing).
//! - `drain-target`: SIGTERM a target node with `--drain-requests` in flight.
//! - `drain-coordinator`: SIGTERM the coordinator with `--drain-requests` in flight.
//!
//! Every request checks its own stream: the answer (and reasoning) text streamed token by token must
//! equal the result's, so a migration that repeated or dropped text shows as a text mismatch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use scot::cluster::{ClusterSpec, LocalCluster, NodeProcess};
use scot::local_bench::{percentile_secs, run_local_bench};
use scot_client::{status_text, SolveClient};
use scot_proto::solve_event::Event;
use scot_proto::{AnswerPath, GeneratePhase, SolveMode, SolveOptions, SolveRequest};
use tonic::Code;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "chaos-bench",
    about = "Requests under node failures, stalls, drains and overload on a real local cluster"
)]
struct Cli {
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,chaos,overload,drain-target,drain-coordinator"
    )]
    scenarios: Vec<String>,
    /// Model of every node (default: the small test model, so five nodes fit a CPU machine).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Requests of the chaos scenario.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Requests in flight at once in the chaos scenario.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long the stalled node stays stopped (SIGSTOP .. SIGCONT).
    #[arg(long, default_value_t = 30)]
    stall_secs: u64,
    /// Requests of the stall-target scenario (`--concurrency` at a time).
    #[arg(long, default_value_t = 64)]
    stall_target_requests: usize,
    /// The coordinator's --max-concurrent-requests in the overload scenario (the burst is 10x).
    #[arg(long, default_value_t = 8)]
    overload_capacity: usize,
    /// Requests in flight when a drain scenario sends SIGTERM.
    #[arg(long, default_value_t = 20)]
    drain_requests: usize,
    /// The signalled process's drain grace (nodes' --drain-grace-secs, the coordinator's
    /// --drain-timeout-secs): long enough for the requests in flight on this machine.
    #[arg(long, default_value_t = 300)]
    drain_grace_secs: u64,
    /// Each request's deadline (gRPC timeout), seconds.
    #[arg(long, default_value_t = 300)]
    deadline_secs: u64,
    /// Drafts per request.
    #[arg(long, default_value_t = 3)]
    n: u32,
    /// Draft / target thinking / answer caps, tokens.
    #[arg(long, default_value_t = 32)]
    draft_max_tokens: u32,
    #[arg(long, default_value_t = 32)]
    thinking_max_tokens: u32,
    #[arg(long, default_value_t = 16)]
    answer_max_tokens: u32,
}

/// How long a drain scenario waits for the signalled process to exit.
const EXIT_WAIT: Duration = Duration::from_secs(600);

/// One request as its client saw it.
#[derive(Debug, Clone, Default)]
struct Outcome {
    wall: Duration,
    /// None: completed; Some(code): failed with it.
    failed: Option<Code>,
    error: String,
    retries: u32,
    migrations: u32,
    replaced: u32,
    /// Answered by the target alone (no draft node, or no draft room in time).
    fallback: bool,
    /// The streamed text differed from the result's (text repeated or missing).
    text_mismatch: bool,
}

/// The streamed text of one phase, as the result states it (thinking cut at the end marker).
fn phase_text(text: &str, thinking: bool) -> String {
    let text = if thinking {
        text.split("</think>").next().unwrap_or("")
    } else {
        text
    };
    text.trim().to_string()
}

/// Requests whose answer is being streamed right now (a target node is mid-answer for each).
static ANSWERING: AtomicUsize = AtomicUsize::new(0);

async fn solve(client: SolveClient, cli: Cli, i: usize) -> Outcome {
    let mode = if i % 4 == 3 {
        SolveMode::TargetOnly
    } else {
        SolveMode::Scot
    };
    let request = SolveRequest {
        request_id: format!("chaos-{i}"),
        problem: format!(
            "A shop sells {} apples in the morning and {} in the afternoon. How many apples does it sell in all?",
            12 + i % 37,
            5 + i % 23
        ),
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
    let (mut thinking, mut answer) = (String::new(), String::new());
    let started = Instant::now();
    let result = client
        .solve(
            request,
            Some(Duration::from_secs(cli.deadline_secs)),
            |event| {
                if let Event::Token(token) = event {
                    if token.phase == GeneratePhase::Answer as i32 {
                        if answer.is_empty() {
                            ANSWERING.fetch_add(1, Ordering::SeqCst);
                        }
                        answer.push_str(&token.text);
                    } else {
                        thinking.push_str(&token.text);
                    }
                }
            },
        )
        .await;
    if !answer.is_empty() {
        ANSWERING.fetch_sub(1, Ordering::SeqCst);
    }
    let mut outcome = Outcome {
        wall: started.elapsed(),
        ..Default::default()
    };
    match result {
        Ok(result) => {
            let stats = result.stats.unwrap_or_default();
            outcome.retries = stats.target_retries;
            outcome.migrations = stats.target_migrations;
            outcome.replaced = stats.drafts_replaced;
            outcome.fallback = stats.path == AnswerPath::TargetFallback as i32;
            outcome.text_mismatch = phase_text(&answer, false) != result.answer.trim()
                || (!thinking.is_empty()
                    && phase_text(&thinking, true) != phase_text(&result.reasoning, true));
            if outcome.text_mismatch {
                eprintln!(
                    "chaos-{i}: streamed text differs from the result\n  streamed answer {answer:?}\n  result answer   {:?}",
                    result.answer
                );
            }
        }
        Err(status) => {
            outcome.failed = Some(status.code());
            outcome.error = status_text(&status);
        }
    }
    outcome
}

/// Runs `requests` requests, `concurrency` at a time; `progress` counts those finished.
async fn drive(
    url: &str,
    tls: Option<&scot_tls::Tls>,
    cli: &Cli,
    requests: usize,
    concurrency: usize,
    progress: Arc<AtomicUsize>,
) -> anyhow::Result<Vec<Outcome>> {
    let client = SolveClient::connect(url, tls).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, cli, next, outcomes, progress) = (
            client.clone(),
            cli.clone(),
            next.clone(),
            outcomes.clone(),
            progress.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= requests {
                    break;
                }
                let outcome = solve(client.clone(), cli.clone(), i).await;
                outcomes.lock().unwrap().push(outcome);
                progress.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let outcomes = outcomes.lock().unwrap().clone();
    Ok(outcomes)
}

fn row(scenario: &str, outcomes: &[Outcome], cli: &Cli, notes: &str) -> String {
    let completed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed.is_none()).collect();
    let mut walls: Vec<Duration> = completed.iter().map(|o| o.wall).collect();
    let deadline = Duration::from_secs(cli.deadline_secs + 1);
    let refused = outcomes
        .iter()
        .filter(|o| o.failed == Some(Code::ResourceExhausted))
        .count();
    let lost = outcomes.len() - completed.len() - refused;
    format!(
        "| {scenario} | {} | {} | {refused} | {lost} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {notes} |",
        outcomes.len(),
        completed.len(),
        outcomes.iter().map(|o| o.retries).sum::<u32>(),
        outcomes.iter().map(|o| o.migrations).sum::<u32>(),
        outcomes.iter().map(|o| o.replaced).sum::<u32>(),
        outcomes.iter().filter(|o| o.fallback).count(),
        outcomes.iter().filter(|o| o.text_mismatch).count(),
        outcomes.iter().filter(|o| o.wall > deadline).count(),
        percentile_secs(&mut walls, 0.5),
        percentile_secs(&mut walls, 0.99),
    )
}

/// Every failure but the expected refusals (RESOURCE_EXHAUSTED) goes to stderr.
fn report_failures(scenario: &str, outcomes: &[Outcome]) {
    let unexpected = |o: &&Outcome| o.failed.is_some_and(|code| code != Code::ResourceExhausted);
    for outcome in outcomes.iter().filter(unexpected) {
        eprintln!(
            "{scenario}: failed after {:?}: {}",
            outcome.wall, outcome.error
        );
    }
}

async fn cluster(
    cli: &Cli,
    drafts: usize,
    targets: usize,
    extra: &[&str],
) -> anyhow::Result<LocalCluster> {
    let model = match &cli.model {
        Some(model) => model.clone(),
        None => scot::models::model_dir().join(scot::models::SMALL_MODEL_FILE),
    };
    let exe = std::env::current_exe()?;
    let scot_exe = exe.with_file_name(format!("scot{}", std::env::consts::EXE_SUFFIX));
    let mut spec = ClusterSpec::beside(&scot_exe, model.clone(), model);
    spec.draft_nodes = drafts;
    spec.target_nodes = targets;
    spec.max_context = Some(2048);
    spec.node_args = vec![
        "--max-concurrent".into(),
        "1".into(),
        "--drain-grace-secs".into(),
        cli.drain_grace_secs.to_string(),
    ];
    spec.coordinator_args = [
        "--health-interval-ms",
        "1000",
        "--health-timeout-ms",
        "1000",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    Ok(LocalCluster::start(&spec).await?)
}

/// Drives `requests` requests (`--concurrency` at a time) on its own task; the counter says how many
/// finished.
fn start_load(
    cluster: &LocalCluster,
    cli: &Cli,
    requests: usize,
) -> (
    tokio::task::JoinHandle<anyhow::Result<Vec<Outcome>>>,
    Arc<AtomicUsize>,
) {
    let progress = Arc::new(AtomicUsize::new(0));
    let (url, tls, cli, counter) = (
        cluster.coordinator_url().to_string(),
        cluster.client_tls().cloned(),
        cli.clone(),
        progress.clone(),
    );
    let load = tokio::spawn(async move {
        drive(&url, tls.as_ref(), &cli, requests, cli.concurrency, counter).await
    });
    (load, progress)
}

/// Returns once an answer is being streamed (so a target hit now may have to move it to another), or
/// after a minute without one.
async fn answer_streaming() {
    let waiting = Instant::now();
    while ANSWERING.load(Ordering::SeqCst) == 0 && waiting.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn wait_progress(progress: &AtomicUsize, at: usize) {
    while progress.load(Ordering::SeqCst) < at {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(node: &NodeProcess, signal: &str) -> anyhow::Result<()> {
    node.signal(signal)
        .with_context(|| format!("signal {signal} to {}", node.name))?;
    eprintln!("chaos: SIG{signal} -> {}", node.name);
    Ok(())
}

async fn baseline(cli: &Cli) -> anyhow::Result<String> {
    let cluster = cluster(cli, 3, 2, &[]).await?;
    let progress = Arc::new(AtomicUsize::new(0));
    let outcomes = drive(
        cluster.coordinator_url(),
        cluster.client_tls(),
        cli,
        cli.requests,
        cli.concurrency,
        progress,
    )
    .await?;
    report_failures("baseline", &outcomes);
    Ok(row(
        "baseline",
        &outcomes,
        cli,
        &format!(
            "3 draft + 2 target nodes, {} in flight, no fault",
            cli.concurrency
        ),
    ))
}

async fn chaos(cli: &Cli) -> anyhow::Result<String> {
    let mut cluster = cluster(cli, 3, 2, &[]).await?;
    let (load, progress) = start_load(&cluster, cli, cli.requests);
    wait_progress(&progress, cli.requests / 5).await;
    signal(&cluster.drafts[0], "KILL")?;
    wait_progress(&progress, cli.requests * 7 / 20).await;
    answer_streaming().await;
    signal(&cluster.targets[0], "KILL")?;
    wait_progress(&progress, cli.requests / 2).await;
    signal(&cluster.drafts[1], "STOP")?;
    tokio::time::sleep(Duration::from_secs(cli.stall_secs)).await;
    signal(&cluster.drafts[1], "CONT")?;
    let outcomes = load.await??;
    report_failures("chaos", &outcomes);
    cluster.drafts[0].kill();
    Ok(row(
        "chaos",
        &outcomes,
        cli,
        &format!(
            "3 draft + 2 target nodes, {} in flight; kill -9 a draft node at 20 %, a target node at 35 % (while answers stream); SIGSTOP a draft node {} s at 50 %",
            cli.concurrency, cli.stall_secs
        ),
    ))
}

async fn stall_target(cli: &Cli) -> anyhow::Result<String> {
    let cluster = cluster(cli, 3, 2, &[]).await?;
    let requests = cli.stall_target_requests;
    let (load, progress) = start_load(&cluster, cli, requests);
    wait_progress(&progress, requests * 3 / 10).await;
    answer_streaming().await;
    let stalled = &cluster.targets[0];
    signal(stalled, "STOP")?;
    tokio::time::sleep(Duration::from_secs(cli.stall_secs)).await;
    signal(stalled, "CONT")?;
    let after_stall = progress.load(Ordering::SeqCst);
    let outcomes = load.await??;
    report_failures("stall-target", &outcomes);
    Ok(row(
        "stall-target",
        &outcomes,
        cli,
        &format!(
            "3 draft + 2 target nodes, {} in flight; SIGSTOP a target node {} s at 30 % while answers stream, then SIGCONT ({after_stall} of {requests} done by then)",
            cli.concurrency, cli.stall_secs
        ),
    ))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn overload(cli: &Cli) -> anyhow::Result<String> {
    let capacity = cli.overload_capacity.to_string();
    let cluster = cluster(cli, 2, 1, &["--max-concurrent-requests", &capacity]).await?;
    let pid = cluster.coordinator.pid().context("coordinator pid")?;
    let before = rss_kib(pid).unwrap_or(0);
    let peak = Arc::new(AtomicUsize::new(before as usize));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss as usize, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let burst = cli.overload_capacity * 10;
    let outcomes = drive(
        cluster.coordinator_url(),
        cluster.client_tls(),
        cli,
        burst,
        burst,
        Arc::new(AtomicUsize::new(0)),
    )
    .await?;
    sampler.abort();
    let after = rss_kib(pid).unwrap_or(0);
    let refused: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.failed == Some(Code::ResourceExhausted))
        .collect();
    let slowest_refusal = refused.iter().map(|o| o.wall).max().unwrap_or_default();
    report_failures("overload", &outcomes);
    Ok(row(
        "overload",
        &outcomes,
        cli,
        &format!(
            "burst of {burst} at once over --max-concurrent-requests {capacity}; slowest refusal {} ms; coordinator RSS {} / {} / {} MiB (before / peak / after)",
            slowest_refusal.as_millis(),
            before / 1024,
            peak.load(Ordering::SeqCst) / 1024,
            after / 1024
        ),
    ))
}

async fn drain(cli: &Cli, coordinator: bool) -> anyhow::Result<String> {
    // Room for every request at once in both pools, so nothing waits for a lease; the coordinator's
    // own drain gets --drain-grace-secs like the nodes.
    let grace = cli.drain_grace_secs.to_string();
    let mut cluster = cluster(
        cli,
        2,
        2,
        &[
            "--draft-node-capacity",
            "64",
            "--target-node-capacity",
            "64",
            "--drain-timeout-secs",
            &grace,
        ],
    )
    .await?;
    let progress = Arc::new(AtomicUsize::new(0));
    let requests = cli.drain_requests;
    let load = {
        let (url, tls, cli, progress) = (
            cluster.coordinator_url().to_string(),
            cluster.client_tls().cloned(),
            cli.clone(),
            progress.clone(),
        );
        tokio::spawn(
            async move { drive(&url, tls.as_ref(), &cli, requests, requests, progress).await },
        )
    };
    // All requests admitted and drafting before the signal.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let in_flight = requests - progress.load(Ordering::SeqCst);
    let mut node = if coordinator {
        std::mem::replace(&mut cluster.coordinator, NodeProcess::none("coordinator"))
    } else {
        cluster.targets.remove(0)
    };
    signal(&node, "TERM")?;
    let signalled = Instant::now();
    // The process's exit, watched while the requests finish.
    let exit = tokio::task::spawn_blocking(move || {
        let status = node.wait_exit(EXIT_WAIT);
        (status, signalled.elapsed())
    });
    let outcomes = load.await??;
    let last_finished = signalled.elapsed();
    let (status, exited_after) = exit.await?;
    let exit = match status {
        Some(status) => format!(
            "exited {:.0} s after the signal ({status}), the last request finished after {:.0} s",
            exited_after.as_secs_f64(),
            last_finished.as_secs_f64()
        ),
        None => format!(
            "was still running {} s after the signal",
            EXIT_WAIT.as_secs()
        ),
    };
    report_failures("drain", &outcomes);
    let (scenario, what) = if coordinator {
        ("drain-coordinator", "the coordinator")
    } else {
        ("drain-target", "a target node (of 2)")
    };
    Ok(row(
        scenario,
        &outcomes,
        cli,
        &format!(
            "SIGTERM to {what} with {in_flight} requests in flight (drain grace {grace} s); it {exit}"
        ),
    ))
}

fn main() -> anyhow::Result<()> {
    // Five model processes share the machine: one compute thread each.
    run_local_bench(run(Cli::parse()))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for scenario in &cli.scenarios {
        eprintln!("chaos-bench: {scenario} ...");
        let row = match scenario.as_str() {
            "baseline" => baseline(&cli).await?,
            "chaos" => chaos(&cli).await?,
            "stall-target" => stall_target(&cli).await?,
            "overload" => overload(&cli).await?,
            "drain-target" => drain(&cli, false).await?,
            "drain-coordinator" => drain(&cli, true).await?,
            other => bail!("unknown scenario {other:?}"),
        };
        eprintln!("{row}");
        rows.push(row);
    }
    println!("| scenario | sent | completed | refused (429) | lost | retried | migrated | drafts replaced | target alone | text mismatches | over deadline | p50 s | p99 s | what happened |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
