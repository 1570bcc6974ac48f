//! A real etcd (Debian's etcd-server) on free loopback ports, with its own data dir, killed on drop;
//! for tests of discovery and of everything that registers or watches (feature `test-etcd`). Test
//! support only: it panics with a clear message when etcd cannot be started.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::{Backoff, EtcdConfig, Membership};

pub struct EtcdServer {
    binary: PathBuf,
    data_dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SCOT_ETCD_BIN") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the `etcd` binary is not on PATH: install Debian's etcd-server \
             (apt-get install etcd-server, or run scripts/install-test-deps.sh) or set SCOT_ETCD_BIN"
        )
    })
}

fn free_port() -> u16 {
    crate::loopback_port().expect("no free loopback port")
}

impl EtcdServer {
    /// Starts etcd and waits until it accepts connections. Retries on fresh ports if etcd exits at once
    /// (another process took a port between our probe and etcd's bind).
    pub fn start() -> Self {
        let binary = etcd_binary();
        for _ in 0..3 {
            let mut server = EtcdServer {
                binary: binary.clone(),
                data_dir: tempfile::tempdir().expect("temp dir for etcd"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(log) => eprintln!("etcd failed to start, retrying on other ports: {log}"),
            }
        }
        panic!("etcd failed to start three times (see the logs above)");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// A config for this server with a fast backoff so tests recover quickly.
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig::new(vec![self.endpoint()])
            .with_prefix("/scot-test")
            .with_backoff(Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_millis(500),
            })
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same ports and data dir.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn()
            .unwrap_or_else(|log| panic!("etcd did not restart: {log}"));
    }

    /// Starts again on the same ports with an empty data dir: etcd lost everything.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.data_dir = tempfile::tempdir().expect("temp dir for etcd");
        self.spawn()
            .unwrap_or_else(|log| panic!("etcd did not restart: {log}"));
    }

    /// Starts the process and waits until it listens; on failure, the tail of its log.
    fn spawn(&mut self) -> Result<(), String> {
        let data = self.data_dir.path().join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("etcd.log"))
            .expect("etcd log file");
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&self.binary)
            .arg("--name=scot-test")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=scot-test={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.wait_listening()
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let address = SocketAddr::from(([127, 0, 0, 1], self.client_port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("etcd exited with {status}: {}", self.log_tail()));
                }
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        Err(format!(
            "etcd did not listen on {address} within 30 s: {}",
            self.log_tail()
        ))
    }

    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.data_dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (up to a generous deadline, not a timing assertion) until the membership satisfies `pred`.
pub async fn wait_membership(
    rx: &mut watch::Receiver<Membership>,
    what: &str,
    pred: impl Fn(&Membership) -> bool,
) -> Membership {
    let deadline = Duration::from_secs(30);
    let waited = tokio::time::timeout(deadline, async {
        rx.wait_for(|m| pred(m)).await.map(|m| m.clone())
    })
    .await;
    match waited {
        Ok(Ok(m)) => m,
        Ok(Err(_)) => panic!("discovery stopped while waiting for: {what}"),
        Err(_) => panic!(
            "membership never reached '{what}' within {deadline:?}; last: {:?}",
            *rx.borrow()
        ),
    }
}

/// Waits until a watch value satisfies `pred`, with the same generous deadline.
pub async fn wait_state<T: std::fmt::Debug>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    pred: impl Fn(&T) -> bool,
) {
    let deadline = Duration::from_secs(30);
    let waited = tokio::time::timeout(deadline, async {
        rx.wait_for(|s| pred(s)).await.map(|_| ())
    })
    .await;
    match waited {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("task stopped while waiting for: {what}"),
        Err(_) => panic!(
            "never reached '{what}' within {deadline:?}; last: {:?}",
            *rx.borrow()
        ),
    }
}

/// Ids of one pool, for compact assertions.
pub fn ids(nodes: &[crate::NodeInfo]) -> Vec<&str> {
    nodes.iter().map(|n| n.id.as_str()).collect()
}
