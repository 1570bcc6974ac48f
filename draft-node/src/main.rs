//! `draft-node`: serves the draft model over gRPC (DraftService + health).

use anyhow::Context;
use clap::Parser;
use scot_draft_node::DraftNodeConfig;

#[derive(Parser)]
#[command(
    name = "draft-node",
    version,
    about = "scot draft node: n drafts per problem from one prefill"
)]
struct Cli {
    #[command(flatten)]
    config: DraftNodeConfig,
    /// Address of the Prometheus `/metrics` endpoint (off when unset).
    #[arg(long, env = "SCOT_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = scot_telemetry::init("scot-draft-node").context("telemetry")?;
    scot_telemetry::spawn_metrics_server(cli.metrics_listen)
        .await
        .context("--metrics-listen")?;
    scot_draft_node::serve(cli.config, scot_node_support::shutdown_signal())
        .await
        .context("draft node failed")
}
