//! More than one target node: the coordinator's static flags take one `--target-node`, so the
//! benchmark starts a real etcd (Debian's etcd-server) on loopback ports and registers the simulated
//! targets there; the coordinator reads them with `--etcd-endpoints` (its cluster path). Draft nodes
//! stay a static `--draft-nodes` list (an explicit list wins over etcd for its pool).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scot_discovery::{EtcdConfig, NodeInfo, NodeKind, Registration};

use crate::error::{Result, SimulationError};
use crate::target_node::SIMULATED_TARGET_MODEL;

/// The etcd prefix the simulated cluster registers under.
pub const SIMULATED_ETCD_PREFIX: &str = "/scot-simulated";

pub struct SimulatedEtcd {
    child: Child,
    client_port: u16,
    _data_dir: tempfile::TempDir,
}

fn etcd_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SCOT_ETCD_BIN") {
        return Ok(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("etcd"))
                .find(|candidate| candidate.is_file())
        })
        .ok_or(SimulationError::EtcdMissing)
}

fn free_port() -> Result<u16> {
    scot_discovery::loopback_port().map_err(|e| SimulationError::io("no free loopback port", e))
}

impl SimulatedEtcd {
    pub fn start() -> Result<Self> {
        let binary = etcd_binary()?;
        let data_dir = tempfile::tempdir().map_err(|e| SimulationError::io("etcd data dir", e))?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new(&binary)
            .arg("--name=scot-simulated")
            .arg(format!(
                "--data-dir={}",
                data_dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=scot-simulated={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| SimulationError::io(format!("cannot start {}", binary.display()), e))?;
        let mut etcd = Self {
            child,
            client_port,
            _data_dir: data_dir,
        };
        let address = SocketAddr::from(([127, 0, 0, 1], client_port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                return Err(SimulationError::NotReady(format!(
                    "etcd exited with {status}"
                )));
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(etcd);
            }
            if Instant::now() > deadline {
                return Err(SimulationError::NotReady(format!(
                    "etcd did not listen on {address} within 30 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Registers simulated target nodes and waits until each key is written.
    pub async fn register_targets(&self, urls: &[String]) -> Result<Vec<Registration>> {
        let config = EtcdConfig::new(vec![self.endpoint()]).with_prefix(SIMULATED_ETCD_PREFIX);
        let mut registrations = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let node = NodeInfo::new(
                NodeKind::Target,
                format!("simulated-target-{i}"),
                SIMULATED_TARGET_MODEL,
                url.clone(),
                // One engine slot (simulated nodes send no load report to override it): the
                // coordinator's --target-node-capacity is then the node's limit.
                1,
            );
            let registration = Registration::spawn(config.clone(), node, Duration::from_secs(30))?;
            registration
                .wait_registered(Duration::from_secs(30))
                .await?;
            registrations.push(registration);
        }
        Ok(registrations)
    }
}

impl Drop for SimulatedEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
