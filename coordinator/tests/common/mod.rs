//! Test fixture: a draft node, a target node (real models, in this process, on loopback gRPC) and the
//! coordinator's HTTP API in front of them, plus a minimal HTTP/1.1 client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use scot_coordinator::{serve_http, Coordinator as Built, CoordinatorConfig};
use scot_node_support::{ModelArgs, NodeModel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub const DRAFT_MODEL: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const TARGET_MODEL: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

pub fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("SCOT_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/scot/models")
        });
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "model {} is missing: run scripts/fetch-models.sh (or set SCOT_MODEL_DIR)",
        path.display()
    );
    path
}

#[derive(Parser)]
struct ModelCli {
    #[command(flatten)]
    args: ModelArgs,
}

async fn load(file: &str) -> NodeModel {
    let path = model_path(file);
    let cli = ModelCli::parse_from([
        "node".into(),
        "--model".into(),
        path.into_os_string(),
        "--max-context".into(),
        "4096".into(),
    ]);
    tokio::task::spawn_blocking(move || cli.args.load())
        .await
        .expect("model loading thread")
        .unwrap_or_else(|e| panic!("loading {file}: {e}"))
}

fn free_addr() -> SocketAddr {
    scot_discovery::loopback_addr().expect("no free loopback port")
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{addr} never started listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Cluster {
    pub http: SocketAddr,
    pub draft: SocketAddr,
    pub target: SocketAddr,
    pub stop: CancellationToken,
}

/// Serves `draft_model` and `target_model` as a draft and a target node on free loopback ports
/// (plaintext, in this process); their addresses once both listen.
async fn serve_nodes(draft_model: NodeModel, target_model: NodeModel) -> (SocketAddr, SocketAddr) {
    let draft = free_addr();
    let target = free_addr();
    tokio::spawn(async move {
        scot_draft_node::serve_loaded(
            draft,
            None,
            draft_model,
            scot_node_support::NodeStop::new(std::time::Duration::ZERO),
        )
        .await
        .expect("draft node")
    });
    tokio::spawn(async move {
        scot_target_node::serve_loaded(
            target,
            None,
            target_model,
            scot_target_node::SelectionPriors::default(),
            scot_node_support::NodeStop::new(std::time::Duration::ZERO),
        )
        .await
        .expect("target node")
    });
    wait_listening(draft).await;
    wait_listening(target).await;
    (draft, target)
}

/// Loads both models, serves the nodes and the coordinator's HTTP API; `flags` are coordinator flags.
pub async fn start_cluster(flags: &[&str]) -> Cluster {
    let (draft_model, target_model) = tokio::join!(load(DRAFT_MODEL), load(TARGET_MODEL));
    let (draft, target) = serve_nodes(draft_model, target_model).await;
    let mut args = vec![
        "coordinator".to_string(),
        "--target-node".into(),
        target.to_string(),
        "--draft-nodes".into(),
        draft.to_string(),
    ];
    args.extend(flags.iter().map(|f| f.to_string()));
    let config = Coordinator::parse_from(args).config;
    let stop = CancellationToken::new();
    let http = serve_coordinator_http(&config, stop.clone()).await;
    Cluster {
        http,
        draft,
        target,
        stop,
    }
}

/// A draft node and a target node, both on the smallest model (fast to load), with no coordinator.
pub async fn start_smol_nodes() -> Cluster {
    const SMOL: &str = "smollm2-135m-instruct-q4_1.gguf";
    let (draft_model, target_model) = tokio::join!(load(SMOL), load(SMOL));
    let (draft, target) = serve_nodes(draft_model, target_model).await;
    Cluster {
        http: free_addr(),
        draft,
        target,
        stop: CancellationToken::new(),
    }
}

/// The gRPC door of a coordinator built from `flags`, on a free port (with gRPC health, as served).
pub async fn serve_coordinator_grpc(flags: &[&str]) -> SocketAddr {
    let coordinator = Built::build(&coordinator_config(flags)).expect("coordinator config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(
            "scot.v1.CoordinatorService",
            tonic_health::ServingStatus::Serving,
        )
        .await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(scot_proto::RequestDecodeLayer)
            .add_service(health_service)
            .add_service(coordinator.grpc_service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

#[derive(Parser)]
struct Coordinator {
    #[command(flatten)]
    config: CoordinatorConfig,
}

pub fn coordinator_config(args: &[&str]) -> CoordinatorConfig {
    Coordinator::parse_from(std::iter::once("coordinator").chain(args.iter().copied())).config
}

/// Serves the HTTP API of a coordinator built from `config` on a free port.
pub async fn serve_coordinator_http(
    config: &CoordinatorConfig,
    stop: CancellationToken,
) -> SocketAddr {
    let coordinator = Built::build(config).expect("coordinator config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(serve_http(
        listener,
        coordinator.http_router(),
        config.http.connection_limits(),
        stop,
    ));
    addr
}

/// One HTTP/1.1 request (Connection: close): (status, headers, body).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    split_response(&response)
}

/// An HTTP/1.1 response's status (0 when there is none: the connection was closed), head and body.
pub fn split_response(response: &[u8]) -> (u16, String, String) {
    let response = String::from_utf8_lossy(response).to_string();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}
