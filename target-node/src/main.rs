//! `target-node`: serves the target model over gRPC (TargetService + health).

use anyhow::Context;
use clap::Parser;
use scot_target_node::TargetNodeConfig;

#[derive(Parser)]
#[command(
    name = "target-node",
    version,
    about = "scot target node: selection and answers"
)]
struct Cli {
    #[command(flatten)]
    config: TargetNodeConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    scot_node_support::init_tracing();
    let cli = Cli::parse();
    scot_target_node::serve(cli.config, scot_node_support::shutdown_signal())
        .await
        .context("target node failed")
}
