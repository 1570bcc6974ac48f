//! The REAL coordinator binary as a child process: found in the workspace's release target dir (or
//! `SCOT_COORDINATOR_BIN`), started on a free loopback port with static draft-node lists, and watched
//! for CPU time (`/proc/<pid>/stat` utime + stime). Killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scot_proto::coordinator_service_server::SERVICE_NAME;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::error::{Result, SimulationError};

/// The coordinator binary: `SCOT_COORDINATOR_BIN`, else `<target dir>/release/coordinator` where the
/// target dir is `CARGO_TARGET_DIR` or the workspace's `target/`.
pub fn coordinator_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("SCOT_COORDINATOR_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("..")
                        .join("target")
                });
            target_dir.join("release").join("coordinator")
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(SimulationError::CoordinatorMissing(path))
    }
}

/// Where the coordinator finds its target nodes.
#[derive(Debug, Clone)]
pub enum TargetNodes {
    /// `--target-node URL` (one target).
    Static(String),
    /// `--etcd-endpoints E --etcd-prefix P`: the targets registered there.
    Etcd { endpoint: String, prefix: String },
}

#[derive(Debug, Clone)]
pub struct CoordinatorLaunch {
    pub draft_nodes: Vec<String>,
    pub targets: TargetNodes,
    /// `RUST_LOG` of the coordinator.
    pub log_filter: String,
    /// Extra flags, passed as given.
    pub extra_args: Vec<String>,
    /// The coordinator's stderr goes here.
    pub log_file: PathBuf,
}

pub struct CoordinatorProcess {
    child: Child,
    pub listen: SocketAddr,
    pub command_line: String,
}

fn free_port() -> Result<u16> {
    scot_discovery::loopback_port().map_err(|e| SimulationError::io("no free loopback port", e))
}

impl CoordinatorProcess {
    /// Starts the coordinator and waits until its gRPC health check says SERVING.
    pub async fn start(launch: &CoordinatorLaunch) -> Result<Self> {
        let binary = coordinator_binary()?;
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut args = vec![
            "--listen".to_string(),
            listen.to_string(),
            "--draft-nodes".to_string(),
            launch.draft_nodes.join(","),
        ];
        match &launch.targets {
            TargetNodes::Static(url) => args.extend(["--target-node".to_string(), url.clone()]),
            TargetNodes::Etcd { endpoint, prefix } => args.extend([
                "--etcd-endpoints".to_string(),
                endpoint.clone(),
                "--etcd-prefix".to_string(),
                prefix.clone(),
            ]),
        }
        args.extend(launch.extra_args.iter().cloned());
        let log = std::fs::File::create(&launch.log_file).map_err(|e| {
            SimulationError::io(format!("log file {}", launch.log_file.display()), e)
        })?;
        let child = Command::new(&binary)
            .args(&args)
            .env("RUST_LOG", &launch.log_filter)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| SimulationError::io(format!("cannot start {}", binary.display()), e))?;
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.len() > 80 {
                    format!("<{} chars>", a.len())
                } else {
                    a.clone()
                }
            })
            .collect();
        let mut process = Self {
            child,
            listen,
            command_line: format!("{} {}", binary.display(), shown.join(" ")),
        };
        process
            .wait_serving(Duration::from_secs(30), &launch.log_file)
            .await?;
        Ok(process)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_serving(&mut self, limit: Duration, log: &Path) -> Result<()> {
        let deadline = Instant::now() + limit;
        let endpoint = Endpoint::from_shared(self.url())?.connect_timeout(Duration::from_secs(1));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(SimulationError::NotReady(format!(
                    "the coordinator exited with {status}; its log: {}",
                    log_tail(log)
                )));
            }
            if let Ok(channel) = endpoint.connect().await {
                let mut health = HealthClient::new(channel);
                let request = HealthCheckRequest {
                    service: SERVICE_NAME.to_string(),
                };
                if let Ok(response) = health.check(request).await {
                    if response.into_inner().status == ServingStatus::Serving as i32 {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(SimulationError::NotReady(format!(
                    "the coordinator did not serve on {} within {limit:?}; its log: {}",
                    self.listen,
                    log_tail(log)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// User + system CPU time the coordinator process has used so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        process_cpu_time(self.pid())
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process from `/proc/<pid>/stat`.
pub fn process_cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| SimulationError::io(&path, e))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()))
        .ok_or_else(|| SimulationError::NotReady(format!("cannot parse {path}")))
}

/// Fields 14 and 15 (utime, stime), counted after the `(comm)` field, which may hold spaces.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state); utime is field 14 -> index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

pub fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_from_a_stat_line() {
        let stat = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert!(process_cpu_time(std::process::id()).is_ok());
    }
}
