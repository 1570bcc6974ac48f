//! The hidden `scot draft-node` / `scot target-node` / `scot coordinator` subcommands (what `scot run` /
//! `scot up` start when no server binary sits next to `scot`): each server runs in this process as its
//! own binary does, with the same flags, its own runtime, telemetry (OTLP when configured) and shutdown.

use anyhow::Context;

#[derive(clap::Subcommand, Debug)]
pub enum ServerCommand {
    /// A draft node in this process (what `run`/`up` start when no draft-node binary sits next to scot).
    #[command(name = "draft-node", hide = true)]
    DraftNode(scot_draft_node::DraftNodeArgs),
    /// A target node in this process.
    #[command(name = "target-node", hide = true)]
    TargetNode(scot_target_node::TargetNodeArgs),
    /// A coordinator in this process.
    #[command(name = "coordinator", hide = true)]
    Coordinator(scot_coordinator::CoordinatorConfig),
}

impl ServerCommand {
    /// Runs the server until Ctrl-C or SIGTERM. Starts its own runtime: call it outside one.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            ServerCommand::DraftNode(args) => Ok(scot_draft_node::run_process(args)?),
            ServerCommand::TargetNode(args) => Ok(scot_target_node::run_process(args)?),
            // The coordinator binary's start-up: telemetry as `scot-coordinator`, then serve.
            ServerCommand::Coordinator(config) => {
                scot_node_support::run_server_process("scot-coordinator", async {
                    scot_coordinator::serve(config, scot_node_support::shutdown_signal())
                        .await
                        .context("coordinator failed")
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        server: ServerCommand,
    }

    #[test]
    fn node_subcommands_take_the_node_binaries_flags() {
        let cli = Cli::parse_from([
            "scot",
            "draft-node",
            "--model",
            "m.gguf",
            "--etcd-endpoints",
            "http://127.0.0.1:2379",
            "--node-id",
            "d-0",
            "--metrics-listen",
            "127.0.0.1:9100",
        ]);
        let ServerCommand::DraftNode(draft) = cli.server else {
            panic!("not a draft node");
        };
        assert!(draft.process.registration.etcd.config().is_some());
        assert_eq!(draft.process.registration.node_id.as_deref(), Some("d-0"));
        assert_eq!(
            draft.process.metrics_listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        let cli = Cli::parse_from(["scot", "target-node", "--model", "t.gguf"]);
        let ServerCommand::TargetNode(target) = cli.server else {
            panic!("not a target node");
        };
        assert!(target.process.registration.etcd.config().is_none());
        assert_eq!(target.process.metrics_listen, None);
    }
}
