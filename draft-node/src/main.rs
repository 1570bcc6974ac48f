//! `draft-node`: serves the draft model over gRPC (DraftService + health).

use clap::Parser;
use scot_draft_node::DraftNodeArgs;

#[derive(Parser)]
#[command(
    name = "draft-node",
    version,
    about = "scot draft node: n drafts per problem from one prefill"
)]
struct Cli {
    #[command(flatten)]
    args: DraftNodeArgs,
}

fn main() -> anyhow::Result<()> {
    scot_draft_node::run_process(Cli::parse().args)?;
    Ok(())
}
