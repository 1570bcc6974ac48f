//! `scot draft-node` / `scot target-node` (the hidden subcommands `scot run` falls back to) register in
//! etcd with `--etcd-endpoints`, as the standalone node binaries do: a real etcd (Debian's etcd-server),
//! both subcommands as child processes on the smallest model, and a watcher that sees each node appear
//! with its id, address and capacity, then disappear once the process is killed (its 2 s lease expires).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scot_discovery::test_etcd::EtcdServer;
use scot_discovery::{Discovery, EtcdConfig, EtcdDiscovery, Membership, NodeKind};

const PREFIX: &str = "/scot-cli-test";
const MODEL: &str = "smollm2-135m-instruct-q4_1.gguf";
/// Generous wait for things to appear (not a timing assertion).
const WAIT: Duration = Duration::from_secs(120);

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(kind: &str, etcd: &str, listen: SocketAddr) -> Killed {
    let model = scot::models::model_dir().join(MODEL);
    assert!(
        model.is_file(),
        "model {} is missing: run scripts/fetch-models.sh first",
        model.display()
    );
    let child = Command::new(env!("CARGO_BIN_EXE_scot"))
        .arg(kind)
        .arg("--model")
        .arg(&model)
        .arg("--max-context")
        .arg("1024")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--max-concurrent")
        .arg("3")
        .arg("--etcd-endpoints")
        .arg(etcd)
        .arg("--etcd-prefix")
        .arg(PREFIX)
        .arg("--node-id")
        .arg(format!("cli-{kind}"))
        .arg("--lease-ttl-secs")
        .arg("2")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start scot {kind}: {e}"));
    Killed(child)
}

async fn wait_membership(
    membership: &mut tokio::sync::watch::Receiver<Membership>,
    what: &str,
    check: impl Fn(&Membership) -> bool,
) {
    let waited = tokio::time::timeout(WAIT, async {
        loop {
            if check(&membership.borrow_and_update()) {
                return;
            }
            if membership.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        waited.is_ok() && check(&membership.borrow()),
        "etcd membership never showed {what}: {:?}",
        *membership.borrow()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_subcommands_register_in_etcd_and_vanish_when_killed() {
    let etcd = EtcdServer::start();
    let endpoint = etcd.endpoint();
    let draft_addr = scot_discovery::loopback_addr().expect("no free loopback port");
    let target_addr = scot_discovery::loopback_addr().expect("no free loopback port");
    let draft = start_node("draft-node", &endpoint, draft_addr);
    let target = start_node("target-node", &endpoint, target_addr);

    let watcher = EtcdDiscovery::spawn(EtcdConfig::new(vec![endpoint.clone()]).with_prefix(PREFIX))
        .expect("watcher");
    let mut membership = watcher.subscribe();
    wait_membership(&mut membership, "both nodes", |m| {
        m.draft.len() == 1 && m.target.len() == 1
    })
    .await;
    let now = membership.borrow().clone();
    let draft_node = now.get(NodeKind::Draft, "cli-draft-node").expect("draft");
    assert_eq!(draft_node.address, format!("http://{draft_addr}"));
    assert_eq!(draft_node.capacity, 3, "capacity is --max-concurrent");
    assert_eq!(draft_node.model, MODEL);
    let target_node = now
        .get(NodeKind::Target, "cli-target-node")
        .expect("target");
    assert_eq!(target_node.address, format!("http://{target_addr}"));
    assert_eq!(
        target_node.metadata.get("tp").map(String::as_str),
        Some("1"),
        "the tensor-parallel size is announced"
    );

    drop(draft);
    wait_membership(&mut membership, "the killed draft node gone", |m| {
        m.draft.is_empty() && m.target.len() == 1
    })
    .await;
    drop(target);
    wait_membership(&mut membership, "both gone", |m| m.is_empty()).await;
}
