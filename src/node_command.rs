//! The hidden `scot draft-node` / `scot target-node` subcommands (what `scot run` / `scot up` start when
//! no node binary sits next to `scot`): a node in this process with the standalone binaries' flags,
//! including etcd registration (`--etcd-endpoints`) and the metrics endpoint.

use std::net::SocketAddr;

use anyhow::Context;
use scot_discovery::{NodeKind, RegistrationArgs};

#[derive(clap::Args, Debug, Clone)]
pub struct DraftNodeCommand {
    #[command(flatten)]
    pub config: scot_draft_node::DraftNodeConfig,
    /// Address of the Prometheus `/metrics` endpoint (off when unset).
    #[arg(long, env = "SCOT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// etcd registration (off unless --etcd-endpoints / SCOT_ETCD_ENDPOINTS is set).
    #[command(flatten)]
    pub registration: RegistrationArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TargetNodeCommand {
    #[command(flatten)]
    pub config: scot_target_node::TargetNodeConfig,
    /// Address of the Prometheus `/metrics` endpoint (off when unset).
    #[arg(long, env = "SCOT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// etcd registration (off unless --etcd-endpoints / SCOT_ETCD_ENDPOINTS is set).
    #[command(flatten)]
    pub registration: RegistrationArgs,
}

pub async fn run_draft_node(command: DraftNodeCommand) -> anyhow::Result<()> {
    scot_telemetry::spawn_metrics_server(command.metrics_listen)
        .await
        .context("--metrics-listen")?;
    let (model, listen) = (command.config.model.clone(), command.config.listen);
    let serve = scot_draft_node::serve(command.config, scot_node_support::shutdown_signal());
    scot_node_support::serve_registered(
        &command.registration,
        NodeKind::Draft,
        &model,
        listen,
        serve,
    )
    .await
    .context("etcd registration")?
    .context("draft node failed")
}

pub async fn run_target_node(command: TargetNodeCommand) -> anyhow::Result<()> {
    scot_telemetry::spawn_metrics_server(command.metrics_listen)
        .await
        .context("--metrics-listen")?;
    let (model, listen) = (command.config.model.clone(), command.config.listen);
    let serve = scot_target_node::serve(command.config, scot_node_support::shutdown_signal());
    scot_node_support::serve_registered(
        &command.registration,
        NodeKind::Target,
        &model,
        listen,
        serve,
    )
    .await
    .context("etcd registration")?
    .context("target node failed")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        node: Node,
    }

    #[derive(clap::Subcommand)]
    enum Node {
        DraftNode(DraftNodeCommand),
        TargetNode(TargetNodeCommand),
    }

    #[test]
    fn node_subcommands_take_the_registration_flags() {
        let cli = Cli::parse_from([
            "scot",
            "draft-node",
            "--model",
            "m.gguf",
            "--etcd-endpoints",
            "http://127.0.0.1:2379",
            "--node-id",
            "d-0",
        ]);
        let Node::DraftNode(draft) = cli.node else {
            panic!("not a draft node");
        };
        assert!(draft.registration.etcd.config().is_some());
        assert_eq!(draft.registration.node_id.as_deref(), Some("d-0"));
        let cli = Cli::parse_from(["scot", "target-node", "--model", "t.gguf"]);
        let Node::TargetNode(target) = cli.node else {
            panic!("not a target node");
        };
        assert!(target.registration.etcd.config().is_none());
    }
}
