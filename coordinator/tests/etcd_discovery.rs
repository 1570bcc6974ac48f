//! etcd discovery end to end: a real etcd, a target node and a draft node (real model, in this process)
//! that register themselves through the nodes' registration flags, and the `coordinator` binary started
//! with ONLY `--etcd-endpoints`. A solve uses the registered draft node; once that node is gone from
//! etcd (its task aborted, no clean shutdown), the next solve falls back to the target alone.
//!
//! Qwen2.5-Coder-0.5B serves as both draft and target, with tiny caps, to keep this quick on CI.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use scot_discovery::test_etcd::EtcdServer;
use scot_discovery::{
    Discovery, EtcdConfig, EtcdDiscovery, Membership, NodeKind, RegistrationArgs,
};
use scot_node_support::ModelArgs;
use scot_proto::coordinator_service_client::CoordinatorServiceClient;
use scot_proto::solve_event::Event as SolveEventKind;
use scot_proto::{AnswerPath, SolveOptions, SolveRequest, SolveResult};
use tokio::sync::watch;

const PREFIX: &str = "/scot-coordinator-test";
/// Generous wait for things to appear (not a timing assertion).
const WAIT: Duration = Duration::from_secs(60);

fn wait_tcp(address: SocketAddr, what: &str) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} never listened on {address}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Parser)]
struct NodeCli {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    registration: RegistrationArgs,
}

/// Parses the node flags as the node binaries do (model + registration).
fn node_cli(etcd: &str, id: &str, listen: SocketAddr) -> NodeCli {
    let model = common::model_path(common::DRAFT_MODEL);
    NodeCli::parse_from([
        "node".to_string(),
        "--model".into(),
        model.display().to_string(),
        "--max-context".into(),
        "2048".into(),
        "--etcd-endpoints".into(),
        etcd.into(),
        "--etcd-prefix".into(),
        PREFIX.into(),
        "--node-id".into(),
        id.into(),
        "--lease-ttl-secs".into(),
        "2".into(),
        "--advertise-addr".into(),
        format!("http://{listen}"),
    ])
}

/// Distinct from every other address this test hands out: the nodes bind theirs only after loading.
fn free_addr() -> SocketAddr {
    scot_discovery::loopback_addr().expect("no free loopback port")
}

async fn wait_membership(
    rx: &mut watch::Receiver<Membership>,
    what: &str,
    pred: impl Fn(&Membership) -> bool,
) {
    let reached = tokio::time::timeout(WAIT, async { rx.wait_for(|m| pred(m)).await.is_ok() })
        .await
        .unwrap_or(false);
    assert!(
        reached,
        "membership never reached '{what}'; last: {:?}",
        *rx.borrow()
    );
}

async fn solve(coordinator: &str) -> SolveResult {
    let mut client = CoordinatorServiceClient::connect(coordinator.to_string())
        .await
        .expect("coordinator reachable");
    let request = SolveRequest {
        request_id: String::new(),
        problem: "What is 2 + 3?".into(),
        options: Some(SolveOptions {
            n: Some(2),
            draft_max_tokens: Some(48),
            thinking_max_tokens: Some(32),
            answer_max_tokens: Some(32),
            seed: Some(7),
            ..Default::default()
        }),
    };
    let mut stream = client.solve(request).await.expect("solve").into_inner();
    while let Some(event) = stream.message().await.expect("solve stream") {
        if let Some(SolveEventKind::Result(result)) = event.event {
            return result;
        }
    }
    panic!("the solve stream ended without a result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_finds_nodes_in_etcd_and_drops_a_vanished_draft_node() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .expect("etcd start thread");
    let endpoint = etcd.endpoint();

    // Both nodes, registering themselves as the binaries do.
    let (target_addr, draft_addr) = (free_addr(), free_addr());
    let target_cli = node_cli(&endpoint, "target-0", target_addr);
    let draft_cli = node_cli(&endpoint, "draft-0", draft_addr);
    tokio::spawn(async move {
        let config = scot_target_node::TargetNodeConfig {
            listen: target_addr,
            model: target_cli.model.clone(),
            selection_prior: Vec::new(),
            speculative: Default::default(),
        };
        let stop = scot_node_support::NodeStop::new(Duration::ZERO);
        let serve = scot_target_node::serve(config, None, stop.clone());
        scot_node_support::serve_registered(
            &target_cli.registration,
            NodeKind::Target,
            &target_cli.model,
            target_addr,
            &stop,
            serve,
        )
        .await
    });
    let draft = tokio::spawn(async move {
        let config = scot_draft_node::DraftNodeConfig {
            listen: draft_addr,
            model: draft_cli.model.clone(),
        };
        let stop = scot_node_support::NodeStop::new(Duration::ZERO);
        let serve = scot_draft_node::serve(config, None, stop.clone());
        scot_node_support::serve_registered(
            &draft_cli.registration,
            NodeKind::Draft,
            &draft_cli.model,
            draft_addr,
            &stop,
            serve,
        )
        .await
    });

    // The coordinator binary knows nothing but etcd.
    let coordinator_addr = free_addr();
    let mut coordinator = tokio::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .arg("--listen")
        .arg(coordinator_addr.to_string())
        .arg("--etcd-endpoints")
        .arg(&endpoint)
        .arg("--etcd-prefix")
        .arg(PREFIX)
        .env_remove("SCOT_TARGET_NODE")
        .env_remove("SCOT_DRAFT_NODES")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the coordinator binary");

    // Watch etcd as the coordinator does, to know when both nodes are in.
    let watcher = EtcdDiscovery::spawn(EtcdConfig::new(vec![endpoint.clone()]).with_prefix(PREFIX))
        .expect("watcher");
    let mut membership = watcher.subscribe();
    wait_membership(&mut membership, "one draft and one target", |m| {
        m.draft.len() == 1 && m.target.len() == 1
    })
    .await;
    tokio::task::spawn_blocking(move || wait_tcp(coordinator_addr, "coordinator"))
        .await
        .expect("wait thread");
    let coordinator_url = format!("http://{coordinator_addr}");

    let result = solve(&coordinator_url).await;
    let stats = result.stats.expect("stats");
    assert_ne!(
        stats.path,
        AnswerPath::TargetFallback as i32,
        "the registered draft node was not used: {}",
        stats.fallback_reason
    );
    assert_eq!(stats.drafts.len(), 2, "{stats:?}");
    assert!(
        stats.drafts.iter().all(|d| d.node == "draft-0"),
        "drafts came from {:?}, not the registered draft-0",
        stats.drafts.iter().map(|d| &d.node).collect::<Vec<_>>()
    );

    // The draft node's task dies without its clean shutdown: dropping the registration revokes the lease
    // (best effort); failing that, the 2 s lease expires. Either way etcd loses the node.
    draft.abort();
    let _ = draft.await;
    wait_membership(&mut membership, "the draft node gone", |m| {
        m.draft.is_empty() && m.target.len() == 1
    })
    .await;
    // The coordinator watches the same etcd; give its watch a moment to see the same event.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let result = solve(&coordinator_url).await;
    let stats = result.stats.expect("stats");
    assert_eq!(
        stats.path,
        AnswerPath::TargetFallback as i32,
        "expected the target alone once the draft node left: {stats:?}"
    );
    assert!(stats.drafts.is_empty(), "{stats:?}");
    assert!(!result.answer.is_empty());

    let _ = coordinator.kill().await;
    drop(watcher);
    drop(etcd);
}
