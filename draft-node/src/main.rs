//! `draft-node`: serves the draft model over gRPC (DraftService + health).

use clap::Parser;
use scot_discovery::NodeKind;
use scot_draft_node::DraftNodeConfig;
use scot_node_support::NodeProcessArgs;

#[derive(Parser)]
#[command(
    name = "draft-node",
    version,
    about = "scot draft node: n drafts per problem from one prefill"
)]
struct Cli {
    #[command(flatten)]
    config: DraftNodeConfig,
    #[command(flatten)]
    process: NodeProcessArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (model, listen) = (cli.config.model.clone(), cli.config.listen);
    let serve = scot_draft_node::serve(cli.config, scot_node_support::shutdown_signal());
    scot_node_support::run_node_process(NodeKind::Draft, &cli.process, &model, listen, serve)?;
    Ok(())
}
