//! Errors of the simulation harness.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error(
        "the coordinator binary {0} does not exist: build it first with \
         `cargo build --release -p scot-coordinator` (or point SCOT_COORDINATOR_BIN at it)"
    )]
    CoordinatorMissing(PathBuf),
    #[error("the `etcd` binary is not on PATH (install Debian's etcd-server, or set SCOT_ETCD_BIN); it is needed for more than one target node")]
    EtcdMissing,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    NotReady(String),
    #[error("etcd registration: {0}")]
    Discovery(#[from] scot_discovery::DiscoveryError),
    #[error("gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Connect(#[from] scot_client::ConnectError),
}

impl SimulationError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        SimulationError::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, SimulationError>;
