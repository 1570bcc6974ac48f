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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    scot_node_support::init_tracing();
    let cli = Cli::parse();
    scot_draft_node::serve(cli.config, scot_node_support::shutdown_signal())
        .await
        .context("draft node failed")
}
