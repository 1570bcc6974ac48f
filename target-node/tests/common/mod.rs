//! Shared by the target node's tests: cached models and their flags (node-support's shared
//! `models.rs`), and a `target-node` child process on a free port whose stderr is kept for assertions.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const SMOL: &str = "smollm2-135m-instruct-q4_1.gguf";
/// The gRPC health service name of the TargetService.
pub const TARGET_SERVICE: &str = "scot.v1.TargetService";

/// Model-heavy tests of one binary run one at a time: on a small machine two models computing at
/// once slow each other down far more than 2x.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

#[path = "../../../node-support/tests/shared/models.rs"]
pub mod models;

use models::model_path;

fn free_addr() -> SocketAddr {
    scot_discovery::loopback_addr().expect("no free loopback port")
}

/// A running `target-node`; killed when dropped.
pub struct TargetNodeProcess {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl TargetNodeProcess {
    /// Starts `target-node --model <file> --max-context 2048 <extra>` and waits until its health
    /// says SERVING.
    pub async fn start(file: &str, extra: &[&str]) -> (Self, Channel) {
        let addr = free_addr();
        let mut child = Command::new(env!("CARGO_BIN_EXE_target-node"))
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--model")
            .arg(model_path(file))
            .args(["--max-context", "2048"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("target-node starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
        let mut node = Self {
            child,
            addr,
            stderr,
        };
        let channel = node.wait_serving().await;
        (node, channel)
    }

    async fn wait_serving(&mut self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "target-node exited ({status}) before serving:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "target-node never served:\n{}",
                self.stderr()
            );
            if let Ok(channel) = Channel::from_shared(format!("http://{}", self.addr))
                .expect("valid uri")
                .connect()
                .await
            {
                let status = HealthClient::new(channel.clone())
                    .check(HealthCheckRequest {
                        service: TARGET_SERVICE.into(),
                    })
                    .await;
                if let Ok(response) = status {
                    if response.into_inner().status == ServingStatus::Serving as i32 {
                        return channel;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything the process wrote to stderr so far, without terminal colour codes.
    pub fn stderr(&self) -> String {
        let text = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        strip_ansi(&text)
    }

    /// The exit status, once the process ends within `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread take the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for TargetNodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` without ANSI escape sequences (ESC '[' … final letter), which the log lines carry.
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Runs one Generate job on `node` in-process: the token messages it streamed and its result.
pub fn run_generate(
    node: &scot_node_support::NodeModel,
    request: &scot_proto::GenerateRequest,
) -> (Vec<scot_proto::GenerateToken>, scot_proto::GenerateResult) {
    use scot_proto::generate_event::Event;
    let job = scot_target_node::generate_job::prepare(node, request).expect("prepare generate");
    let (tx, mut rx) = scot_node_support::JobSender::buffered(1 << 16);
    scot_target_node::generate_job::run(node, job, &scot_engine::CancelToken::new(), &tx)
        .expect("generate");
    let (mut tokens, mut result) = (Vec::new(), None);
    while let Ok(event) = rx.try_recv() {
        match event.expect("no error event").event {
            Some(Event::Token(t)) => tokens.push(t),
            Some(Event::Result(r)) => result = Some(r),
            None => {}
        }
    }
    (tokens, result.expect("a result message"))
}
