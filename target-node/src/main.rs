//! `target-node`: serves the target model over gRPC (TargetService + health).

use clap::Parser;
use scot_discovery::NodeKind;
use scot_node_support::NodeProcessArgs;
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
    #[command(flatten)]
    process: NodeProcessArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (model, listen) = (cli.config.model.clone(), cli.config.listen);
    let serve = scot_target_node::serve(cli.config, scot_node_support::shutdown_signal());
    scot_node_support::run_node_process(NodeKind::Target, &cli.process, &model, listen, serve)?;
    Ok(())
}
