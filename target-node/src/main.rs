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
    /// Address of the Prometheus `/metrics` endpoint (off when unset).
    #[arg(long, env = "SCOT_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// etcd registration (off unless --etcd-endpoints / SCOT_ETCD_ENDPOINTS is set).
    #[command(flatten)]
    registration: scot_discovery::RegistrationArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = scot_telemetry::init("scot-target-node").context("telemetry")?;
    scot_telemetry::spawn_metrics_server(cli.metrics_listen)
        .await
        .context("--metrics-listen")?;
    let (model, listen) = (cli.config.model.clone(), cli.config.listen);
    let serve = scot_target_node::serve(cli.config, scot_node_support::shutdown_signal());
    scot_node_support::serve_registered(
        &cli.registration,
        scot_discovery::NodeKind::Target,
        &model,
        listen,
        serve,
    )
    .await
    .context("etcd registration")?
    .context("target node failed")
}
