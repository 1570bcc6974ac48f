//! `coordinator`: serves the CoordinatorService (Solve, gRPC) and the OpenAI-compatible HTTP API in front of
//! the draft and target pools.

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
    scot_coordinator::serve(cli.config, scot_telemetry::shutdown_signal())
        .await
        .context("coordinator failed")
}
