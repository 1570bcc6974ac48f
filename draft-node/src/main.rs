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
    /// etcd registration (off unless --etcd-endpoints / SCOT_ETCD_ENDPOINTS is set).
    #[command(flatten)]
    registration: scot_discovery::RegistrationArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = scot_telemetry::init("scot-draft-node").context("telemetry")?;
    scot_telemetry::spawn_metrics_server(cli.metrics_listen)
        .await
        .context("--metrics-listen")?;
    let (model, listen) = (cli.config.model.clone(), cli.config.listen);
    let serve = scot_draft_node::serve(cli.config, scot_node_support::shutdown_signal());
    scot_node_support::serve_registered(
        &cli.registration,
        scot_discovery::NodeKind::Draft,
        &model,
        listen,
        serve,
    )
    .await
    .context("etcd registration")?
    .context("draft node failed")
}
