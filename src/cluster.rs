//! A coordinator, draft node(s) and target node(s) as child processes on free loopback ports. The server
//! binaries are found in one folder (next to the `scot` executable); one that is missing runs as the
//! `scot` subcommand of its name, which starts the same way. The cluster waits for each node's gRPC
//! health to say SERVING and kills every child when dropped. With `tls` (the default) every gRPC hop
//! runs mTLS under a throwaway CA made for the cluster: its files live in a temporary folder as long
//! as the cluster does, and [`LocalCluster::client_tls`] is the certificate a client calls it with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scot_tls::{LocalCa, Tls, TlsArgs, TlsError};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub const DRAFT_SERVICE: &str = "scot.v1.DraftService";
pub const TARGET_SERVICE: &str = "scot.v1.TargetService";
pub const COORDINATOR_SERVICE: &str = "scot.v1.CoordinatorService";

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Folder holding the `draft-node`, `target-node` and `coordinator` binaries.
    pub bin_dir: PathBuf,
    pub draft_model: PathBuf,
    pub target_model: PathBuf,
    pub draft_nodes: usize,
    pub target_nodes: usize,
    /// Extra flags for every node (e.g. `--max-concurrent 2`).
    pub node_args: Vec<String>,
    /// cpu, cuda or cuda:N, for both models.
    pub device: String,
    pub templates_dir: Option<PathBuf>,
    pub max_context: Option<usize>,
    /// Coordinator port; 0 = a free one.
    pub coordinator_port: u16,
    /// RUST_LOG for the children when the environment sets none.
    pub log_filter: String,
    /// Extra flags for the coordinator (e.g. `--default-n 3`).
    pub coordinator_args: Vec<String>,
    /// Selection prior files for the target node.
    pub selection_priors: Vec<PathBuf>,
    /// A LoRA adapter for the target nodes only (e.g. a selection adapter from `scot train selection`).
    pub target_lora: Option<PathBuf>,
    /// A LoRA adapter for the draft nodes only (e.g. an alignment adapter from `scot train alignment`).
    pub draft_lora: Option<PathBuf>,
    /// Token-level speculation in the target nodes with the draft model: tokens per round (None: off).
    pub target_speculation: Option<usize>,
    /// How long model loading may take before start-up fails.
    pub startup_timeout: Duration,
    /// When a node binary is missing from `bin_dir`, run `<fallback_exe> <binary-name> …` instead (the
    /// `scot` executable serves every node kind in-process, so `cargo run --bin scot -- run` works
    /// without building the other binaries).
    pub fallback_exe: Option<PathBuf>,
    /// mTLS on every hop under a throwaway CA (false: plaintext on loopback).
    pub tls: bool,
}

impl ClusterSpec {
    /// The servers beside the `scot` executable `scot_exe`, which serves any of them that is missing.
    pub fn beside(scot_exe: &Path, draft_model: PathBuf, target_model: PathBuf) -> Self {
        let bin_dir = scot_exe.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut spec = Self::new(bin_dir, draft_model, target_model);
        spec.fallback_exe = Some(scot_exe.to_path_buf());
        spec
    }

    pub fn new(bin_dir: PathBuf, draft_model: PathBuf, target_model: PathBuf) -> Self {
        Self {
            bin_dir,
            draft_model,
            target_model,
            draft_nodes: 1,
            target_nodes: 1,
            node_args: Vec::new(),
            device: "cpu".to_string(),
            templates_dir: None,
            max_context: None,
            coordinator_port: 0,
            log_filter: "warn".to_string(),
            coordinator_args: Vec::new(),
            selection_priors: Vec::new(),
            target_lora: None,
            draft_lora: None,
            target_speculation: None,
            startup_timeout: Duration::from_secs(900),
            fallback_exe: None,
            tls: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "{binary} not found at {path}: build every binary with `cargo build --release --workspace`"
    )]
    MissingBinary { binary: String, path: PathBuf },
    #[error("model file {0} not found: run scripts/fetch-models.sh")]
    MissingModel(PathBuf),
    #[error("cannot find a free loopback port: {0}")]
    Port(std::io::Error),
    #[error("cannot start {name}: {source}")]
    Spawn {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} exited during start-up ({status}); its log is above")]
    Exited {
        name: String,
        status: std::process::ExitStatus,
    },
    #[error("{name} did not report SERVING within {timeout:?}")]
    Timeout { name: String, timeout: Duration },
    #[error("the cluster's certificates: {0}")]
    Tls(#[from] TlsError),
}

/// One child process, killed on drop.
#[derive(Debug)]
pub struct NodeProcess {
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// `http://` or, with TLS, `https://` and the address.
    pub url: String,
    pub service: &'static str,
    child: Option<Child>,
}

impl NodeProcess {
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// A placeholder for a process taken out of the cluster (nothing to signal or kill).
    pub fn none(name: &str) -> Self {
        Self {
            name: name.to_string(),
            address: String::new(),
            url: String::new(),
            service: "",
            child: None,
        }
    }

    /// The process id while the process is ours to signal.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (a `kill -s` name: TERM, KILL, STOP, CONT) to the process.
    pub fn signal(&self, signal: &str) -> std::io::Result<()> {
        let Some(pid) = self.pid() else {
            return Err(std::io::Error::other(format!(
                "{} is not running",
                self.name
            )));
        };
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill -s {signal} {pid} ({}) failed: {status}",
                self.name
            )))
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit status, or None if it still
    /// runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug)]
pub struct LocalCluster {
    pub coordinator: NodeProcess,
    pub targets: Vec<NodeProcess>,
    pub drafts: Vec<NodeProcess>,
    /// Dropped after the processes (field order), so their certificate files outlive them.
    tls: Option<ClusterCa>,
}

/// The cluster's throwaway CA (its key only in this process), its folder, and the client
/// certificate callers use.
struct ClusterCa {
    ca: LocalCa,
    client: TlsArgs,
    loaded: Tls,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterCa({})", self.dir.path().display())
    }
}

impl ClusterCa {
    fn new() -> Result<Self, ClusterError> {
        let dir = tempfile::Builder::new()
            .prefix("scot-cluster-ca-")
            .tempdir()
            .map_err(|source| TlsError::Read {
                path: std::env::temp_dir(),
                source,
            })?;
        let ca = LocalCa::new(dir.path())?;
        let client = ca.issue("client", &["client"])?;
        let loaded = client
            .load()?
            .ok_or_else(|| TlsError::Incomplete("the client certificate was not written".into()))?;
        Ok(Self {
            ca,
            client,
            loaded,
            dir,
        })
    }

    /// A certificate for one process, reachable on loopback and named `name` (its node id).
    fn issue(&self, name: &str) -> Result<TlsArgs, ClusterError> {
        Ok(self.ca.issue(name, &[name, "localhost", "127.0.0.1"])?)
    }
}

impl LocalCluster {
    /// Starts every node and waits until all are SERVING.
    pub async fn start(spec: &ClusterSpec) -> Result<Self, ClusterError> {
        for model in [&spec.draft_model, &spec.target_model] {
            if !model.is_file() {
                return Err(ClusterError::MissingModel(model.clone()));
            }
        }
        let draft_bin = binary(spec, "draft-node")?;
        let target_bin = binary(spec, "target-node")?;
        let coordinator_bin = binary(spec, "coordinator")?;
        let tls = if spec.tls {
            Some(ClusterCa::new()?)
        } else {
            None
        };
        let certificate = |name: &str| -> Result<Vec<String>, ClusterError> {
            match &tls {
                Some(ca) => Ok(ca.issue(name)?.to_args()),
                None => Ok(Vec::new()),
            }
        };

        let mut drafts = Vec::new();
        for i in 0..spec.draft_nodes.max(1) {
            let port = free_port()?;
            let mut command = draft_bin.command();
            command.arg("--listen").arg(format!("127.0.0.1:{port}"));
            model_flags(&mut command, spec, &spec.draft_model);
            command.args(&spec.node_args);
            if let Some(adapter) = &spec.draft_lora {
                command.arg("--lora").arg(adapter);
            }
            command.args(certificate(&format!("draft-{i}"))?);
            drafts.push(spawn(
                format!("draft-node {i}"),
                command,
                port,
                DRAFT_SERVICE,
                spec,
            )?);
        }
        let mut targets = Vec::new();
        for i in 0..spec.target_nodes.max(1) {
            let port = free_port()?;
            let mut command = target_bin.command();
            command.arg("--listen").arg(format!("127.0.0.1:{port}"));
            model_flags(&mut command, spec, &spec.target_model);
            command.args(&spec.node_args);
            for prior in &spec.selection_priors {
                command.arg("--selection-prior").arg(prior);
            }
            if let Some(adapter) = &spec.target_lora {
                command.arg("--lora").arg(adapter);
            }
            if let Some(tokens) = spec.target_speculation {
                command.arg("--speculative-draft").arg(&spec.draft_model);
                command.arg("--speculative-tokens").arg(tokens.to_string());
            }
            command.args(certificate(&format!("target-{i}"))?);
            let name = match spec.target_nodes {
                0 | 1 => "target-node".to_string(),
                _ => format!("target-node {i}"),
            };
            targets.push(spawn(name, command, port, TARGET_SERVICE, spec)?);
        }

        // The nodes load their models first: a coordinator started beside them would find none
        // serving and log each as failing its first health check.
        let deadline = Instant::now() + spec.startup_timeout;
        let client = tls.as_ref().map(|ca| ca.loaded.clone());
        for node in drafts.iter_mut().chain(targets.iter_mut()) {
            wait_serving(node, client.as_ref(), deadline, spec.startup_timeout).await?;
        }

        let coordinator_port = if spec.coordinator_port == 0 {
            free_port()?
        } else {
            spec.coordinator_port
        };
        let addresses = |nodes: &[NodeProcess]| {
            nodes
                .iter()
                .map(|n| n.address.clone())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut command = coordinator_bin.command();
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{coordinator_port}"))
            .arg("--target-node")
            .arg(addresses(&targets))
            .arg("--draft-nodes")
            .arg(addresses(&drafts))
            .args(certificate("coordinator")?)
            .args(&spec.coordinator_args);
        let coordinator = spawn(
            "coordinator".into(),
            command,
            coordinator_port,
            COORDINATOR_SERVICE,
            spec,
        )?;

        let mut cluster = Self {
            coordinator,
            targets,
            drafts,
            tls,
        };
        wait_serving(
            &mut cluster.coordinator,
            client.as_ref(),
            deadline,
            spec.startup_timeout,
        )
        .await?;
        Ok(cluster)
    }

    /// The coordinator's URL (`https://` with TLS).
    pub fn coordinator_url(&self) -> &str {
        &self.coordinator.url
    }

    /// The certificate a client of this cluster presents (None: the cluster runs plaintext).
    pub fn client_tls(&self) -> Option<&Tls> {
        self.tls.as_ref().map(|ca| &ca.loaded)
    }

    /// The client certificate's files (`to_args` gives `--tls-cert … --tls-key … --tls-ca …`), for
    /// a `scot solve` or `scot eval` against this cluster; none set without TLS.
    pub fn client_tls_args(&self) -> TlsArgs {
        self.tls
            .as_ref()
            .map(|ca| ca.client.clone())
            .unwrap_or_default()
    }

    /// Kills the draft nodes (the coordinator then finds none reachable).
    pub fn kill_draft_nodes(&mut self) {
        for draft in self.drafts.iter_mut() {
            draft.kill();
        }
    }

    /// Whether every process still runs.
    pub fn all_running(&mut self) -> bool {
        self.coordinator.is_running()
            && self.targets.iter_mut().all(|t| t.is_running())
            && self.drafts.iter_mut().all(|d| d.is_running())
    }
}

/// How to start one node kind: its own binary, or the fallback executable with the kind as subcommand.
struct NodeProgram {
    program: PathBuf,
    subcommand: Option<String>,
}

impl NodeProgram {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        if let Some(sub) = &self.subcommand {
            command.arg(sub);
        }
        command
    }
}

fn binary(spec: &ClusterSpec, name: &str) -> Result<NodeProgram, ClusterError> {
    let path = spec
        .bin_dir
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        return Ok(NodeProgram {
            program: path,
            subcommand: None,
        });
    }
    match &spec.fallback_exe {
        Some(exe) => Ok(NodeProgram {
            program: exe.clone(),
            subcommand: Some(name.to_string()),
        }),
        None => Err(ClusterError::MissingBinary {
            binary: name.to_string(),
            path,
        }),
    }
}

fn model_flags(command: &mut Command, spec: &ClusterSpec, model: &Path) {
    command
        .arg("--model")
        .arg(model)
        .arg("--device")
        .arg(&spec.device);
    if let Some(dir) = &spec.templates_dir {
        command.arg("--templates-dir").arg(dir);
    }
    if let Some(max) = spec.max_context {
        command.arg("--max-context").arg(max.to_string());
    }
}

fn spawn(
    name: String,
    mut command: Command,
    port: u16,
    service: &'static str,
    spec: &ClusterSpec,
) -> Result<NodeProcess, ClusterError> {
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", &spec.log_filter);
    }
    command.stdin(Stdio::null()).stdout(Stdio::null());
    let child = command.spawn().map_err(|source| ClusterError::Spawn {
        name: name.clone(),
        source,
    })?;
    let address = format!("127.0.0.1:{port}");
    Ok(NodeProcess {
        name,
        url: scot_tls::endpoint_url(&address, spec.tls),
        address,
        service,
        child: Some(child),
    })
}

/// A free loopback port no other node of this process got (nodes bind theirs only after loading).
fn free_port() -> Result<u16, ClusterError> {
    scot_discovery::loopback_port().map_err(ClusterError::Port)
}

/// Health status of `service` at `url` (called with `tls` when set), or None when it cannot be asked.
pub async fn health_status(url: &str, service: &str, tls: Option<&Tls>) -> Option<ServingStatus> {
    let channel = scot_tls::endpoint(url, tls, None)
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

async fn wait_serving(
    node: &mut NodeProcess,
    tls: Option<&Tls>,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ClusterError> {
    loop {
        if let Some(Ok(Some(status))) = node.child.as_mut().map(|c| c.try_wait()) {
            return Err(ClusterError::Exited {
                name: node.name.clone(),
                status,
            });
        }
        if health_status(&node.url, node.service, tls).await == Some(ServingStatus::Serving) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ClusterError::Timeout {
                name: node.name.clone(),
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
