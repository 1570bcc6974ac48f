//! A node drains on SIGTERM (`scot draft-node`, a real etcd, the smallest model): it leaves etcd and
//! turns NOT_SERVING while the work it accepted is still running, refuses new work UNAVAILABLE (so a
//! coordinator places it elsewhere), finishes every call it accepted — the one running and those
//! waiting for the engine — and only then exits, cleanly. Its admin port's `/ready` (what Kubernetes
//! probes) follows: 200 while it serves, 503 from the start of the drain.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scot_discovery::test_etcd::EtcdServer;
use scot_discovery::{Discovery, EtcdConfig, EtcdDiscovery};
use scot_proto::draft_event::Event as DraftEventKind;
use scot_proto::draft_service_client::DraftServiceClient;
use scot_proto::DraftRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const PREFIX: &str = "/scot-drain-test";
const MODEL: &str = "smollm2-135m-instruct-q4_1.gguf";
/// Generous bound on anything this test waits for (not a timing assertion).
const WAIT: Duration = Duration::from_secs(180);
/// Draft calls accepted before the SIGTERM: one runs, the others wait for the engine.
const CALLS: usize = 3;

fn free_addr() -> SocketAddr {
    scot_discovery::loopback_addr().expect("no free loopback port")
}

/// A child process killed on drop (a failed test leaves nothing running).
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The HTTP status of `GET path` at `addr`.
async fn http_status(addr: SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the admin port");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

fn start_draft_node(etcd: &str, listen: SocketAddr, admin: SocketAddr) -> Node {
    let model = scot::models::model_dir().join(MODEL);
    assert!(
        model.is_file(),
        "model {} is missing: run scripts/fetch-models.sh first",
        model.display()
    );
    let child = Command::new(env!("CARGO_BIN_EXE_scot"))
        .arg("draft-node")
        .arg("--model")
        .arg(&model)
        .args(["--max-context", "1024", "--max-concurrent", "1"])
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--metrics-listen")
        .arg(admin.to_string())
        .args(["--etcd-endpoints", etcd, "--etcd-prefix", PREFIX])
        .args(["--node-id", "drain-draft"])
        // A long lease: the key can only vanish quickly because the node revoked it.
        .args(["--lease-ttl-secs", "60"])
        .args(["--drain-grace-secs", "170"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start scot draft-node");
    Node(child)
}

fn long_drafts(seed: u64) -> DraftRequest {
    DraftRequest {
        request_id: format!("drain-{seed}"),
        problem: "Write a long, detailed story about a lighthouse keeper, chapter by chapter."
            .into(),
        draft_indices: vec![0, 1],
        temperature: 1.0,
        top_p: 1.0,
        max_tokens: 128,
        seed,
        ..Default::default()
    }
}

async fn health(channel: tonic::transport::Channel) -> i32 {
    let request = HealthCheckRequest {
        service: "scot.v1.DraftService".into(),
    };
    HealthClient::new(channel)
        .check(request)
        .await
        .expect("health check during the drain")
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_a_node_leaves_etcd_refuses_new_work_and_finishes_what_it_accepted() {
    let etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    let (listen, admin) = (free_addr(), free_addr());
    let mut node = start_draft_node(&endpoint, listen, admin);

    let watcher = EtcdDiscovery::spawn(EtcdConfig::new(vec![endpoint.clone()]).with_prefix(PREFIX))
        .expect("watcher");
    let mut membership = watcher.subscribe();
    tokio::time::timeout(WAIT, membership.wait_for(|m| m.draft.len() == 1))
        .await
        .expect("the draft node never registered")
        .expect("watch");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{listen}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the draft node");
    assert_eq!(health(channel.clone()).await, ServingStatus::Serving as i32);
    assert_eq!(http_status(admin, "/ready").await, 200);

    // CALLS calls accepted: the first has started writing before the signal.
    let mut streams = Vec::new();
    for seed in 0..CALLS as u64 {
        let stream = DraftServiceClient::new(channel.clone())
            .draft(long_drafts(seed))
            .await
            .expect("draft call accepted")
            .into_inner();
        streams.push(stream);
    }
    let first = tokio::time::timeout(WAIT, streams[0].message())
        .await
        .expect("no progress from the first call")
        .expect("first call's stream")
        .expect("first call's first event");
    assert!(
        matches!(first.event, Some(DraftEventKind::Progress(_))),
        "{first:?}"
    );

    let pid = node.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let signalled = Instant::now();

    // Out of etcd while the process is still alive (and still has accepted work).
    tokio::time::timeout(WAIT, membership.wait_for(|m| m.draft.is_empty()))
        .await
        .expect("the draining node never left etcd")
        .expect("watch");
    let left_etcd = signalled.elapsed();
    assert!(
        node.0.try_wait().expect("child status").is_none(),
        "the node exited before (or as) it left etcd"
    );
    assert_eq!(
        health(channel.clone()).await,
        ServingStatus::NotServing as i32,
        "a draining node is NOT_SERVING"
    );
    assert_eq!(
        http_status(admin, "/ready").await,
        503,
        "draining: not ready"
    );
    assert_eq!(http_status(admin, "/health").await, 200, "draining: alive");
    let refused = DraftServiceClient::new(channel.clone())
        .draft(long_drafts(99))
        .await;
    let refusal = match refused {
        Err(status) => status,
        Ok(response) => response
            .into_inner()
            .message()
            .await
            .expect_err("a new call during the drain was served"),
    };
    assert_eq!(refusal.code(), tonic::Code::Unavailable, "{refusal:?}");
    assert!(refusal.message().contains("draining"), "{refusal:?}");

    // Every accepted call runs to its summary: 2 drafts each, no error.
    for (call, stream) in streams.iter_mut().enumerate() {
        let mut drafts = 0;
        let mut summary = false;
        while let Some(event) = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("an accepted call stalled during the drain")
            .unwrap_or_else(|status| {
                panic!("accepted call {call} failed during the drain: {status:?}")
            })
        {
            match event.event {
                Some(DraftEventKind::Draft(_)) => drafts += 1,
                Some(DraftEventKind::Summary(_)) => summary = true,
                _ => {}
            }
        }
        assert_eq!((drafts, summary), (2, true), "call {call}");
    }

    // Then the process exits by itself, successfully.
    let exit = tokio::task::spawn_blocking(move || {
        let status = node.0.wait().expect("wait for the node");
        drop(node);
        status
    });
    let status = tokio::time::timeout(WAIT, exit)
        .await
        .expect("the drained node did not exit")
        .expect("wait thread");
    assert!(status.success(), "the drained node exited with {status}");
    assert!(
        signalled.elapsed() > left_etcd,
        "left etcd after {left_etcd:?}, exited after {:?}",
        signalled.elapsed()
    );
}
