//! `coordinator`: serves the CoordinatorService (Solve) in front of a draft pool and a target node.

use anyhow::Context;
use clap::Parser;
use scot_coordinator::CoordinatorConfig;

#[derive(Parser)]
#[command(
    name = "coordinator",
    version,
    about = "scot coordinator: drafts -> selection -> answer"
)]
struct Cli {
    #[command(flatten)]
    config: CoordinatorConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = scot_telemetry::init("scot-coordinator").context("telemetry")?;
    scot_coordinator::serve(cli.config, shutdown_signal())
        .await
        .context("coordinator failed")
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
