//! `target-node`: serves the target model over gRPC (TargetService + health).

use clap::Parser;
use scot_target_node::TargetNodeArgs;

#[derive(Parser)]
#[command(
    name = "target-node",
    version,
    about = "scot target node: selection and answers"
)]
struct Cli {
    #[command(flatten)]
    args: TargetNodeArgs,
}

fn main() -> anyhow::Result<()> {
    scot_target_node::run_process(Cli::parse().args)?;
    Ok(())
}
